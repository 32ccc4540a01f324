"""The relay: ``POST /v1/chat/completions`` and ``GET /v1/models`` to the upstream LLM.

The request body goes upstream unchanged (unless ``inject_prompt``/``inject_tools``
add to it); ``upstream.api_key``, when set, replaces the client's
``Authorization``. Streamed replies are decoded event by event and each event is
written out as soon as the :class:`~proxy.core.inspector.ReplyInspector` lets it go;
chunks without commands go out as the bytes that came in. Control commands become
control events on the call; the call ends after a reply that carried a hangup has
finished.

Every reply carries the call's id in an ``X-Call-Id`` header (for a request without
one, the id callgate gave it). Failures, all in the OpenAI error shape: invalid JSON or no ``messages`` -> 400;
body over ``server.max_body_bytes`` -> 413; upstream unreachable -> 502; no first
byte within ``upstream.timeout_s`` -> 504; an upstream error status is relayed with
its body. After streaming began an upstream failure is sent as a ``data:`` event
carrying the error object, then ``data: [DONE]``, and the turn records it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from ..calls.model import Call, Turn, TurnOutcome, TurnStatus
from ..core.commands import AnyCommand
from ..core.function_map import FunctionMap
from ..core.inspector import InvalidChunk, ReplyInspector
from ..core.profile import NestedTooDeep, Profile
from ..core.sse import DONE, SSEDecodeError, SSEDecoder, SSEEvent, encode_data
from ..errors import (
    RequestError,
    UpstreamBadReply,
    UpstreamStatus,
    UpstreamTimeout,
    UpstreamUnreachable,
    openai_error_body,
)
from ..prompts import inject_prompt, inject_tools, instructions
from ..metrics import ADDED_TTFB, CHUNKS, UPSTREAM_ERRORS, UPSTREAM_TTFB
from .auth import key_of, requires
from .bodies import check_depth, checked, json_object, read_body
from .services import SERVICES, Services

__all__ = ["chat_completions", "downstream_headers", "last_user_text", "models", "parse_request", "upstream_headers"]

log = logging.getLogger("callgate.relay")

# Headers not copied between hops (RFC 9110 connection-specific ones, and those
# aiohttp sets itself).
_HOP = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "TE", "Trailer", "Upgrade",
        "Host", "Content-Length", "Content-Encoding", "Accept-Encoding",
    )
)

_UPSTREAM_FAILURES = (aiohttp.ClientError, TimeoutError, SSEDecodeError, InvalidChunk)
_GONE = "the client closed the connection"
_KINDS: dict[type, str] = {UpstreamTimeout: "timeout", UpstreamUnreachable: "unreachable", UpstreamStatus: "http_status"}


class _ClientGone(Exception):
    """The agent runtime closed the connection while we were writing to it."""


def upstream_headers(headers: Any, api_key: str, *, keep_auth: bool = True) -> CIMultiDict[str]:
    """The runtime's headers minus hop-by-hop ones; ``api_key`` (when set) as the
    ``Authorization``. ``keep_auth`` false (callgate's own keys are in use): the
    runtime's ``Authorization`` and ``api-key`` never go upstream."""
    drop = _HOP if keep_auth else _HOP | {"authorization", "api-key"}
    out: CIMultiDict[str] = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in drop)
    if api_key:
        out["Authorization"] = f"Bearer {api_key}"
    return out


def downstream_headers(headers: Any) -> dict[str, str]:
    """The upstream's response headers minus hop-by-hop ones."""
    return {k: v for k, v in headers.items() if k.lower() not in _HOP}


def _timeout(s: Services) -> aiohttp.ClientTimeout:
    t = s.config.upstream.timeout_s
    return aiohttp.ClientTimeout(total=None, sock_connect=t, sock_read=t)


def _url(s: Services, path: str) -> str:
    return s.config.upstream.base_url.rstrip("/") + path


