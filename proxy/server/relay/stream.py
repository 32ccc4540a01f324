"""The reply going to the runtime, streamed or whole, from the attempt that won.

Streamed replies are decoded event by event and each event is written out as soon as
the :class:`~proxy.core.inspector.ReplyInspector` lets it go; chunks without commands
go out as the bytes that came in. With ``routing.stall_ms`` a reply whose speech goes
silent that long (or breaks) before its finish is continued by the next upstream
(:meth:`~.race.Race.continuation`) unless a command was acted on or a tool call
began; otherwise, after streaming began, an upstream failure is sent as a ``data:``
event carrying the error object, then ``data: [DONE]``, and the turn records it; a
stream cut before its ``finish_reason`` gets the same; one that finished without
``[DONE]`` gets it. A whole reply is inspected as one body. Every reply carries the
call's id in ``X-Call-Id`` (the runtime's, or the one callgate gave a request
without one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Protocol

import aiohttp
from aiohttp import web

from ...calls.model import TurnStatus
from ...core.inspector import InvalidChunk
from ...core.routing import AttemptOutcome, finish_chunk
from ...core.sse import DONE, SSEDecodeError, SSEEvent, encode_data
from ...errors import UpstreamBadReply, UpstreamError, UpstreamFailure, openai_error_body
from ...metrics import UPSTREAM_STALLS
from .attempt import Attempt
from .reply import Reply
from .upstream import downstream_headers

__all__ = ["Writer", "relay_attempts", "relay_reply"]

log = logging.getLogger("callgate.relay")

_UPSTREAM_FAILURES = (aiohttp.ClientError, TimeoutError, SSEDecodeError, InvalidChunk)
_GONE = "the client closed the connection"


class Writer(Protocol):
    """Where a streamed reply's inspected SSE bytes go: the runtime's HTTP response, or
    a front door turning them into its platform's frames."""

    async def write(self, data: bytes) -> None:
        """Send ``data``; raises :class:`ConnectionError` when the other side is gone."""


class _ClientGone(ConnectionError):
    """The agent runtime closed the connection while we were writing to it (a
    :class:`ConnectionError`, as :class:`Writer` promises)."""


class _Stalled(Exception):
    """The adopted attempt's speech went silent ``routing.stall_ms``."""


async def relay_reply(request: web.Request, first: asyncio.Future[Attempt], reply: Reply, stream: bool) -> web.StreamResponse:
    """The winning attempt's answer to the runtime; ``reply`` records how it went."""
    try:
        try:
            attempt = await first
        except UpstreamError as e:
            reply.settle(TurnStatus.UPSTREAM_ERROR, str(e), e.failure)
            raise
        assert attempt.resp is not None
        if attempt.resp.content_type == "text/event-stream":
            return await _stream(request, attempt, reply)
        return _whole(attempt, reply)
    except asyncio.CancelledError:
        reply.settle(TurnStatus.INTERRUPTED if reply.s.drain.expired else TurnStatus.CLIENT_DISCONNECTED, _GONE)
        first.cancel()
        raise


def _whole(attempt: Attempt, reply: Reply) -> web.Response:
    resp, data = attempt.resp, attempt.whole
    assert resp is not None and data is not None
    reply.adopt(attempt)
    out, cmds = reply.inspector.inspect_completion(data)
    reply.commands(cmds)
    reply.settle(TurnStatus.OK)
    reply.sent()
    headers = downstream_headers(resp.headers)
    headers["X-Call-Id"] = reply.call.call_id
    return web.Response(body=out, status=resp.status, headers=headers)


async def _write(response: Writer, data: bytes) -> None:
    try:
        await response.write(data)
    except ConnectionError as e:  # aiohttp's ClientConnectionResetError is one too
        raise _ClientGone() from e


async def _read(attempt: Attempt, stall_s: float | None) -> bytes:
    """The attempt's next bytes (``b""`` at its end); ``_Stalled`` when speech went
    silent ``stall_s``."""
    assert attempt.resp is not None
    if stall_s is None or attempt.first_token_ms is None:
        return await attempt.resp.content.readany()
    try:
        async with asyncio.timeout(stall_s):
            return await attempt.resp.content.readany()
    except TimeoutError:
        raise _Stalled() from None


