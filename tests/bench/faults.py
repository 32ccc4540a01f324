"""``make bench``, upstream faults: what the pool does for a caller when the LLM misbehaves.

Two scripted upstreams on 127.0.0.1. **A** answers with a first token after a
log-normal time (median 300 ms), but 5 % of its replies come after 3 s, 2 % are
503s and 1 % stall 5 s mid-sentence (exactly so many of every 100 requests, in a
shuffled order). **B** is healthy but 30 % slower at the median
(390 ms). Replies are 20 pieces of speech, 50 ms apart. 100 calls of 3 turns each
(all calls at once, the caller pausing between turns) go: directly to A, through
callgate with A alone, with A and B (fallback only), with hedging
(``first_token_ms``), and with hedging and stall recovery (``stall_ms``); through
LiteLLM's router with fallbacks when it is installed. For each: first-token p50 /
p99 / max (ms, the runtime's view: request sent to the first content), failed
turns, turns with a gap over 1 s inside the speech, the longest gap, extra upstream
requests (%) and extra completion pieces written by upstreams (%) over what was heard.
A turn failed when it got an error, or no finish, or fewer pieces than a reply has
(a continuation from the scripted B restarts its 20 pieces: it is heard in full).

Everything runs in one process and one event loop (callgate in-process, as the tests
run it): the faults cost seconds, far above what the loop's sharing adds. The
run checks the issue's bound for the pool with hedging and stall recovery and says
whether it held.

Run: ``python -m tests.bench.faults [--calls 100] [--turns 3] [--seed 7]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from proxy.config import parse_config
from proxy.demo.scripted_upstream import ScriptedReply, ScriptedUpstream, Seen, Stall, serve_app
from proxy.server.app import running

FIRST_TOKEN_MS, STALL_MS = 1000, 600
PIECES, GAP_S = 20, 0.05


class Faulty:
    """The script of a faulty upstream (:class:`ScriptedUpstream` answers each request
    with the reply it returns): ``median_s`` log-normal first token; ``tail``,
    ``errors``, ``stalls``: the shares of 3 s first tokens, 503s and 5 s stalls
    mid-sentence."""

    def __init__(self, seed: int, median_s: float, tail: int = 0, errors: int = 0, stalls: int = 0) -> None:
        self.rng = random.Random(seed)
        self.median_s = median_s
        # exactly these shares of every 100 requests, in a shuffled order
        self.faults = ["tail"] * tail + ["error"] * errors + ["stall"] * stalls
        self.faults += [""] * (100 - len(self.faults))

    def __call__(self, seen: Seen) -> ScriptedReply:
        if seen.index % 100 == 0:
            self.rng.shuffle(self.faults)
        fault = self.faults[seen.index % 100]
        ttft = 3.0 if fault == "tail" else self.median_s * self.rng.lognormvariate(0, 0.25)
        if fault == "error":
            return OVERLOADED
        return replace(REPLY, ttft_s=ttft, stall=Stall(after=PIECES // 2, seconds=5.0) if fault == "stall" else None)


REPLY = ScriptedReply(content=[f"w{i} " for i in range(PIECES)], interval_s=GAP_S, usage={"prompt_tokens": 50, "completion_tokens": 20})
OVERLOADED = ScriptedReply(status=503, error={"error": {"message": "overloaded", "type": "server_error", "param": None, "code": None}})


async def _turn(http: aiohttp.ClientSession, url: str, call_id: str, said: str) -> dict[str, Any]:
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": said}]}
    t0 = time.perf_counter()
    first, last, gap, heard, ok = None, None, 0.0, 0, False
    try:
        async with http.post(f"{url}/chat/completions", json=body, headers={"X-Call-Id": call_id}) as r:
            if r.status != 200:
                await r.read()
                return {"ttft": None, "gap": 0.0, "ok": False, "heard": 0}
            buf = b""
            async for data in r.content.iter_any():
                buf += data
                *events, buf = buf.split(b"\n\n")
                for e in events:
                    if not e.startswith(b"data: "):
                        continue
                    payload = e[6:]
                    if payload == b"[DONE]":
                        continue
                    obj = json.loads(payload)
                    if "error" in obj:
                        return {"ttft": first, "gap": gap, "ok": False, "heard": heard}
                    for ch in obj.get("choices") or []:
                        if (ch.get("delta") or {}).get("content"):
                            now = time.perf_counter()
                            heard += 1
                            if first is None:
                                first = (now - t0) * 1000
                            else:
                                gap = max(gap, now - (last or now))
                            last = now
                        if ch.get("finish_reason"):
                            ok = True
    except aiohttp.ClientError:
        ok = False
    return {"ttft": first, "gap": gap, "ok": ok and heard >= PIECES, "heard": heard}


async def _load(url: str, calls: int, turns: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def call(n: int) -> None:
            await asyncio.sleep(rng.random() * 2)  # arrivals over 2 s
            for t in range(turns):
                out.append(await _turn(http, url, f"call-{n}", f"turn {t}"))
                await asyncio.sleep(0.5 + rng.random())  # the caller speaks

        await asyncio.gather(*(call(n) for n in range(calls)))
    return out


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


async def _scenario(name: str, pool: list[str] | None, routing: dict[str, Any], args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    a = ScriptedUpstream(Faulty(args.seed, 0.300, tail=5, errors=2, stalls=1), record=False)
    b = ScriptedUpstream(Faulty(args.seed + 1, 0.390), record=False)
    async with contextlib.AsyncExitStack() as st:
        urls = {up_name: await st.enter_async_context(serve_app(up.app())) + "/v1" for up_name, up in (("a", a), ("b", b))}
        if pool is None:
            url = urls["a"]
        else:
            data = {
                "upstreams": [{"name": n, "base_url": urls[n], "timeout_s": 30} for n in pool],
                "routing": routing,
                "storage": {"path": str(tmp / f"{name.replace(' ', '_')}.db")},
                "log_level": "error",
            }
            _, base = await st.enter_async_context(running(parse_config(data), host="127.0.0.1", port=0))
            url = f"{base}/v1"
        turns = await _load(url, args.calls, args.turns, args.seed)
    ttfts = [t["ttft"] for t in turns if t["ttft"] is not None]
    heard = sum(t["heard"] for t in turns)
    return {
        "name": name, "turns": len(turns),
        "p50": _pct(ttfts, 50), "p99": _pct(ttfts, 99), "max": max(ttfts) if ttfts else float("nan"),
        "failed": sum(not t["ok"] for t in turns), "gaps_over_1s": sum(t["gap"] > 1.0 for t in turns),
        "max_gap_ms": max(t["gap"] for t in turns) * 1000,
        "extra_requests_pct": 100 * (a.count + b.count - len(turns)) / len(turns),
        "extra_pieces_pct": 100 * (a.pieces_sent + b.pieces_sent - heard) / max(heard, 1),
    }


async def _b_alone(args: argparse.Namespace) -> float:
    """B's first-token p99 (ms) measured directly in this run: the bound's term."""
    b = ScriptedUpstream(Faulty(args.seed + 1, 0.390), record=False)
    async with serve_app(b.app()) as url:
        turns = await _load(f"{url}/v1", args.calls, 1, args.seed)
    return _pct([t["ttft"] for t in turns if t["ttft"] is not None], 99)


async def main_async(args: argparse.Namespace) -> int:
    hedge = {"first_token_ms": FIRST_TOKEN_MS}
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, pool, routing in [
            ("direct to A", None, {}),
            ("callgate, A alone", ["a"], {}),
            ("callgate, fallback only", ["a", "b"], {}),
            ("callgate, hedging", ["a", "b"], hedge),
            ("callgate, hedging + stall recovery", ["a", "b"], {**hedge, "stall_ms": STALL_MS}),
        ]:
            rows.append(await _scenario(name, pool, routing, args, tmp))
        b_p99 = await _b_alone(args)
    print(f"\nupstream faults: {args.calls} calls x {args.turns} turns; A: 5 % first token 3 s, 2 % 503, 1 % stall 5 s; "
          f"B: median 30 % slower; first_token_ms {FIRST_TOKEN_MS}, stall_ms {STALL_MS}; B's first-token p99 {b_p99:.0f} ms")
    print(f"{'':38} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'failed':>6} {'gap>1s':>6} {'max gap':>8} {'+req %':>7} {'+tok %':>7}")
    for r in rows:
        print(f"{r['name']:38} {r['p50']:7.0f} {r['p99']:7.0f} {r['max']:7.0f} {r['failed']:6d} {r['gaps_over_1s']:6d} "
              f"{r['max_gap_ms']:8.0f} {r['extra_requests_pct']:7.1f} {r['extra_pieces_pct']:7.1f}")
    if importlib.util.find_spec("litellm") is None:
        print(f"{'LiteLLM router with fallbacks':38} not installed (pip install 'litellm[proxy]' to compare)")
    best = rows[-1]
    bound_ttft, bound_gap = FIRST_TOKEN_MS + b_p99 + 50, STALL_MS + b_p99 + 50
    held = best["p99"] <= bound_ttft and best["failed"] == 0 and best["max_gap_ms"] <= bound_gap and best["extra_requests_pct"] < 10
    print(f"bound for hedging + stall recovery: first-token p99 <= {bound_ttft:.0f} ms, 0 failed, max gap <= {bound_gap:.0f} ms, "
          f"< 10 % extra requests: {'held' if held else 'NOT held'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
