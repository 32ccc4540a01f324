"""Nothing lost under faults (see the package docstring for short and long versions).

(a) concurrent two-turn calls while the call layer's webhook fails for a while: once
    it recovers, every hangup is delivered, exactly once, and none is a dead letter;
(b) kill -9 at random moments during a load of concurrent two-turn calls (the
    caller pausing between turns) with a slow end-function step: after the last restart every call that had a turn has a
    record and ended exactly once, every step ran to ``done`` under one idempotency
    key, and no step ran in two processes at once;
(c) many short calls at full speed: the WAL stays small and memory returns near
    where it started.

Each prints its figures (``-s`` shows them; ``make faults`` does).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import aiohttp

from proxy.storage import SqliteStore, ops

from ..conftest import serve_app
from ..lab import CallLayer, llm_app, turn, until
from ..process import ServeProcess

LONG = os.environ.get("FAULTS") == "long"


def scale(short: Any, long: Any) -> Any:
    return long if LONG else short


def config(tmp: Path, up: str, hooks: str, extra: str = "") -> Path:
    cfg = tmp / "callgate.yaml"
    cfg.write_text(
        f"""
upstream: {{base_url: "{up}/v1", timeout_s: 10}}
storage: {{path: "{tmp / 'callgate.db'}"}}
{extra}
"""
    )
    return cfg


def db_read(path: Path, op: Any, *args: Any, **kw: Any) -> Any:
    store = SqliteStore(path)
    try:
        return store.run_sync(op, *args, **kw)
    finally:
        store.close_sync()



# -- (a) the call layer's webhook fails for a while ----------------------------------------------


async def test_a_webhook_outage_loses_no_hangup(tmp_path: Path) -> None:
    concurrency, seconds, outage = scale((30, 4.0, (1.0, 2.5)), (300, 20.0, (5.0, 15.0)))
    layer = CallLayer()
    async with serve_app(llm_app()) as up, serve_app(layer.app()) as hooks:
        cfg = config(tmp_path, up, hooks, f"""
control: {{webhook: {{url: "{hooks}/events", backoff_s: 0.2, max_backoff_s: 2, max_age_s: 120}}}}
end_function: {{after_hangup_s: 0.1, sweep_s: 1}}
""")
        server = ServeProcess(cfg)
        url = await server.start()
        t0 = time.monotonic()
        calls: list[str] = []
        async with aiohttp.ClientSession() as http:

            async def caller(n: int) -> None:
                i = 0
                while time.monotonic() - t0 < seconds:
                    call_id = f"a-{n}-{i}"
                    if await turn(http, url, call_id, "hello") and await turn(http, url, call_id, "bye"):
                        calls.append(call_id)
                    i += 1

            async def outage_on_the_clock() -> None:
                await asyncio.sleep(outage[0])  # noqa: ASYNC110 - the outage starts at a time, not on an event
                layer.fail_until = t0 + outage[1]

            await asyncio.gather(outage_on_the_clock(), *(caller(n) for n in range(concurrency)))

        def hangups() -> set[str]:
            return {json.loads(s["body"])["call_id"] for s in layer.delivered("events") if json.loads(s["body"])["type"] == "hangup"}

        await until(lambda: set(calls) <= hangups(), 120, "every hangup delivered")
        db = tmp_path / "callgate.db"
        await until(lambda: not db_read(db, ops.count_deliveries).get("pending"), 120, "no delivery pending")
        counts = db_read(db, ops.count_deliveries)
        assert await server.stop() == 0
    delivered = Counter(json.loads(s["body"])["id"] for s in layer.delivered("events"))
    failed_during_outage = sum(1 for s in layer.seen if s["status"] == 500)
    print(f"\n(a) {len(calls)} two-turn calls, {concurrency} at a time for {seconds} s; webhook failing from "
          f"{outage[0]} s to {outage[1]} s: {failed_during_outage} tries answered 500; deliveries {dict(counts)}; "
          f"hangups delivered {len(hangups() & set(calls))}/{len(calls)}")
    assert counts.get("failed", 0) == 0
    assert failed_during_outage > 0  # the outage happened
    assert [k for k, n in delivered.items() if n > 1] == []  # each event once


# -- (b) kill -9 at random moments -------------------------------------------------------------------


async def test_kill_9_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    concurrency, kills, pause = scale((8, 2, 0.05), (200, 5, 0.5))
    rng = random.Random(7)
    layer = CallLayer()
    layer.hold_s["slow"] = 0.2
    async with serve_app(llm_app()) as up, serve_app(layer.app()) as hooks:
        cfg = config(tmp_path, up, hooks, f"""
