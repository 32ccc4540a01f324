"""Benchmark call generator: phone calls shaped like real ones, not a burst.

Calls arrive at random (Poisson) at the rate that keeps ``--calls`` of them in
flight; at the start, that many are already under way (their starts spread over one
call's length), so the load is steady from the first second. Each call has
``--turns`` turns with the caller speaking in between (``--pause-s``, ±50 %); each
reply comes after the model's time to first token (``--ttft-ms``) as ``--chunks``
chunks at a speaking rate (``--interval-ms``). The last turn carries a hangup.

For every chunk: receive time minus the upstream's send stamp (µs, added by what
is in between). For every turn, the added time to first token: (request arrival
at the upstream - request sent) + (first chunk received - first chunk sent).
Prints one JSON object: ``chunk_us``, ``ttft_us`` (sorted), ``errors``, ``calls``, ``turns``,
``call_seconds`` (the calls' total length, for CPU per call-minute).

Run: ``python -m tests.bench.callgen --url URL --calls C --seconds S [...]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import time
import uuid

import aiohttp

from . import chat_body, emit, run_process

STAMP = re.compile(rb'"content":\s*"t(\d+)(?: r(\d+))?')  # a proxy that re-encodes may add a space


async def call(session: aiohttp.ClientSession, args: argparse.Namespace, out: dict, rng: random.Random) -> None:
    call_id = uuid.uuid4().hex
    started = time.monotonic()
    for n in range(args.turns):
        spec = {"chunks": args.chunks, "interval_ms": args.interval_ms, "ttft_ms": args.ttft_ms, "command": n == args.turns - 1}
        out["turns"] += 1
        await _turn(session, args, call_id, chat_body(spec, real=args.real_body), out)
        if n < args.turns - 1:
            await asyncio.sleep(args.pause_s * rng.uniform(0.5, 1.5))  # the caller speaks
    out["calls"] += 1
    out["call_seconds"] += time.monotonic() - started


async def _turn(session: aiohttp.ClientSession, args: argparse.Namespace, call_id: str, body: bytes, out: dict) -> None:
    t0 = time.monotonic_ns()
    headers = {"Content-Type": "application/json", "X-Call-Id": call_id, **dict(h.split("=", 1) for h in args.header)}
    try:
        async with session.post(args.url, data=body, headers=headers) as resp:
            if resp.status != 200:
                out["errors"] += 1
                await resp.read()
                return
            async for line in resp.content:
                now = time.monotonic_ns()
                m = STAMP.search(line)
                if m is None:
                    continue
                sent = int(m.group(1))
                out["chunk"].append((now - sent) // 1000)
                if m.group(2):
                    out["ttft"].append(((int(m.group(2)) - t0) + (now - sent)) // 1000)
    except (aiohttp.ClientError, asyncio.TimeoutError):
        out["errors"] += 1


async def run(args: argparse.Namespace) -> dict:
    out = {"chunk": [], "ttft": [], "errors": 0, "calls": 0, "call_seconds": 0.0, "turns": 0}
    rng = random.Random(args.seed)
    length = args.turns * (args.ttft_ms / 1000 + args.chunks * args.interval_ms / 1000) + (args.turns - 1) * args.pause_s
    rate = args.calls / length  # arrivals per second that keep `calls` in flight
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60, sock_connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = []

        async def later(delay: float) -> None:
            await asyncio.sleep(delay)
            await call(session, args, out, rng)

        tasks += [asyncio.create_task(later(rng.uniform(0, length / args.turns))) for _ in range(args.calls)]
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            await asyncio.sleep(rng.expovariate(rate))
            tasks.append(asyncio.create_task(call(session, args, out, rng)))
        await asyncio.gather(*tasks)
    return {
        "chunk_us": sorted(out["chunk"]),
        "ttft_us": sorted(out["ttft"]),
        "errors": out["errors"],
        "calls": out["calls"],
        "turns": out["turns"],
        "call_seconds": out["call_seconds"],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--calls", type=int, default=50, help="calls in flight")
    p.add_argument("--seconds", type=float, default=20, help="how long new calls arrive")
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--pause-s", type=float, default=1.5)
    p.add_argument("--ttft-ms", type=float, default=300)
    p.add_argument("--chunks", type=int, default=20)
    p.add_argument("--interval-ms", type=float, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--real-body", action="store_true", help="a 4 KB system prompt, 6 tools, 20 turns of history")
    p.add_argument("--header", action="append", default=[], help="NAME=VALUE, sent with every request (a peer's routing)")
    p.add_argument("--out", help="write the result here (default: stdout)")
    args = p.parse_args()
    emit(run_process(run(args)), args.out)


if __name__ == "__main__":
    sys.exit(main())