async def _open_upstream(s: Services, method: str, path: str, **kw: Any) -> aiohttp.ClientResponse:
    """Send the request; raise 502/504 errors for connect failures and timeouts,
    :class:`UpstreamStatus` for an error answer."""
    try:
        resp = await s.session.request(method, _url(s, path), timeout=_timeout(s), **kw)
    except TimeoutError:
        raise UpstreamTimeout(f"upstream sent nothing within {s.config.upstream.timeout_s} s") from None
    except aiohttp.ClientError as e:
        raise UpstreamUnreachable(f"upstream unreachable: {type(e).__name__}: {e}") from None
    if resp.status >= 400:
        try:
            body = await resp.read()
        except (aiohttp.ClientError, TimeoutError):
            body = b""
        finally:
            resp.release()
        raise UpstreamStatus(resp.status, body, resp.headers.get("Content-Type"))
    return resp


def last_user_text(messages: list[Any]) -> str:
    """The text of the last ``user`` message (text parts joined)."""
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(t for p in content if isinstance(p, dict) and isinstance(t := p.get("text"), str))
            return ""
    return ""


def parse_request(raw: bytes, max_depth: int = 64) -> dict[str, Any]:
    """The JSON body, checked for what a chat completion needs (400 otherwise)."""
    body = json_object(raw, max_depth)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' is required and must be a non-empty array", param="messages")
    return body


class _Reply:
    """One reply in flight: its inspector, its commands handed to the registry,
    and how it went (:meth:`outcome`)."""

    def __init__(self, s: Services, profile: Profile, call: Call, turn: Turn, started: float) -> None:
        self.s, self.call, self.turn = s, call, turn
        self.inspector = ReplyInspector(profile.settings, policy=s.registry.hangup_policy(call))
        self.started = started  # perf_counter() when the request was read
        self.ttft_ms: float | None = None
        self.status: TurnStatus | None = None
        self.error: str | None = None
        self.kind: str | None = None  # how the upstream failed (callgate_upstream_errors_total)
        self.profile = profile.name
        self.chunks = CHUNKS.labels(profile.name)
        self.upstream_first = 0.0  # perf_counter() at the upstream's first byte
        self.client_first = False  # the client got its first byte

    def commands(self, cmds: list[AnyCommand]) -> None:
        if cmds:
            self.s.registry.add_commands(self.call, self.turn, cmds, self.inspector.spoken_text)

    def feed(self, event: SSEEvent) -> bytes:
        out, cmds = self.inspector.feed(event)
        if cmds:
            self.commands(cmds)
        return out

    def close(self) -> bytes:
        """End of the stream: what the inspector still held, its commands acted on."""
        tail, cmds = self.inspector.close()
        self.commands(cmds)
        return tail

    def first_byte(self) -> None:
        if self.ttft_ms is None:
            self.upstream_first = time.perf_counter()
            self.ttft_ms = round((self.upstream_first - self.started) * 1000, 3)
            UPSTREAM_TTFB.labels(self.profile).observe(self.upstream_first - self.started)

    def sent(self) -> None:
        """The client got bytes: the first time, what callgate added is measured."""
        if not self.client_first:
            self.client_first = True
            ADDED_TTFB.labels(self.profile).observe(time.perf_counter() - self.upstream_first)

    def settle(self, status: TurnStatus, error: str | None = None, kind: str | None = None) -> None:
        """How the reply ended (the first word stands); ``kind``: how the upstream failed."""
        if self.status is None:
            self.status = status
            self.error = error if error is not None else self.error
            self.kind = kind

    def note(self, error: str) -> None:
        """Something worth recording about a reply that still went well."""
        self.error = error

    def outcome(self) -> TurnOutcome:
        ins = self.inspector
        status = self.status or TurnStatus.ERROR
        error = self.error if self.status else (self.error or "callgate failed mid-reply")
        if ins.upstream_error is not None and status == TurnStatus.OK:
            status, error = TurnStatus.UPSTREAM_ERROR, json.dumps(ins.upstream_error, ensure_ascii=False)
        if status in (TurnStatus.UPSTREAM_ERROR, TurnStatus.UPSTREAM_INCOMPLETE):
            UPSTREAM_ERRORS.labels(self.kind or "stream_error").inc()
        return TurnOutcome(
            status=status,
            error=error,
            raw_text=ins.raw_text,
            spoken_text=ins.spoken_text,
            tool_calls=ins.tool_calls,
            ttft_ms=self.ttft_ms,
            duration_ms=round((time.perf_counter() - self.started) * 1000, 3),
        )


