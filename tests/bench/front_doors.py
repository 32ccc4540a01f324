"""``make bench``, front doors: the time to the first token through the WebSocket
front doors next to the HTTP path and a direct connection, at 100 concurrent calls.

The benchmark upstream (:mod:`tests.bench.upstream`, its defaults: 50 chunks 20 ms
apart, the first at once) and ``callgate serve`` each run in their own process; the
callers run here, in one event loop. 100 calls of 3 turns each (all at once, the
caller pausing 0.2 s between turns) go: directly to the upstream, through callgate's
``POST /v1/chat/completions`` (streamed, an ``X-Call-Id`` per call), through
``GET /retell/v1/llm-websocket/{call_id}`` (Retell's ``response_required``) and
through ``GET /conversation-relay/v1/ws`` (``setup``, then ``prompt``). A turn's
time to the first token is from the request (or frame) sent to the first non-empty
content (ms). Prints p50 / p99 / max per path and what each front door adds over
the HTTP path at p50 and p99; these machines are noisy: only figures from one run compare.

Run: ``python -m tests.bench.front_doors [--calls 100] [--turns 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from proxy.demo.nginx import free_port, wait_for_port

from . import run_process
from .run import PY, ROOT

MESSAGES = [{"role": "user", "content": "hello"}]
PAUSE_S = 0.2


async def _http_turn(http: aiohttp.ClientSession, url: str, call_id: str) -> float:
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    t0 = time.perf_counter()
    first = None
    async with http.post(url, json=body, headers={"X-Call-Id": call_id}) as r:
        r.raise_for_status()
        async for line in r.content:
            if first is None and line.startswith(b"data: {") and b'"content":"' in line:
                first = time.perf_counter()
    assert first is not None, "no content"
    return (first - t0) * 1000


async def http_call(http: aiohttp.ClientSession, base: str, n: int, turns: int) -> list[float]:
    """One call's turns over HTTP; their first-token times (ms)."""
    out = []
    for _ in range(turns):
        out.append(await _http_turn(http, f"{base}/v1/chat/completions", f"bench-http-{n}"))
        await asyncio.sleep(PAUSE_S)
    return out


async def _ws_turn(ws: aiohttp.ClientWebSocketResponse, frame: dict[str, object], text: str, done: str) -> float:
    """Send ``frame``; read until a frame with ``done`` true; the ms to the first
    frame whose ``text`` field is not empty."""
    t0, first = time.perf_counter(), None
    await ws.send_json(frame)
    while True:
        msg = await ws.receive_json()
        if first is None and msg.get(text):
            first = time.perf_counter()
        if msg.get(done):
            break
    assert first is not None, "no content"
    return (first - t0) * 1000


async def retell_call(http: aiohttp.ClientSession, base: str, n: int, turns: int) -> list[float]:
    """One Retell call: a ``response_required`` per turn; first-token times (ms)."""
    out = []
    async with http.ws_connect(f"{base.replace('http', 'ws', 1)}/retell/v1/llm-websocket/bench-rt-{n}") as ws:
        await ws.receive_json()  # config
        for rid in range(1, turns + 1):
            frame = {"interaction_type": "response_required", "response_id": rid, "transcript": MESSAGES}
            out.append(await _ws_turn(ws, frame, "content", "content_complete"))
            await asyncio.sleep(PAUSE_S)
    return out


async def relay_call(http: aiohttp.ClientSession, base: str, n: int, turns: int) -> list[float]:
    """One ConversationRelay session: ``setup``, then a ``prompt`` per turn."""
    out = []
    async with http.ws_connect(f"{base.replace('http', 'ws', 1)}/conversation-relay/v1/ws") as ws:
        await ws.send_json({"type": "setup", "sessionId": f"VX{n}", "callSid": f"CA-bench-{n}", "from": "+1", "to": "+2", "customParameters": {}})
        for _ in range(turns):
            frame = {"type": "prompt", "voicePrompt": "hello", "lang": "en-US", "last": True}
            out.append(await _ws_turn(ws, frame, "token", "last"))
            await asyncio.sleep(PAUSE_S)
    return out


Caller = Callable[[aiohttp.ClientSession, str, int, int], Awaitable[list[float]]]


async def drive(caller: Caller, base: str, calls: int, turns: int) -> tuple[list[float], int]:
    """All calls at once; the sorted first-token times (ms) and the failed calls."""
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=120)) as http:
        results = await asyncio.gather(*(caller(http, base, n, turns) for n in range(calls)), return_exceptions=True)
    times = sorted(t for r in results if isinstance(r, list) for t in r)
    return times, sum(1 for r in results if isinstance(r, BaseException))


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log.open("w"), cwd=ROOT)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--turns", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        up = _start([PY, "-m", "tests.bench.upstream"], tmp / "upstream.log")
        assert up.stdout is not None
        up_port = int(up.stdout.readline().split()[1])
        cfg = tmp / "callgate.yaml"
        cfg.write_text(
            f"upstream: {{base_url: 'http://127.0.0.1:{up_port}/v1', timeout_s: 60}}\n"
            f"storage: {{path: '{tmp / 'callgate.db'}'}}\n"
            "log_level: warning\nlog_access: false\n"
        )
        port = free_port()
        cg = _start([PY, "-m", "proxy.cli", "serve", "--config", str(cfg), "--port", str(port)], tmp / "callgate.log")
        try:
            wait_for_port(port)
            paths: list[tuple[str, Caller, str]] = [
                ("direct", http_call, f"http://127.0.0.1:{up_port}"),
                ("callgate HTTP", http_call, f"http://127.0.0.1:{port}"),
                ("callgate Retell", retell_call, f"http://127.0.0.1:{port}"),
                ("callgate ConversationRelay", relay_call, f"http://127.0.0.1:{port}"),
            ]
            rows = {}
            for label, caller, base in paths:
                rows[label] = run_process(drive(caller, base, a.calls, a.turns))
        finally:
            for p in (cg, up):
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(40)
                except subprocess.TimeoutExpired:
                    p.kill()
    print(f"\nfront doors: time to the first token (ms), {a.calls} concurrent calls x {a.turns} turns")
    print(f"{'path':<28}{'turns':>7}{'failed calls':>14}{'p50':>9}{'p99':>9}{'max':>9}{'+p50 vs HTTP':>14}{'+p99 vs HTTP':>14}")
    http_times = rows["callgate HTTP"][0]
    summary = {}
    for label, (times, failed) in rows.items():
        p50, p99 = _pct(times, 0.5), _pct(times, 0.99)
        add50, add99 = p50 - _pct(http_times, 0.5), p99 - _pct(http_times, 0.99)
        extra = ("", "") if label in ("direct", "callgate HTTP") else (f"{add50:+.2f}", f"{add99:+.2f}")
        print(f"{label:<28}{len(times):>7}{failed:>14}{p50:>9.2f}{p99:>9.2f}{(times[-1] if times else float('nan')):>9.2f}{extra[0]:>14}{extra[1]:>14}")
        summary[label] = {"turns": len(times), "failed_calls": failed, "p50_ms": p50, "p99_ms": p99}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