async def _relay_events(attempt: Attempt, response: Writer, reply: Reply, stall_s: float | None) -> None:
    """Upstream reads in, inspected bytes out, one write per read."""
    decoder, feed = attempt.decoder, reply.feed
    while data := await _read(attempt, stall_s):
        if reply.ttft_ms is None:
            attempt.first_byte()
            reply.first_byte(attempt.first_byte_at)
        events = decoder.feed(data)
        reply.chunks.inc(len(events))
        out = feed(events[0]) if len(events) == 1 else await _feed_all(response, feed, events)
        if attempt.first_token_ms is None and attempt.speakable():
            attempt.spoke()
            reply.race.spoke(attempt)
        if out:
            await _write(response, out)
            if not reply.client_first:
                reply.sent()
    out = b"".join([feed(e) for e in decoder.close()])
    ins = reply.inspector
    if not ins.saw_done and not ins.saw_finish and reply.may_continue():
        raise _Stalled()  # cut off after speech began: continued like a stall
    out += reply.close()
    if not ins.saw_done and not ins.saw_finish:  # cut off: say so, where the stream still allows it
        reply.settle(TurnStatus.UPSTREAM_INCOMPLETE, "the upstream's stream ended with no finish_reason and no [DONE]", UpstreamFailure.INCOMPLETE)
        attempt.error = "the stream ended with no finish_reason and no [DONE]"
        reply.race.fault(attempt)
        body = openai_error_body("the upstream's stream ended before the reply was complete", type="upstream_error", code="upstream_incomplete")
        out += encode_data(json.dumps(body)) + DONE
    elif not ins.saw_done:  # finished, but without the last line: the runtime gets it
        reply.note("the upstream sent no [DONE]")
        out += DONE
    if out:
        await _write(response, out)
        reply.sent()


async def _feed_all(response: Writer, feed: Callable[[SSEEvent], bytes], events: list[SSEEvent]) -> bytes:
    """Several events of one read; when one is bad, what came before it still goes
    out before the error does."""
    out: list[bytes] = []
    try:
        for event in events:
            out.append(feed(event))
    except InvalidChunk:
        if out:
            await _write(response, b"".join(out))
        raise
    return b"".join(out)


async def _upstream_failed(response: Writer, reply: Reply, e: BaseException) -> None:
    """The upstream failed mid-stream: the runtime gets an error event and [DONE]."""
    error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    failure = UpstreamFailure.STREAM_ERROR
    attempt = reply.current
    if isinstance(e, _Stalled):
        error, failure = f"the upstream's speech went silent for {reply.s.config.routing.stall_ms} ms", UpstreamFailure.STALLED
    elif isinstance(e, TimeoutError) and attempt is not None:
        error, failure = f"upstream sent nothing for {attempt.entry.timeout_s} s", UpstreamFailure.TIMEOUT
    reply.settle(TurnStatus.UPSTREAM_ERROR, error, failure)
    if attempt is not None:
        attempt.error = error
        reply.race.fault(attempt)
    log.warning("upstream failed mid-stream call_id=%s error=%s", reply.call.call_id, error)
    tail = reply.close()
    body = openai_error_body(f"upstream failed during the stream: {error}", type="upstream_error", code="upstream_stream_error")
    await _write(response, tail + encode_data(json.dumps(body)) + DONE)


async def _finish_after_command(response: Writer, reply: Reply, e: BaseException) -> None:
    """The speech stalled (or broke) after a command was acted on: nothing is
    continued; the runtime gets what was held, a finish and ``[DONE]``."""
    attempt = reply.current
    assert attempt is not None
    attempt.outcome = AttemptOutcome.STALLED
    attempt.error = "stalled" if isinstance(e, _Stalled) else f"{type(e).__name__}: {e}"
    reply.note(f"the upstream stalled after a command was acted on; the reply was ended ({attempt.error})")
    UPSTREAM_STALLS.inc()
    reply.race.let_go(attempt)
    ins = reply.inspector
    tail = reply.close()
    finish = finish_chunk(reply.segments[0].chunk_id) if not ins.saw_finish else b""
    await _write(response, tail + finish + DONE)


