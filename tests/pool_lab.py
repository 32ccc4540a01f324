"""Scripted upstreams for the pool's tests: each answers its requests by a script of
:class:`Act` values (one per request, the last repeating), records every request body
and whether the client was still there at the end (a cancelled loser's connection
is closed: its handler is cancelled)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Act:
    """One answer. ``status`` != 200: that error (``headers``, an OpenAI error body);
    ``delay_s``: before the first chunk (after the head); ``pieces``: content deltas;
    ``stall_after``: after that many pieces, wait until released (``Upstream.release``);
    ``cut``: end after the pieces with no finish and no [DONE]; ``error_chunk``: send an
    ``error`` object instead of pieces; ``not_sse``: answer JSON to a stream;
    ``head_delay_s``: before the head (the response headers); ``usage``: sent last when
    asked (``stream_options.include_usage``) or in a whole answer."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    head_delay_s: float = 0.0
    pieces: list[str] = field(default_factory=lambda: ["Hello", " there."])
    stall_after: int | None = None
    cut: bool = False
    error_chunk: bool = False
    not_sse: bool = False
    usage: dict[str, Any] | None = None
    chunk_id: str = "chatcmpl-x"
    gap_s: float = 0.0  # between pieces


class Upstream:
    """See the module docstring. ``requests``: bodies as JSON; ``raw``: as bytes;
    ``gone``: per request, whether its client left before the answer ended."""

    def __init__(self, name: str, script: list[Act] | None = None) -> None:
        self.name = name
        self.script = list(script or [Act()])
        self.requests: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.gone: list[bool] = []
        self.ended: list[asyncio.Event] = []
        self.released = asyncio.Event()
        self.arrived = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    def release(self) -> None:
        """Stalled answers go on."""
        self.released.set()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw)
        i = len(self.requests)
        self.requests.append(body)
        self.raw.append(raw)
        self.gone.append(False)
        self.ended.append(asyncio.Event())
        self.arrived.set()
        act = self.script[min(i, len(self.script) - 1)]
        try:
            return await self._answer(request, body, act)
        except (asyncio.CancelledError, ConnectionError):
            self.gone[i] = True
            raise
        finally:
            self.ended[i].set()

    async def _answer(self, request: web.Request, body: dict[str, Any], act: Act) -> web.StreamResponse:
        if act.head_delay_s:
            await asyncio.sleep(act.head_delay_s)
        if act.status != 200:
            err = {"error": {"message": f"{self.name} says {act.status}", "type": "x", "param": None, "code": None}}
            return web.json_response(err, status=act.status, headers=act.headers)
        if not body.get("stream") or act.not_sse:
            if act.delay_s:
                await asyncio.sleep(act.delay_s)
            return web.json_response(completion(self.name, act))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(sse(chunk(act.chunk_id, {"role": "assistant", "content": ""})))
        if act.delay_s:
            await asyncio.sleep(act.delay_s)
        if act.error_chunk:
            await resp.write(sse({"error": {"message": "overloaded", "code": 503}}))
            return resp
        for n, piece in enumerate(act.pieces):
            if act.stall_after is not None and n == act.stall_after:
                await self.released.wait()
            await resp.write(sse(chunk(act.chunk_id, {"content": piece})))
            if act.gap_s:
                await asyncio.sleep(act.gap_s)
        if act.stall_after is not None and act.stall_after >= len(act.pieces):
            await self.released.wait()
        if act.cut:
            return resp
        await resp.write(sse(chunk(act.chunk_id, {}, "stop")))
        options = body.get("stream_options") or {}
        if act.usage is not None and options.get("include_usage"):
            await resp.write(sse({"id": act.chunk_id, "object": "chat.completion.chunk", "created": 1, "model": body.get("model"), "choices": [], "usage": act.usage}))
        await resp.write(b"data: [DONE]\n\n")
        return resp


def chunk(cid: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def completion(name: str, act: Act) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": "chatcmpl-w", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(act.pieces)}, "finish_reason": "stop"}],
    }
    if act.usage is not None:
        out["usage"] = act.usage
    return out


async def wait_gone(up: Upstream, i: int, timeout: float = 5.0) -> bool:
    """Whether request ``i`` of ``up`` ended with its client gone (waits for its end)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(up.ended[i].wait(), timeout)
    return up.gone[i]
