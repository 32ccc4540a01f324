"""The call layer's HTTP API.

* ``GET /v1/calls/{call_id}/events``: Server-Sent Events, one per control event
  (``id:`` = the event's ``seq``, ``event:`` = its ``type``, ``data:`` = its JSON;
  the aiohttp-sse wire format). A late subscriber gets the call's earlier events
  first; ``Last-Event-ID`` resumes after that seq. A ``: keep-alive`` comment goes
  out every ``control.sse_keepalive_s``. The stream closes after ``call.ended``.
  Events are read from the database as they commit (any instance's). A call layer
  can subscribe before the first LLM request; that creates nothing.
* ``POST /v1/calls/{call_id}/end`` with ``{"reason": "...", "state": {...}}``: the
  call layer reports the end. Idempotent: a second report changes nothing and
  answers ``already_ended: true``. 404 for a call that never had a turn.
* ``PATCH /v1/calls/{call_id}/state``: a JSON merge patch (RFC 7386: ``null``
  removes a key) into the call's ``state``, which every end-function step reads as
  ``conv.state``. 409 once the call has ended; 404 for a call that never had a turn.
* ``GET /v1/calls/{call_id}``: the call record, from the database once the call's
  queued writes are done, with its end-function steps (also after a restart). 404
  in the OpenAI error shape when unknown. A call id whose call ended and came back
  names the newest call; ``?generation=1`` (2, ...) reads the earlier ones. The
  record's ``id`` and ``call_id`` are the runtime's id, ``generation`` says which
  call under it; ``key`` is callgate's record key.

Every call is found through the registry (:meth:`~proxy.calls.registry.CallRegistry.find`:
memory, else the database).
"""

from __future__ import annotations

import json

from aiohttp import web

from ..calls.followers import Signal
from ..calls.model import Call, EndReason, record_key
from ..calls.registry import CallRegistry
from ..config import KeyConfig
from ..core.call_id import check_call_id
from ..core.sse import encode_event
from ..errors import CallEnded, NotFound, RequestError
from ..storage import ops
from .auth import key_of, requires, visible
from .bodies import checked, error_response, json_response, query_value, read_json_object, whole_number
from .services import SERVICES

__all__ = ["call_events", "end_call", "get_call", "patch_state"]


@requires("calls:read")
async def call_events(request: web.Request) -> web.StreamResponse:
    """``GET /v1/calls/{call_id}/events``; see the module docstring."""
    s = request.app[SERVICES]
    seen = whole_number(request.headers.get("Last-Event-ID", "").strip()) or 0
    call_id = _path_id(request)
    key = key_of(request)
    call = await s.registry.find(call_id)
    if call is not None and not visible(key, call.owner):
        raise NotFound(f"no call {call_id!r}", code="call_not_found")
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    signal = s.registry.subscribe(call.key if call is not None else call_id)
    # A call not seen yet may turn out to be another key's: checked at its first event.
    pending_check = None if call is not None or key is None or key.calls_of is None else key
    try:
        await _follow(response, s.registry, signal, seen, s.config.control.sse_keepalive_s, pending_check)
    except ConnectionError:
        pass  # the subscriber left
    finally:
        s.registry.unsubscribe(signal)
    return response


async def _follow(
    response: web.StreamResponse, registry: CallRegistry, signal: Signal, seen: int, keepalive_s: float, check: KeyConfig | None
) -> None:
    """Write the call's events after ``seen`` from the database as they commit,
    until ``call.ended``; a keep-alive comment (and a fresh read) when idle. ``check``:
    a key limited by ``calls_of`` that may see the call only if it is one of its own."""
    while True:
        signal.event.clear()
        events = await registry.events_after(signal.key, seen)
        if events and check is not None:
            call = await registry.find(signal.key, exact=True)
            if call is None or not visible(check, call.owner):
                await response.write_eof()
                return
            check = None
        for event in events:
            seen = event["seq"]
            await response.write(encode_event(json.dumps(event, ensure_ascii=False), event=event["type"], id=str(seen)))
            if event["type"] == "call.ended":
                await response.write_eof()
                return
        if not await signal.wait(keepalive_s):
            await response.write(b": keep-alive\n\n")



def _path_id(request: web.Request) -> str:
    """The call id in the path, checked (400 when callgate would not take it)."""
    return checked(lambda: check_call_id(request.match_info["call_id"], "path")) or ""


async def _call(request: web.Request, call_id: str) -> Call:
    """The call, or :class:`~proxy.errors.NotFound` (404): a call that never had a
    turn does not exist, whatever its id, and neither does one the key may not see."""
    call = await request.app[SERVICES].registry.find(call_id)
    if call is None or not visible(key_of(request), call.owner):
        raise NotFound(f"no call {call_id!r}", code="call_not_found")
    return call


@requires("calls:write")
async def end_call(request: web.Request) -> web.Response:
    """``POST /v1/calls/{call_id}/end``; see the module docstring."""
    s = request.app[SERVICES]
    srv = s.config.server
    payload = await read_json_object(request, srv.max_state_bytes, srv.max_json_depth, empty={})
    reason = payload.get("reason", EndReason.CALL_LAYER)
    state = payload.get("state")
    state = {} if state is None else state
    if not isinstance(reason, str) or not reason or len(reason) > 128 or not reason.isprintable():
        raise RequestError("'reason' must be a non-empty string of at most 128 printable characters", param="reason")
    if not isinstance(state, dict):
        raise RequestError("'state' must be an object", param="state")
    call = await _call(request, _path_id(request))
    ended = await s.registry.end(call, reason, "call_layer", state)
    end_reason, end_source = (reason, "call_layer") if ended else await s.store.read(ops.end_of, call.key)
    return json_response({
        "call_id": call.call_id, "generation": call.generation, "already_ended": not ended, "end_reason": end_reason,
        "end_source": end_source,
    })


@requires("calls:write")
async def patch_state(request: web.Request) -> web.Response:
    """``PATCH /v1/calls/{call_id}/state``; see the module docstring."""
    s = request.app[SERVICES]
    patch = await read_json_object(request, s.config.server.max_state_bytes, s.config.server.max_json_depth)
    call = await _call(request, _path_id(request))
    state = None if call.ended else await s.registry.patch_state(call, patch)
    if state is None:
        raise CallEnded(f"call {call.call_id!r} has ended; its state is final")
    return json_response({"call_id": call.call_id, "generation": call.generation, "state": state})


@requires("calls:read")
async def get_call(request: web.Request) -> web.Response:
    """``GET /v1/calls/{call_id}``; see the module docstring."""
    s = request.app[SERVICES]
    call_id = _path_id(request)
    raw = query_value(request, "generation") or ""
    generation = whole_number(raw)
    if raw and not generation:
        raise RequestError("'generation' must be a positive integer", param="generation")
    if generation:
        record = await s.registry.record(record_key(call_id, generation), exact=True)
    else:
        record = await s.registry.record(call_id)
    if record is None or not visible(key_of(request), record.get("owner")):
        return error_response(f"no call {call_id!r}", "call_not_found", 404)
    return json_response(record)
