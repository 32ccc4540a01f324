"""The reply going to the runtime, streamed or whole.

Streamed replies are decoded event by event and each event is written out as soon as
the :class:`~proxy.core.inspector.ReplyInspector` lets it go; chunks without commands
go out as the bytes that came in. After streaming began an upstream failure is sent
as a ``data:`` event carrying the error object, then ``data: [DONE]``, and the turn
records it; a stream cut before its ``finish_reason`` gets the same; one that
finished without ``[DONE]`` gets it. A whole reply is inspected as one body. Every
reply carries the call's id in ``X-Call-Id`` (the runtime's, or the one callgate gave
a request without one).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import aiohttp
from aiohttp import web

from ...calls.model import TurnStatus
from ...core.inspector import InvalidChunk
from ...core.sse import DONE, SSEDecodeError, SSEDecoder, SSEEvent, encode_data
from ...errors import UpstreamBadReply, UpstreamError, UpstreamFailure, UpstreamTimeout, UpstreamUnreachable, openai_error_body
from .reply import Reply
from .upstream import abandon, downstream_headers

__all__ = ["relay_reply"]

log = logging.getLogger("callgate.relay")

_UPSTREAM_FAILURES = (aiohttp.ClientError, TimeoutError, SSEDecodeError, InvalidChunk)
_GONE = "the client closed the connection"


class _ClientGone(Exception):
    """The agent runtime closed the connection while we were writing to it."""


async def relay_reply(
    request: web.Request, upstream: asyncio.Future[aiohttp.ClientResponse], reply: Reply, stream: bool
) -> web.StreamResponse:
    """The upstream's answer to the runtime; ``reply`` records how it went."""
    try:
        try:
            resp = await upstream
        except UpstreamError as e:
            reply.settle(TurnStatus.UPSTREAM_ERROR, str(e), e.failure)
            raise
        async with resp:
            if resp.content_type == "text/event-stream":
                return await _stream(request, resp, reply)
            reply.first_byte()
            if stream:  # a streaming request answered with something else
                reply.settle(TurnStatus.UPSTREAM_ERROR, f"upstream answered {resp.content_type} to a streaming request", UpstreamFailure.BAD_REPLY)
                raise UpstreamBadReply(f"upstream answered {resp.content_type!r}, not text/event-stream, to a streaming request")
            return await _whole(resp, reply)
    except asyncio.CancelledError:
        reply.settle(TurnStatus.CLIENT_DISCONNECTED, _GONE)
        abandon(upstream)
        raise


async def _whole(resp: aiohttp.ClientResponse, reply: Reply) -> web.Response:
    try:
        data = await resp.read()
    except TimeoutError:
        reply.settle(TurnStatus.UPSTREAM_ERROR, "timeout reading the reply", UpstreamFailure.TIMEOUT)
        raise UpstreamTimeout("upstream stopped sending before the reply was complete") from None
    except aiohttp.ClientError as e:
        reply.settle(TurnStatus.UPSTREAM_ERROR, str(e), UpstreamFailure.UNREACHABLE)
        raise UpstreamUnreachable(f"upstream failed during the reply: {type(e).__name__}: {e}") from None
    if not _is_json(data):
        reply.settle(TurnStatus.UPSTREAM_ERROR, f"upstream answered {resp.content_type} that is not JSON", UpstreamFailure.BAD_REPLY)
        raise UpstreamBadReply(f"upstream answered {resp.content_type!r} that is not a JSON chat completion")
    out, cmds = reply.inspector.inspect_completion(data)
    reply.commands(cmds)
    reply.settle(TurnStatus.OK)
    reply.sent()
    headers = downstream_headers(resp.headers)
    headers["X-Call-Id"] = reply.call.call_id
    return web.Response(body=out, status=resp.status, headers=headers)


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


async def _write(response: web.StreamResponse, data: bytes) -> None:
    try:
        await response.write(data)
    except ConnectionError as e:  # aiohttp's ClientConnectionResetError is one too
        raise _ClientGone() from e


async def _relay_events(resp: aiohttp.ClientResponse, response: web.StreamResponse, reply: Reply) -> None:
    """Upstream reads in, inspected bytes out, one write per read."""
    decoder = SSEDecoder()
    feed = reply.feed
    async for data in resp.content.iter_any():
        if reply.ttft_ms is None:
            reply.first_byte()
        events = decoder.feed(data)
        reply.chunks.inc(len(events))
        out = feed(events[0]) if len(events) == 1 else await _feed_all(response, feed, events)
        if out:
            await _write(response, out)
            if not reply.client_first:
                reply.sent()
    out = b"".join([feed(e) for e in decoder.close()]) + reply.close()
    ins = reply.inspector
    if not ins.saw_done and not ins.saw_finish:  # cut off: say so, where the stream still allows it
        reply.settle(TurnStatus.UPSTREAM_INCOMPLETE, "the upstream's stream ended with no finish_reason and no [DONE]", UpstreamFailure.INCOMPLETE)
        body = openai_error_body("the upstream's stream ended before the reply was complete", type="upstream_error", code="upstream_incomplete")
        out += encode_data(json.dumps(body)) + DONE
    elif not ins.saw_done:  # finished, but without the last line: the runtime gets it
        reply.note("the upstream sent no [DONE]")
        out += DONE
    if out:
        await _write(response, out)
        reply.sent()


async def _feed_all(response: web.StreamResponse, feed: Callable[[SSEEvent], bytes], events: list[SSEEvent]) -> bytes:
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


async def _upstream_failed(response: web.StreamResponse, reply: Reply, e: BaseException) -> None:
    """The upstream failed mid-stream: the runtime gets an error event and [DONE]."""
    error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    failure = UpstreamFailure.STREAM_ERROR
    if isinstance(e, TimeoutError):
        error, failure = f"upstream sent nothing for {reply.s.config.upstream.timeout_s} s", UpstreamFailure.TIMEOUT
    reply.settle(TurnStatus.UPSTREAM_ERROR, error, failure)
    log.warning("upstream failed mid-stream call_id=%s error=%s", reply.call.call_id, error)
    tail = reply.close()
    body = openai_error_body(f"upstream failed during the stream: {error}", type="upstream_error", code="upstream_stream_error")
    await _write(response, tail + encode_data(json.dumps(body)) + DONE)


async def _stream(request: web.Request, resp: aiohttp.ClientResponse, reply: Reply) -> web.StreamResponse:
    headers = downstream_headers(resp.headers)
    headers["Cache-Control"] = "no-cache"
    headers["X-Accel-Buffering"] = "no"
    headers["X-Call-Id"] = reply.call.call_id
    response = web.StreamResponse(status=resp.status, headers=headers)
    await response.prepare(request)
    try:
        try:
            await _relay_events(resp, response, reply)
        except _UPSTREAM_FAILURES as e:
            await _upstream_failed(response, reply, e)
        await response.write_eof()
        reply.settle(TurnStatus.OK)
    except (_ClientGone, ConnectionError):
        reply.settle(TurnStatus.CLIENT_DISCONNECTED, _GONE)
    except asyncio.CancelledError:
        reply.settle(TurnStatus.CLIENT_DISCONNECTED, _GONE)
        raise
    except Exception as e:
        log.exception("relay failed mid-stream call_id=%s", reply.call.call_id)
        reply.settle(TurnStatus.ERROR, f"{type(e).__name__}: {e}")
        try:
            body = openai_error_body("callgate failed during the stream", code="internal_error")
            await response.write(encode_data(json.dumps(body)) + DONE)
        except Exception:
            pass
    return response
