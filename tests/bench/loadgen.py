"""Benchmark load generator: C concurrent streaming clients, per-chunk latency.

For every chunk it records receive time minus the send time stamped in its
content (ns, ``time.monotonic_ns()``), and per request the time to first token.
Prints one JSON object: ``latency_us`` and ``ttft_us`` (sorted lists, µs),
``errors``, ``requests``, ``replies_complete`` (replies with every stamped chunk),
``chunks_seen``, ``chunks_sent`` (expected). With ``--timeline`` also
``chunk_timeline_us`` and ``ttft_timeline_us``: ``[when, latency]`` pairs in arrival
order, ``when`` the chunk's or the first token's arrival (``time.monotonic_ns() //
1000``), so a caller can look at a window of the run.

Run: ``python -m tests.bench.loadgen --url URL --streams C --chunks N --interval-ms X
[--requests R] [--command] [--real-body] [--header NAME=VALUE] [--timeline]``. ``--url``
given several times loads each URL with the same streams at the same times and prints
``{"by_url": [result, ...]}`` in their order.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time

import aiohttp

from . import chat_body, emit, run_process

STAMP = re.compile(rb'"content":\s*"t(\d+)')  # a proxy that re-encodes may add a space


async def one_stream(session: aiohttp.ClientSession, args: argparse.Namespace, url: str, delay: float, out: dict) -> None:
    await asyncio.sleep(delay)
    body = chat_body({"chunks": args.chunks, "interval_ms": args.interval_ms, "command": args.command}, real=args.real_body)
    headers = {"Content-Type": "application/json", **dict(h.split("=", 1) for h in args.header)}
    for _ in range(args.requests):
        t0 = time.monotonic_ns()
        first, seen = True, 0
        out["requests"] += 1
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                if resp.status != 200:
                    out["errors"] += 1
                    await resp.read()
                    continue
                async for line in resp.content:
                    now = time.monotonic_ns()
                    m = STAMP.search(line)
                    if m is None:
                        continue
                    if first:
                        out["ttft"].append((now - t0) // 1000)
                        if args.timeline:
                            out["ttft_at"].append((now // 1000, (now - t0) // 1000))
                        first = False
                    out["lat"].append((now - int(m.group(1))) // 1000)
                    seen += 1
                    if args.timeline:
                        out["lat_at"].append((now // 1000, (now - int(m.group(1))) // 1000))
            out["complete"] += seen == args.chunks
        except (aiohttp.ClientError, asyncio.TimeoutError):
            out["errors"] += 1


async def run(args: argparse.Namespace) -> dict:
    outs = [{"lat": [], "ttft": [], "lat_at": [], "ttft_at": [], "errors": 0, "requests": 0, "complete": 0} for _ in args.url]
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=30, sock_connect=30)
    interval = args.interval_ms / 1000
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Starts are spread over one chunk interval so chunks do not all fall due at once; with
        # several URLs each gets the same streams at the same times, which one goes first
        # taking turns from stream to stream (side by side, alike).
        n = len(args.url)
        await asyncio.gather(*(
            one_stream(session, args, args.url[(i + k) % n], interval * i / args.streams, outs[(i + k) % n])
            for i in range(args.streams) for k in range(n)
        ))
    results = [_result(out, args) for out in outs]
    return results[0] if len(results) == 1 else {"by_url": results}


def _result(out: dict, args: argparse.Namespace) -> dict:
    result = {
        "latency_us": sorted(out["lat"]),
        "ttft_us": sorted(out["ttft"]),
        "errors": out["errors"],
        "requests": out["requests"],
        "replies_complete": out["complete"],
        "chunks_seen": len(out["lat"]),
        "chunks_sent": args.streams * args.requests * args.chunks,
    }
    if args.timeline:
        result["chunk_timeline_us"], result["ttft_timeline_us"] = out["lat_at"], out["ttft_at"]
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", action="append", required=True, help="again for each target loaded side by side")
    p.add_argument("--streams", type=int, default=10)
    p.add_argument("--chunks", type=int, default=50)
    p.add_argument("--interval-ms", type=float, default=20)
    p.add_argument("--requests", type=int, default=2)
    p.add_argument("--command", action="store_true")
    p.add_argument("--real-body", action="store_true", help="a 4 KB system prompt, 6 tools, 20 turns of history")
    p.add_argument("--header", action="append", default=[], help="NAME=VALUE, sent with every request (a peer's routing)")
    p.add_argument("--timeline", action="store_true", help="also each chunk's and each first token's time of arrival")
    p.add_argument("--out", help="write the result here (default: stdout)")
    args = p.parse_args()
    emit(run_process(run(args)), args.out)


if __name__ == "__main__":
    sys.exit(main())