async def _continue(response: Writer, reply: Reply, stalled: Attempt, e: BaseException) -> Attempt:
    """The next upstream carries on after what was heard; its held bytes go out."""
    UPSTREAM_STALLS.inc()
    stalled.outcome = AttemptOutcome.STALLED
    stalled.error = "stalled" if isinstance(e, _Stalled) else f"{type(e).__name__}: {e}"
    reply.race.fault(stalled)
    reply.race.let_go(stalled)
    log.warning("upstream %s stalled mid-speech call_id=%s: continuing", stalled.name, reply.call.call_id)
    nxt = await reply.race.continuation(stalled, reply.spoken_text)
    out = reply.adopt(nxt)
    if out:
        await _write(response, out)
    return nxt


async def relay_attempts(response: Writer, attempt: Attempt, reply: Reply) -> None:
    """The adopted attempt to its end, continued after stalls while the reply may be."""
    routing = reply.s.config.routing
    stall_s = routing.stall_ms / 1000 if routing.stall_ms and routing.on_stall == "continue" else None
    continuations = 0
    while True:
        try:
            await _relay_events(attempt, response, reply, stall_s)
            return
        except (_Stalled, *_UPSTREAM_FAILURES) as e:
            if stall_s is not None and reply.acted and reply.current is not None and reply.current.first_token_ms is not None:
                return await _finish_after_command(response, reply, e)
            if not (reply.may_continue() and continuations < routing.max_attempts):
                return await _upstream_failed(response, reply, e)
            continuations += 1
            try:
                attempt = await _continue(response, reply, attempt, e)
            except UpstreamError as failed:
                return await _upstream_failed(response, reply, failed)


async def _shutting_down(response: web.StreamResponse, reply: Reply) -> None:
    """The drain ran out with this reply open: the runtime gets the error event and
    ``[DONE]``; the turn is ``interrupted``."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()  # callgate's own cancel, answered here
    reply.settle(TurnStatus.INTERRUPTED, f"callgate shut down: the drain ({reply.s.config.server.drain_s} s) was over")
    body = openai_error_body("callgate is shutting down; the reply was cut", type="server_error", code="server_shutting_down")
    with contextlib.suppress(Exception):
        await response.write(reply.close() + encode_data(json.dumps(body)) + DONE)
        await response.write_eof()


async def _stream(request: web.Request, attempt: Attempt, reply: Reply) -> web.StreamResponse:
    resp = attempt.resp
    assert resp is not None
    headers = downstream_headers(resp.headers)
    headers["Cache-Control"] = "no-cache"
    headers["X-Accel-Buffering"] = "no"
    headers["X-Call-Id"] = reply.call.call_id
    response = web.StreamResponse(status=resp.status, headers=headers)
    held = reply.adopt(attempt)
    await response.prepare(request)
    try:
        if held:
            await _write(response, held)
            reply.sent()
        await relay_attempts(response, attempt, reply)
        await response.write_eof()
        reply.settle(TurnStatus.OK)
    except ConnectionError:
        reply.settle(TurnStatus.CLIENT_DISCONNECTED, _GONE)
    except asyncio.CancelledError:
        if not reply.s.drain.expired:
            reply.settle(TurnStatus.CLIENT_DISCONNECTED, _GONE)
            raise
        await _shutting_down(response, reply)
    except Exception as e:
        log.exception("relay failed mid-stream call_id=%s", reply.call.call_id)
        reply.settle(TurnStatus.ERROR, f"{type(e).__name__}: {e}")
        with contextlib.suppress(Exception):
            body = openai_error_body("callgate failed during the stream", code="internal_error")
            await response.write(encode_data(json.dumps(body)) + DONE)
    finally:
        if reply.current is not None:
            reply.current.release()
    return response
