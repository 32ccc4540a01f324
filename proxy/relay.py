"""The relay: ``POST /v1/chat/completions`` and ``GET /v1/models`` to the upstream LLM.

The request body goes upstream unchanged (unless ``inject_prompt``/``inject_tools``
add to it); ``upstream.api_key``, when set, replaces the client's
``Authorization``. Streamed replies are decoded event by event and each event is
written out as soon as the :class:`~proxy.inspector.ReplyInspector` lets it go;
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

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from .call_id import resolve_call_id
from .calls import Call, Turn
from .commands import AnyCommand, Command
from .errors import (
    BodyTooLarge,
    RequestError,
    UpstreamStatus,
    UpstreamTimeout,
    UpstreamUnreachable,
    openai_error_body,
)
from .events import HangupEvent, event_for_command
from .ids import new_id
from .inspector import ReplyInspector
from .prompts import inject_prompt, inject_tools, instructions
from .services import SERVICES, Services
from .sse import DONE, SSEDecodeError, SSEDecoder, encode_data

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

_UPSTREAM_FAILURES = (aiohttp.ClientError, TimeoutError, SSEDecodeError)


class _ClientGone(Exception):
    """The agent runtime closed the connection while we were writing to it."""


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, or :class:`BodyTooLarge` past ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(f"request body is {request.content_length} bytes; the limit is {limit}")
    parts: list[bytes] = []
    size = 0
    async for piece in request.content.iter_any():
        size += len(piece)
        if size > limit:
            raise BodyTooLarge(f"request body is over the limit of {limit} bytes")
        parts.append(piece)
    return b"".join(parts)


def upstream_headers(headers: Any, api_key: str) -> CIMultiDict[str]:
    """The runtime's headers minus hop-by-hop ones; ``api_key`` (when set) as the
    ``Authorization``."""
    out: CIMultiDict[str] = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _HOP)
    if api_key:
        out["Authorization"] = f"Bearer {api_key}"
    return out


def downstream_headers(headers: Any) -> dict[str, str]:
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
        raise UpstreamTimeout(
            f"upstream sent nothing within {s.config.upstream.timeout_s} s"
        ) from None
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
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return ""
    return ""


def json_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object (:class:`RequestError`, 400, otherwise)."""
    try:
        body = json.loads(raw)
    except ValueError as e:
        raise RequestError(f"request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    return body


def parse_request(raw: bytes) -> dict[str, Any]:
    """The JSON body, checked for what a chat completion needs (400 otherwise)."""
    body = json_object(raw)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' is required and must be a non-empty array", param="messages")
    return body


class _Reply:
    """Bookkeeping for one reply: turns commands into events on the call."""

    def __init__(self, s: Services, call: Call, turn: Turn) -> None:
        self.s, self.call, self.turn = s, call, turn
        self.inspector = ReplyInspector(s.settings, call_hung_up=call.hung_up)
        self.hangup: HangupEvent | None = None
        self.started = time.perf_counter()

    def commands(self, cmds: list[AnyCommand]) -> None:
        reply_text = self.inspector.spoken_text
        for cmd in cmds:
            event = self.s.registry.emit(self.call, event_for_command(cmd, self.call.id, reply_text))
            if isinstance(event, HangupEvent):
                self.hangup = event
            self.turn.commands.append(
                {
                    "function": cmd.function,
                    "source": cmd.source,
                    "args": dict(cmd.args),
                    "raw": cmd.raw,
                    "accepted": isinstance(cmd, Command) and event.type != "command.rejected",
                    "reason": getattr(event, "reason", None),
                    "event_id": event.id,
                }
            )
            log.info("control event call_id=%s type=%s source=%s", self.call.id, event.type, event.source)

    def first_byte(self) -> None:
        if self.turn.ttft_ms is None:
            self.turn.ttft_ms = round((time.perf_counter() - self.started) * 1000, 3)

    def finish(self, status: str, error: str | None = None) -> None:
        t, ins = self.turn, self.inspector
        t.status, t.error = status, error
        t.duration_ms = round((time.perf_counter() - self.started) * 1000, 3)
        t.raw_text, t.spoken_text, t.tool_calls = ins.raw_text, ins.spoken_text, ins.tool_calls
        if t.tool_calls:  # readable by the end function as conv.state["tool_calls"]
            recorded = self.call.state.setdefault("tool_calls", [])
            for tc in t.tool_calls:
                try:
                    args: Any = json.loads(tc["arguments"]) if tc["arguments"] else {}
                except ValueError:
                    args = tc["arguments"]
                recorded.append({"name": tc["name"], "arguments": args, "turn": t.request_id})
        if ins.upstream_error is not None and status == "ok":
            t.status, t.error = "upstream_error", json.dumps(ins.upstream_error, ensure_ascii=False)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    s = request.app[SERVICES]
    cfg = s.config
    raw = await read_body(request, cfg.server.max_body_bytes)
    body = parse_request(raw)
    if cfg.commands.inject_prompt:
        cc = cfg.commands
        inject_prompt(body, instructions(cc.prompt_language, cc.hangup_tag, cc.transfer_tag))
    if cfg.commands.inject_tools:
        inject_tools(body, s.function_map)
    if cfg.commands.inject_prompt or cfg.commands.inject_tools:
        raw = json.dumps(body, ensure_ascii=False).encode()

    call_id = resolve_call_id(request.headers, body, s.call_id_sources)
    anonymous = call_id is None
    call = s.registry.get_or_create(call_id or new_id("req_"), anonymous=anonymous)
    turn = Turn(
        request_id=new_id("req_"),
        started_at=datetime.now(UTC),
        stream=body.get("stream") is True,
        user_text=last_user_text(body["messages"]),
    )
    call.turns.append(turn)
    extend = body.get("extendData")
    if isinstance(extend, dict):  # IMS: callerNumber, calleeNumber, instanceId, ...
        call.metadata.update(extend)
    call.active_requests += 1
    call.touch()
    reply = _Reply(s, call, turn)
    try:
        headers = upstream_headers(request.headers, cfg.upstream.api_key)
        headers["Content-Type"] = "application/json"
        try:
            resp = await _open_upstream(s, "POST", "/chat/completions", data=raw, headers=headers)
        except Exception as e:
            reply.finish("upstream_error", str(e))
            raise
        async with resp:
            if resp.content_type == "text/event-stream":
                return await _stream(request, resp, reply)
            reply.first_byte()
            return await _whole(resp, reply)
    finally:
        call.active_requests -= 1
        call.touch()
        if reply.hangup is not None:
            s.registry.end(call, "agent_hangup", reply.hangup.source)
        elif anonymous:
            s.registry.end(call, "response_finished", "response_finished")
        else:
            s.registry.save(call)


async def _whole(resp: aiohttp.ClientResponse, reply: _Reply) -> web.Response:
    try:
        data = await resp.read()
    except TimeoutError:
        reply.finish("upstream_error", "timeout reading the reply")
        raise UpstreamTimeout("upstream stopped sending before the reply was complete") from None
    except aiohttp.ClientError as e:
        reply.finish("upstream_error", str(e))
        raise UpstreamUnreachable(f"upstream failed during the reply: {type(e).__name__}: {e}") from None
    out, cmds = reply.inspector.inspect_completion(data)
    reply.commands(cmds)
    reply.finish("ok")
    headers = downstream_headers(resp.headers)
    headers["X-Call-Id"] = reply.call.id
    return web.Response(body=out, status=resp.status, headers=headers)


async def _write(response: web.StreamResponse, data: bytes) -> None:
    try:
        await response.write(data)
    except ConnectionError as e:  # aiohttp's ClientConnectionResetError is one too
        raise _ClientGone() from e


def _feed(inspector: ReplyInspector, reply: _Reply, event: Any) -> bytes:
    out, cmds = inspector.feed(event)
    if cmds:
        reply.commands(cmds)
    return out


def _close(inspector: ReplyInspector, reply: _Reply) -> bytes:
    """End of the stream: what the inspector still held, its commands acted on."""
    tail, cmds = inspector.close()
    if cmds:
        reply.commands(cmds)
    return tail


async def _stream(request: web.Request, resp: aiohttp.ClientResponse, reply: _Reply) -> web.StreamResponse:
    headers = downstream_headers(resp.headers)
    headers["Cache-Control"] = "no-cache"
    headers["X-Accel-Buffering"] = "no"
    headers["X-Call-Id"] = reply.call.id
    response = web.StreamResponse(status=resp.status, headers=headers)
    await response.prepare(request)
    inspector = reply.inspector
    decoder = SSEDecoder()
    status, error = "ok", None
    try:
        try:
            async for data in resp.content.iter_any():
                if reply.turn.ttft_ms is None:
                    reply.first_byte()
                events = decoder.decode(data)
                if len(events) == 1:  # the common case: one chunk per read
                    out = _feed(inspector, reply, events[0])
                else:
                    out = b"".join([_feed(inspector, reply, event) for event in events])
                if out:
                    await _write(response, out)
            out = b"".join([_feed(inspector, reply, event) for event in decoder.flush()])
            out += _close(inspector, reply)
            if out:
                await _write(response, out)
        except _UPSTREAM_FAILURES as e:
            status = "upstream_error"
            error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            if isinstance(e, TimeoutError):
                error = f"upstream sent nothing for {reply.s.config.upstream.timeout_s} s"
            log.warning("upstream failed mid-stream call_id=%s error=%s", reply.call.id, error)
            tail = _close(inspector, reply)
            body = openai_error_body(f"upstream failed during the stream: {error}", type="upstream_error", code="upstream_stream_error")
            await _write(response, tail + encode_data(json.dumps(body)) + DONE)
        await response.write_eof()
    except (_ClientGone, ConnectionError):
        status, error = "client_disconnected", "the client closed the connection"
    except BaseException as e:
        if not isinstance(e, Exception):  # cancelled: the client went away
            reply.finish("client_disconnected", "the client closed the connection")
            raise
        log.exception("relay failed mid-stream call_id=%s", reply.call.id)
        status, error = "error", f"{type(e).__name__}: {e}"
        try:
            body = openai_error_body("callgate failed during the stream", code="internal_error")
            await response.write(encode_data(json.dumps(body)) + DONE)
        except Exception:
            pass
    reply.finish(status, error)
    return response


async def models(request: web.Request) -> web.Response:
    """``GET /v1/models``, relayed as the upstream answers it."""
    s = request.app[SERVICES]
    headers = upstream_headers(request.headers, s.config.upstream.api_key)
    resp = await _open_upstream(s, "GET", "/models", headers=headers)
    async with resp:
        try:
            data = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as e:
            raise UpstreamUnreachable(f"upstream failed: {type(e).__name__}") from None
        return web.Response(body=data, status=resp.status, headers=downstream_headers(resp.headers))
