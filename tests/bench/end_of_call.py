"""Benchmark of the durable end function (part of ``make bench``).

1. End-of-call cost: calls with one turn each (a local scripted LLM, before the
   clock starts), then ``POST /v1/calls/{id}/end`` at 200 calls a second for
   ``--seconds``, with 4 webhook steps
   delivered to local receivers while the load runs. Reports the time
   ``CallRegistry.end`` takes (the ``call.ended`` event and the jobs committed by the
   writer thread; the event loop is free meanwhile) and the HTTP round trip of the
   end, p50/p99/max, and whether every step was delivered.
2. 10,000 ended calls in the database: ``calls list`` (the CLI's query and
   formatting) and ``GET /v1/calls/{id}`` over HTTP, p50/p99/max.

Run: ``python -m tests.bench.end_of_call [--seconds 10] [--rate 200] [--calls 10000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from proxy.cli import ops
from proxy.config import parse_config
from proxy.demo.scripted_upstream import ScriptedReply, ScriptedUpstream, serve_app
from proxy.server.app import running
from proxy.server.services import SERVICES
from proxy.storage import SqliteStore
from proxy.storage import ops as db_ops

from . import run_process


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


def row(name: str, ms: list[float]) -> str:
    return f"  {name:<44} p50 {pct(ms, 0.5):7.3f} ms   p99 {pct(ms, 0.99):7.3f} ms   max {max(ms):7.3f} ms   n={len(ms)}"


async def end_of_call(seconds: float, rate: int, tmp: Path) -> None:
    received = 0
    done = asyncio.Event()
    expected = int(seconds * rate) * 4

    async def hook(request: web.Request) -> web.Response:
        nonlocal received
        await request.read()
        received += 1
        if received >= expected:
            done.set()
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/{step}", hook)
    servers = contextlib.AsyncExitStack()
    hooks = await servers.enter_async_context(serve_app(app))
    llm = await servers.enter_async_context(serve_app(ScriptedUpstream([ScriptedReply(content=["Hello."])]).app()))
    steps = [{"name": f"s{i}", "kind": "webhook", "url": f"{hooks}/s{i}"} for i in range(4)]
    cfg = parse_config({
        "upstream": {"base_url": f"{llm}/v1"},
        "storage": {"path": str(tmp / "end.db")},
        "end_function": {"steps": steps, "poll_s": 0.2},
        "log_level": "warning",
    })
    in_path: list[float] = []
    round_trip: list[float] = []
    async with running(cfg, port=0) as (app_cg, url):
        registry = app_cg[SERVICES].registry
        real_end = registry.end

        async def timed_end(*a: Any, **kw: Any) -> bool:
            t0 = time.perf_counter()
            try:
                return await real_end(*a, **kw)
            finally:
                in_path.append((time.perf_counter() - t0) * 1000)

        registry.end = timed_end  # type: ignore[method-assign]
        async with aiohttp.ClientSession() as http:
            turn = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
            gate = asyncio.Semaphore(50)

            async def talk(i: int) -> None:
                async with gate, http.post(f"{url}/v1/chat/completions", json=turn, headers={"X-Call-Id": f"bench-{i}"}) as r:
                    await r.read()

            await asyncio.gather(*(talk(i) for i in range(int(seconds * rate))))  # the calls, before the clock starts
            await registry.drain()

            async def one(i: int) -> None:
                t0 = time.perf_counter()
                async with http.post(f"{url}/v1/calls/bench-{i}/end", json={"reason": "caller_hangup", "state": {"n": i}}) as r:
                    await r.read()
                    assert r.status == 200
                round_trip.append((time.perf_counter() - t0) * 1000)

            loop = asyncio.get_running_loop()
            start = loop.time()
            tasks = []
            for i in range(int(seconds * rate)):
                delay = start + i / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)
            try:
                await asyncio.wait_for(done.wait(), 60)
            except TimeoutError:
                pass
    await servers.aclose()
    print(f"\nend of call: {int(seconds * rate)} calls at {rate}/s, 4 webhook steps each (local receivers)")
    print(row("CallRegistry.end (committed)", in_path))
    print(row("POST /v1/calls/{id}/end round trip", round_trip))
    print(f"  steps delivered: {received}/{expected}")


async def big_database(n: int, tmp: Path) -> None:
    path = tmp / "big.db"
    db = SqliteStore(path)
    t0 = time.perf_counter()
    base = time.time() - n

    def fill(c: Any) -> None:
        for i in range(n):
            key = f"call-{i:05d}"
            c.execute(
                "INSERT INTO calls (id, call_id, status, started_at, last_activity, ended_at, end_reason, end_source, "
                "last_seq, turns, state, updated_at) VALUES (?, ?, 'ended', ?, ?, ?, 'agent_hangup', 'text_command', 2, 1, ?, ?)",
                (key, key, base + i, base + i + 60, base + i + 60, json.dumps({"i": i}), base + i),
            )
            c.execute(
                "INSERT INTO turns (call_key, idx, request_id, instance, started_at, stream, status, user_text, spoken_text) "
                "VALUES (?, 1, ?, 'bench', ?, 1, 'ok', ?, ?)",
                (key, f"r-{key}", base + i, "hello " * 20, "goodbye " * 20),
            )
            for seq, kind in ((1, "hangup"), (2, "call.ended")):
                c.execute(
                    "INSERT INTO events (call_key, seq, id, type, created_at, payload) VALUES (?, ?, ?, ?, ?, ?)",
                    (key, seq, f"e-{key}-{seq}", kind, base + i, json.dumps({"type": kind, "seq": seq})),
                )
            c.many(
                "INSERT INTO jobs (call_id, step, kind, after, status, attempts, next_at, idempotency_key, created_at, updated_at) "
                "VALUES (?, ?, 'webhook', '[]', 'done', 1, 0, ?, 0, 0)",
                [(key, f"s{k}", f"{key}:s{k}") for k in range(4)],
            )

    db.run_sync(fill)
    print(f"\n{n} ended calls with 4 steps each written in {time.perf_counter() - t0:.1f} s")
    listing = []
    for _ in range(50):
        t0 = time.perf_counter()
        ops.calls_list(db.run_sync(db_ops.list_calls, limit=100))
        listing.append((time.perf_counter() - t0) * 1000)
    filtered = []
    for _ in range(50):
        t0 = time.perf_counter()
        ops.calls_list(db.run_sync(db_ops.list_calls, since=base + n / 2, status="ended", limit=100))
        filtered.append((time.perf_counter() - t0) * 1000)
    db.close_sync()
    cfg = parse_config({"upstream": {"base_url": "http://127.0.0.1:9/v1"}, "storage": {"path": str(path)}, "log_level": "warning"})
    gets = []
    async with running(cfg, port=0) as (_, url):
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                call_id = f"call-{random.randrange(n):05d}"
                t0 = time.perf_counter()
                async with http.get(f"{url}/v1/calls/{call_id}") as r:
                    await r.read()
                    assert r.status == 200
                gets.append((time.perf_counter() - t0) * 1000)
    print(row("calls list (newest 100)", listing))
    print(row("calls list --since --status ended", filtered))
    print(row("GET /v1/calls/{id} (random call)", gets))


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="callgate-bench-") as tmp:
        await end_of_call(args.seconds, args.rate, Path(tmp))
        await big_database(args.calls, Path(tmp))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--rate", type=int, default=200)
    p.add_argument("--calls", type=int, default=10000)
    args = p.parse_args()
    run_process(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
