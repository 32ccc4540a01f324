"""The pieces the process-level tests share: a scripted LLM that answers by what the
caller said, a call layer that fails and holds on command, a caller's turn, and
:func:`until` for what other processes change (no event to wait on: the database,
their logs)."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

import aiohttp
from aiohttp import web

from proxy.demo.scripted_upstream import ScriptedReply, ScriptedUpstream, by_last_message

REPLIES = {
    "bye": ["Thank you. ", '<imsagent_hangup endword="Goodbye!"/>'],
    "transfer": ["One moment. ", '<imsagent_transfer_call callee="10086" msg="Transferring."/>'],
}


def llm_app(ttft_s: float = 0.02) -> web.Application:
    """An upstream that answers by what the caller said: "bye" with a hangup,
    "transfer" with a transfer, "slow" with a reply that takes 10 s (100 pieces 0.1 s
    apart); anything else plainly. First token after ``ttft_s``, like a real LLM."""
    replies = {said: ScriptedReply(content=pieces, ttft_s=ttft_s) for said, pieces in REPLIES.items()}
    replies["slow"] = ScriptedReply(content=["word "] * 100, ttft_s=ttft_s, interval_s=0.1)
    return ScriptedUpstream(by_last_message(replies, ScriptedReply(content=["Sure, ", "one moment."], ttft_s=ttft_s))).app()


class CallLayer:
    """A webhook receiver: ``fail_until`` (monotonic s) answers 500 before then;
    ``hold_s[path]`` holds each request that long, ``gates[path]`` until it is set.
    Records every request with its time span and whether its sender was still there
    to hear the answer."""

    def __init__(self) -> None:
        self.fail_until = 0.0
        self.hold_s: dict[str, float] = {}
        self.gates: dict[str, asyncio.Event] = {}  # requests on the path wait until it is set
        self.seen: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()  # set on every request (cleared by whoever waits)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        seen = {"path": path, "key": request.headers.get("Idempotency-Key"), "status": None,
                "start": time.monotonic(), "end": None, "gone": False, "body": await request.read()}
        self.seen.append(seen)
        self.arrived.set()
        try:
            if path in self.hold_s:
                await asyncio.sleep(self.hold_s[path])
            if path in self.gates:
                await self.gates[path].wait()
        except asyncio.CancelledError:  # the sender died meanwhile: nothing was delivered
            seen["gone"], seen["end"] = True, time.monotonic()
            raise
        seen["status"] = 500 if time.monotonic() < self.fail_until else 200
        seen["end"] = time.monotonic()
        return web.json_response({}, status=seen["status"])

    def delivered(self, path: str) -> list[dict[str, Any]]:
        return [s for s in self.seen if s["path"] == path and s["status"] == 200 and not s["gone"]]


async def turn(http: aiohttp.ClientSession, url: str, call_id: str, text: str) -> bool:
    """One turn of a call; ``True`` when callgate answered it (it had the turn)."""
    payload = {"model": "m", "stream": True, "messages": [{"role": "user", "content": text}]}
    try:
        async with http.post(f"{url}/v1/chat/completions", json=payload, headers={"X-Call-Id": call_id}) as r:
            began = r.status == 200
            await r.read()
            return began
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return False




async def until(predicate: Any, timeout: float, what: str = "the condition") -> None:
    """Until ``predicate()`` holds, read again every 0.1 s: for state other processes
    change, which sends no event here (``predicate`` may be async). ``AssertionError`` naming ``what`` after
    ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not ((await held) if inspect.isawaitable(held := predicate()) else held):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.1)
