"""A scripted OpenAI-compatible upstream (aiohttp), for ``callgate demo`` and tests.

Each ``POST /v1/chat/completions`` takes the next reply of the script (the last one
repeats). A :class:`ScriptedReply` streams its content pieces and tool-call deltas
one chunk each, in the OpenAI chat completion chunk format, or answers
``stream: false`` with one chat completion. A :class:`RawReply` sends fixed bytes
(a recorded stream), optionally cut into the given pieces. Requests are kept in
``requests`` (``{"headers", "body"}``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["OPENAI_FIELDS", "RawReply", "ScriptedReply", "ScriptedUpstream", "chunks", "completion"]


@dataclass
class ScriptedReply:
    """One streamed (or, for a non-streaming request, whole) chat completion: the
    ``content`` pieces one chunk each, then ``tool_calls`` one chunk each, then a chunk
    with ``finish_reason``, usage and ``[DONE]``."""

    content: Sequence[str] = ()
    tool_calls: Sequence[dict[str, Any]] = ()  # delta.tool_calls entries, one chunk each
    finish_reason: str = "stop"
    interval_s: float = 0.0  # pause between chunks (s)
    model: str = "scripted-1"


@dataclass
class RawReply:
    """An answer written byte for byte (a recorded provider stream, a broken one), in
    ``pieces`` cut at the given byte offsets."""

    body: bytes
    pieces: Sequence[int] = ()  # cut points (bytes); empty: one write
    status: int = 200
    content_type: str = "text/event-stream"
    hang_after: bool = False  # keep the connection open after the body, sending nothing


# The top-level fields of OpenAI's chat completion request (API reference, "Create
# chat completion"); api.openai.com answers 400 for any other.
OPENAI_FIELDS = frozenset(
    """messages model audio frequency_penalty function_call functions logit_bias logprobs
    max_completion_tokens max_tokens metadata modalities n parallel_tool_calls prediction
    presence_penalty prompt_cache_key prompt_cache_retention reasoning_effort response_format
    safety_identifier seed service_tier stop store stream stream_options temperature
    tool_choice tools top_logprobs top_p user verbosity web_search_options""".split()
)


@dataclass
class ScriptedUpstream:
    """``strict``: reject unknown top-level request fields as api.openai.com does
    (400, "Unrecognized request argument supplied: ...")."""

    replies: list[ScriptedReply | RawReply]
    requests: list[dict[str, Any]] = field(default_factory=list)
    models: list[str] = field(default_factory=lambda: ["scripted-1"])
    strict: bool = False

    def app(self) -> web.Application:
        """The aiohttp app: ``POST /v1/chat/completions`` answers the next of ``replies``
        (recording the request in ``requests``), ``GET /v1/models`` lists ``models``."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        return app

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": m, "object": "model", "owned_by": "callgate"} for m in self.models]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append({"headers": dict(request.headers), "body": body})
        unknown = sorted(set(body) - OPENAI_FIELDS) if self.strict else []
        if unknown:
            message = f"Unrecognized request argument supplied: {', '.join(unknown)}"
            error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
            return web.json_response({"error": error}, status=400)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if isinstance(reply, RawReply):
            return await self._raw(request, reply)
        if body.get("stream"):
            return await self._stream(request, reply)
        return web.json_response(completion(reply))

    async def _raw(self, request: web.Request, reply: RawReply) -> web.StreamResponse:
        resp = web.StreamResponse(status=reply.status, headers={"Content-Type": reply.content_type})
        await resp.prepare(request)
        start = 0
        for cut in [*reply.pieces, len(reply.body)]:
            if cut > start:
                await resp.write(reply.body[start:cut])
                start = cut
        if reply.hang_after:
            await asyncio.Event().wait()  # until the client gives up
        await resp.write_eof()
        return resp

    async def _stream(self, request: web.Request, reply: ScriptedReply) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i, chunk in enumerate(chunks(reply)):
            if i and reply.interval_s:
                await asyncio.sleep(reply.interval_s)
            await resp.write(b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def _chunk(reply: ScriptedReply, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": reply.model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def chunks(reply: ScriptedReply) -> list[dict[str, Any]]:
    """The chat completion chunks a scripted reply streams."""
    out = [_chunk(reply, {"role": "assistant", "content": ""}, None)]
    out += [_chunk(reply, {"content": piece}, None) for piece in reply.content]
    out += [_chunk(reply, {"tool_calls": [tc]}, None) for tc in reply.tool_calls]
    out.append(_chunk(reply, {}, reply.finish_reason))
    return out


def completion(reply: ScriptedReply) -> dict[str, Any]:
    """The same reply as one non-streamed chat completion."""
    calls: dict[int, dict[str, Any]] = {}
    for tc in reply.tool_calls:
        call = calls.setdefault(tc.get("index", 0), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
        call["id"] = call["id"] or tc.get("id")
        fn = tc.get("function", {})
        call["function"]["name"] = call["function"]["name"] or fn.get("name", "")
        call["function"]["arguments"] += fn.get("arguments", "")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(reply.content) or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
