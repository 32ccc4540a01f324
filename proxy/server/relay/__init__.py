"""The relay: ``POST /v1/chat/completions`` and ``GET /v1/models`` to the upstream LLM.

================  ===========================================================
``request``       the request read once into a frozen :class:`ChatRequest`
``upstream``      headers both ways, opening the upstream call
``attempt``       one request to one upstream of the pool, held until it speaks
``race``          the attempts of one reply: fallback, hedging, continuations
``reply``         one reply in flight, walked once: the race's winner, its outputs to a
                  sink, continuations, what its state machine decides
``record``        the turn's outcome and each attempt's entry, as the machine decided
``pump``          the adopted attempt's reads, forwarded from the connection's callback
``stream``        where a reply goes; the HTTP sink: the SSE encoder stage, or one whole body
================  ===========================================================

A request is read and checked (400/413/404), the first attempt and the call's
lookup start together (the model's time to first token hides the database's
answer), the winning attempt's reply goes out as the inspector lets it, and the
turn is recorded with every attempt. Failures, all in the OpenAI error shape, once
no upstream is left to try: upstream unreachable -> 502; no first byte within
``timeout_s`` -> 504; an upstream error status is relayed with its body; a non-SSE
answer to a streaming request -> 502; every upstream full -> 503.
"""

from __future__ import annotations

import time

import aiohttp
from aiohttp import web

from ... import logs
from ...errors import UpstreamUnreachable
from ..auth import requires
from ..services import SERVICES, Services
from .race import Race
from .reply import Reply, new_machine
from .request import ChatRequest, read_chat_request
from .stream import HttpSink
from .upstream import downstream_headers, open_upstream

__all__ = ["ChatRequest", "chat_completions", "models"]


@requires("relay")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions`` (and ``/<profile>/v1/...``); see the module docstring."""
    s = request.app[SERVICES].snapshot()  # this reply keeps the config it began with (a reload)
    s.drain.enter()
    try:
        return await _chat_completions(request, s)
    finally:
        s.drain.leave()


async def _chat_completions(request: web.Request, s: Services) -> web.StreamResponse:
    req = await read_chat_request(request, s)
    chat = req.chat
    logs.bind(call_id=chat.call_id)  # the runtime's id, when it sent one (a call of its own gets one below)
    machine = new_machine(s)
    span = s.telemetry.turn(
        chat.body.get("model") if isinstance(chat.body.get("model"), str) else None, chat.call_id, 0, req.profile.name,
        request.headers.get("traceparent"), request.headers.get("tracestate"), request_id=_request_id(), start_ns=_start_ns(req.started),
    )
    race = Race(s, machine, req.upstream, req.upstream_body, request.headers, chat.stream, req.profile.upstreams, req.started, span)
    first = race.start()  # the first attempt's request goes out while the call is looked up
    try:
        call, turn = await s.registry.begin_turn(
            chat.call_id, stream=chat.stream, user_text=chat.user_text, metadata=chat.metadata,
            profile=req.profile.name, owner=req.owner, request_id=_request_id(),
        )
    except BaseException as e:
        first.cancel()
        await race.stop()
        span.end("error", error=type(e).__name__)
        raise
    logs.bind(call_id=call.call_id)
    span.call(call.call_id, call.generation)
    sink = HttpSink(request, call.call_id)
    reply = Reply(s, req.profile, call, turn, req.started, race, machine, sink)
    try:
        await reply.run(first)
        assert sink.response is not None
        return sink.response
    finally:
        await race.stop()
        s.registry.finish_turn(call, turn, reply.outcome())
        logs.bind(ttft_ms=reply.ttft_ms, upstream=reply.current.name if reply.current else None)


def _start_ns(started: float) -> int:
    """``started`` (``perf_counter()``) as Unix ns, for a span's start."""
    return time.time_ns() - int((time.perf_counter() - started) * 1e9)


def _request_id() -> str | None:
    """The request's id in the log context (the access log gave it one)."""
    ctx = logs.CONTEXT.get()
    found = ctx.get("request_id") if ctx else None
    return found if isinstance(found, str) else None


@requires("relay")
async def models(request: web.Request) -> web.Response:
    """``GET /v1/models`` (and ``/<profile>/v1/models``), relayed as the upstream answers it."""
    s = request.app[SERVICES]
    s.profile(request)  # 404 for an unknown profile
    resp = await open_upstream(s, "GET", "/models", request.headers)
    async with resp:
        try:
            data = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as e:
            raise UpstreamUnreachable(f"upstream failed: {type(e).__name__}") from None
        return web.Response(body=data, status=resp.status, headers=downstream_headers(resp.headers))