def _upstream_body(s: Services, profile: Profile, raw: bytes, body: dict[str, Any], upstream: dict[str, Any]) -> bytes:
    """The body to send upstream: the bytes as they came, unless runtime-only fields
    were taken out (``upstream`` is not ``body``) or prompts and tools are injected."""
    cc = s.config.commands
    if upstream is body and not (cc.inject_prompt or cc.inject_tools):
        return raw
    if cc.inject_prompt:
        inject_prompt(upstream, instructions(cc.prompt_language, cc.hangup_tag, cc.transfer_tag))
    if cc.inject_tools:
        inject_tools(upstream, FunctionMap(profile.settings.function_map))
    return json.dumps(upstream, ensure_ascii=False).encode()


@requires("relay")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions`` (and ``/<profile>/v1/...``); see the module docstring."""
    s = request.app[SERVICES]
    profile = s.profile(request)
    raw = await read_body(request, s.config.server.max_body_bytes)
    body = parse_request(raw, s.config.server.max_json_depth)
    try:
        upstream, metadata = profile.split(body, request.headers)
    except NestedTooDeep as e:
        raise RequestError(str(e), param=f"metadata.{e.field}", code="json_too_deep") from None
    check_depth(metadata, s.config.server.max_json_depth, "metadata")  # JSON strings (userData) parsed
    raw = _upstream_body(s, profile, raw, body, upstream)
    stream = body.get("stream") is True
    call_id = checked(lambda: profile.call_id_of(request.headers, body))
    started = time.perf_counter()
    headers = upstream_headers(request.headers, s.config.upstream.api_key, keep_auth=not s.config.auth.keys)
    headers["Content-Type"] = "application/json"
    # The upstream request and the call's lookup run at once: the model's time to
    # first token hides the database's answer (a call's first turn reads it).
    upstream = asyncio.ensure_future(_open_upstream(s, "POST", "/chat/completions", data=raw, headers=headers))
    try:
        call, turn = await s.registry.begin_turn(
            call_id,
            stream=stream,
            user_text=last_user_text(body["messages"]),
            metadata=metadata,
            profile=profile.name,
            owner=key.name if (key := key_of(request)) else None,
        )
    except BaseException:
        upstream.add_done_callback(_discard)
        upstream.cancel()
        raise
    reply = _Reply(s, profile, call, turn, started)
    try:
        try:
            resp = await upstream
        except Exception as e:
            reply.settle(TurnStatus.UPSTREAM_ERROR, str(e), _KINDS.get(type(e), "unreachable"))
            raise
        async with resp:
            if resp.content_type == "text/event-stream":
                return await _stream(request, resp, reply)
            reply.first_byte()
            if stream:  # a streaming request answered with something else
                reply.settle(TurnStatus.UPSTREAM_ERROR, f"upstream answered {resp.content_type} to a streaming request", "bad_reply")
                raise UpstreamBadReply(f"upstream answered {resp.content_type!r}, not text/event-stream, to a streaming request")
            return await _whole(resp, reply)
    except asyncio.CancelledError:
        reply.settle(TurnStatus.CLIENT_DISCONNECTED, _GONE)
        upstream.add_done_callback(_discard)
        upstream.cancel()
        raise
    finally:
        s.registry.finish_turn(call, turn, reply.outcome())


def _discard(fut: asyncio.Future[aiohttp.ClientResponse]) -> None:
    """An upstream request nobody will read: its answer (or error) is let go."""
    if not fut.cancelled() and fut.exception() is None:
        fut.result().release()


async def _whole(resp: aiohttp.ClientResponse, reply: _Reply) -> web.Response:
    try:
        data = await resp.read()
    except TimeoutError:
        reply.settle(TurnStatus.UPSTREAM_ERROR, "timeout reading the reply", "timeout")
        raise UpstreamTimeout("upstream stopped sending before the reply was complete") from None
    except aiohttp.ClientError as e:
        reply.settle(TurnStatus.UPSTREAM_ERROR, str(e), "unreachable")
        raise UpstreamUnreachable(f"upstream failed during the reply: {type(e).__name__}: {e}") from None
    if not _is_json(data):
        reply.settle(TurnStatus.UPSTREAM_ERROR, f"upstream answered {resp.content_type} that is not JSON", "bad_reply")
        raise UpstreamBadReply(f"upstream answered {resp.content_type!r} that is not a JSON chat completion")
    out, cmds = reply.inspector.inspect_completion(data)
    reply.commands(cmds)
    reply.settle(TurnStatus.OK)
    reply.sent()
    headers = downstream_headers(resp.headers)
    headers["X-Call-Id"] = reply.call.id
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


async def _relay_events(resp: aiohttp.ClientResponse, response: web.StreamResponse, reply: _Reply) -> None:
    """Upstream reads in, inspected bytes out, one write per read."""
    decoder = SSEDecoder()
    feed = reply.feed
    async for data in resp.content.iter_any():
        if reply.ttft_ms is None:
            reply.first_byte()
        events = decoder.decode(data)
        reply.chunks.inc(len(events))
        out = feed(events[0]) if len(events) == 1 else await _feed_all(response, feed, events)
        if out:
            await _write(response, out)
            if not reply.client_first:
                reply.sent()
    out = b"".join([feed(e) for e in decoder.flush()]) + reply.close()
    ins = reply.inspector
    if not ins.saw_done and not ins.saw_finish:  # cut off: say so, where the stream still allows it
        reply.settle(TurnStatus.UPSTREAM_INCOMPLETE, "the upstream's stream ended with no finish_reason and no [DONE]", "incomplete")
        body = openai_error_body("the upstream's stream ended before the reply was complete", type="upstream_error", code="upstream_incomplete")
        out += encode_data(json.dumps(body)) + DONE
    elif not ins.saw_done:  # finished, but without the last line: the runtime gets it
        reply.note("the upstream sent no [DONE]")
        out += DONE
    if out:
        await _write(response, out)
        reply.sent()


async def _feed_all(response: web.StreamResponse, feed: Any, events: list[SSEEvent]) -> bytes:
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


async def _upstream_failed(response: web.StreamResponse, reply: _Reply, e: BaseException) -> None:
    """The upstream failed mid-stream: the runtime gets an error event and [DONE]."""
    error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    if isinstance(e, TimeoutError):
        error = f"upstream sent nothing for {reply.s.config.upstream.timeout_s} s"
    reply.settle(TurnStatus.UPSTREAM_ERROR, error, "timeout" if isinstance(e, TimeoutError) else "stream_error")
    log.warning("upstream failed mid-stream call_id=%s error=%s", reply.call.id, error)
    tail = reply.close()
    body = openai_error_body(f"upstream failed during the stream: {error}", type="upstream_error", code="upstream_stream_error")
    await _write(response, tail + encode_data(json.dumps(body)) + DONE)


async def _stream(request: web.Request, resp: aiohttp.ClientResponse, reply: _Reply) -> web.StreamResponse:
    headers = downstream_headers(resp.headers)
    headers["Cache-Control"] = "no-cache"
    headers["X-Accel-Buffering"] = "no"
    headers["X-Call-Id"] = reply.call.id
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
        log.exception("relay failed mid-stream call_id=%s", reply.call.id)
        reply.settle(TurnStatus.ERROR, f"{type(e).__name__}: {e}")
        try:
            body = openai_error_body("callgate failed during the stream", code="internal_error")
            await response.write(encode_data(json.dumps(body)) + DONE)
        except Exception:
            pass
    return response


@requires("relay")
async def models(request: web.Request) -> web.Response:
    """``GET /v1/models`` (and ``/<profile>/v1/models``), relayed as the upstream answers it."""
    s = request.app[SERVICES]
    s.profile(request)  # 404 for an unknown profile
    headers = upstream_headers(request.headers, s.config.upstream.api_key, keep_auth=not s.config.auth.keys)
    resp = await _open_upstream(s, "GET", "/models", headers=headers)
    async with resp:
        try:
            data = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as e:
            raise UpstreamUnreachable(f"upstream failed: {type(e).__name__}") from None
        return web.Response(body=data, status=resp.status, headers=downstream_headers(resp.headers))