end_function:
  idle_timeout_s: 2
  after_hangup_s: 0.1
  sweep_s: 0.5
  poll_s: 0.2
  max_concurrent_per_step: 64
  steps:
    - {{name: fast, kind: webhook, url: "{hooks}/fast", retry: {{attempts: 20, backoff_s: 0.1, max_backoff_s: 0.5}}}}
    - {{name: slow, kind: webhook, url: "{hooks}/slow", timeout_s: 10, retry: {{attempts: 20, backoff_s: 0.1, max_backoff_s: 0.5}}}}
""")
        server = ServeProcess(cfg)
        had_turn: set[str] = set()
        stop = False
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:

            async def caller(n: int) -> None:
                i = 0
                while not stop:
                    call_id = f"b-{n}-{i}"
                    for text in ("hello", "bye"):
                        if await turn(http, server.url, call_id, text):
                            had_turn.add(call_id)
                        await asyncio.sleep(pause)  # noqa: ASYNC110 - the caller speaks between turns
                    i += 1

            await server.start()
            callers = [asyncio.create_task(caller(n)) for n in range(concurrency)]
            for _ in range(kills):
                await asyncio.sleep(rng.uniform(1.0, 3.0))  # noqa: ASYNC110 - a random moment, on purpose
                await server.kill()
                await server.start()
            await asyncio.sleep(1.0)  # noqa: ASYNC110 - a last stretch of load after the last restart
            stop = True
            await asyncio.gather(*callers)
        keys = {f"{c}:{step}" for c in had_turn for step in ("fast", "slow")}
        done = lambda: keys <= {s["key"] for s in layer.seen if s["status"] == 200 and not s["gone"]}  # noqa: E731
        await until(done, scale(120, 300), "every step of every call delivered")
        assert await server.stop() == 0
    db = tmp_path / "callgate.db"
    records = {c: db_read(db, ops.call_record, c) for c in had_turn}
    missing = [c for c, r in records.items() if r is None]
    assert missing == []
    not_ended = [c for c, r in records.items() if r["status"] != "ended" or [e["type"] for e in r["events"]].count("call.ended") != 1]
    assert not_ended == []
    steps = [j for r in records.values() for j in r["end_function"]["steps"]]
    assert all(j["status"] == "done" for j in steps) and len(steps) == 2 * len(had_turn)
    assert {j["idempotency_key"] for j in steps} == keys
    overlaps = _overlaps(layer)
    print(f"\n(b) {len(had_turn)} calls with a turn, {kills} kill -9: records {len(records)}, ended once {len(records)}, "
          f"steps done {len(steps)}, step requests {len(layer.seen)} ({sum(s['gone'] for s in layer.seen)} cut by a kill), "
          f"overlapping tries of one step {len(overlaps)}, turns interrupted "
          f"{sum(t['status'] == 'interrupted' for r in records.values() for t in r['turns'])}")
    assert overlaps == []


def _overlaps(layer: CallLayer) -> list[str]:
    """Steps two live senders ran at once (tries of one key with overlapping spans)."""
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for s in layer.seen:
        if s["key"] and not s["gone"]:
            spans[s["key"]].append((s["start"], s["end"]))
    out = []
    for key, ss in spans.items():
        ss.sort()
        out += [key for (a0, a1), (b0, _) in zip(ss, ss[1:]) if b0 < a1]
    return out


# -- (c) many short calls at full speed ------------------------------------------------------------


async def test_many_short_calls_keep_the_wal_and_memory_small(tmp_path: Path) -> None:
    calls, concurrency = scale((2000, 20), (20000, 50))
    async with serve_app(llm_app(ttft_s=0)) as up:
        cfg = config(tmp_path, up, "", "end_function: {sweep_s: 1}")
        server = ServeProcess(cfg)
        url = await server.start()
        queue = list(range(calls))
        async with aiohttp.ClientSession() as http:

            async def worker() -> None:
                while queue:
                    queue.pop()
                    await turn(http, url, "", "hello")  # no call id: a call of its own, ended with its reply

            warm, queue = queue[:200], queue[200:]
            queue, rest = warm, queue
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            start_rss = server.rss_mib()
            queue = rest
            t0 = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.monotonic() - t0
        db = tmp_path / "callgate.db"
        await until(lambda: db_read(db, ops.list_calls, status="active", limit=1) == [], 30, "every call ended")
        end_rss = server.rss_mib()
        wal = (tmp_path / "callgate.db-wal").stat().st_size if (tmp_path / "callgate.db-wal").exists() else 0
        assert await server.stop() == 0
    print(f"\n(c) {calls} calls in {elapsed:.1f} s ({calls / elapsed:.0f}/s): WAL {wal / 2**20:.1f} MiB at the end, "
          f"database {db.stat().st_size / 2**20:.1f} MiB, RSS {start_rss:.1f} -> {end_rss:.1f} MiB")
    assert wal < 64 * 2**20
    assert end_rss - start_rss < 30
