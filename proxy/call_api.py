"""The call layer's HTTP API.

* ``GET /v1/calls/{call_id}/events``: Server-Sent Events, one per control event
  (``id:`` = the event's ``seq``, ``event:`` = its ``type``, ``data:`` = its JSON).
  A late subscriber gets the call's earlier events first; ``Last-Event-ID`` resumes
  after that seq. A ``: keep-alive`` comment goes out every
  ``control.sse_keepalive_s``. The stream closes after ``call.ended``. Subscribing
  to a call callgate has not seen yet creates it, so a call layer can subscribe
  before the first LLM request.
* ``POST /v1/calls/{call_id}/end`` with ``{"reason": "...", "state": {...}}``: the
  call layer reports the end. Idempotent: a second report changes nothing and
  answers ``already_ended: true``.
* ``PATCH /v1/calls/{call_id}/state``: a JSON merge patch (RFC 7386: ``null``
  removes a key) into the call's ``state``, which every end-function step reads as
  ``conv.state``. 409 once the call has ended.
* ``GET /v1/calls/{call_id}``: the call record; a live call from memory, an ended
  one from the database with its end-function steps (also after a restart). 404 in
  the OpenAI error shape when unknown.
"""

from __future__ import annotations

import json

from aiohttp import web

from .errors import RequestError, openai_error_body
from .events import CallEndedEvent, control_event_adapter
from .relay import json_object, read_body
from .services import SERVICES
from .sse import encode_event


def _not_found(call_id: str) -> web.Response:
    return web.json_response(
        openai_error_body(f"no call {call_id!r}", type="invalid_request_error", code="call_not_found"), status=404
    )


async def call_events(request: web.Request) -> web.StreamResponse:
    s = request.app[SERVICES]
    call_id = request.match_info["call_id"]
    last_id = request.headers.get("Last-Event-ID", "").strip()
    seen = int(last_id) if last_id.isdigit() else 0
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    call = s.registry.get(call_id)
    stored = s.storage.call_record(call_id) if call is None else None
    await response.prepare(request)
    try:
        if stored is not None and stored.get("status") == "ended":
            # ended before this process started: replay what the database has
            for data in stored.get("events", [])[seen:]:
                event = control_event_adapter.validate_python(data)
                await response.write(encode_event(event.model_dump_json(), event=event.type, id=str(event.seq)))
            await response.write_eof()
            return response
        call = call or s.registry.get_or_create(call_id)
        keepalive = s.config.control.sse_keepalive_s
        while True:
            for event in call.events[seen:]:
                seen = event.seq
                await response.write(
                    encode_event(event.model_dump_json(), event=event.type, id=str(event.seq))
                )
                if isinstance(event, CallEndedEvent):
                    await response.write_eof()
                    return response
            if not await call.wait_for_events(seen, keepalive):
                await response.write(b": keep-alive\n\n")
    except ConnectionError:
        pass  # the subscriber left
    return response


async def end_call(request: web.Request) -> web.Response:
    s = request.app[SERVICES]
    raw = await read_body(request, s.config.server.max_body_bytes)
    payload = json_object(raw) if raw.strip() else {}
    reason = payload.get("reason", "call_layer")
    state = payload.get("state") or {}
    if not isinstance(reason, str) or not reason:
        raise RequestError("'reason' must be a non-empty string", param="reason")
    if not isinstance(state, dict):
        raise RequestError("'state' must be an object", param="state")
    call_id = request.match_info["call_id"]
    call = s.registry.get(call_id)
    if call is None:
        stored = s.storage.call_record(call_id)
        if stored is not None and stored.get("status") == "ended":  # ended before a restart
            return web.json_response(
                {"call_id": call_id, "already_ended": True, "end_reason": stored.get("end_reason"), "end_source": stored.get("end_source")}
            )
        call = s.registry.get_or_create(call_id)
    ended = s.registry.end(call, reason, "call_layer", state)
    return web.json_response(
        {"call_id": call.id, "already_ended": not ended, "end_reason": call.end_reason, "end_source": call.end_source}
    )


def merge_patch(target: dict, patch: dict) -> dict:
    """RFC 7386 JSON merge patch, in place: ``null`` removes, objects merge."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = value
    return target


async def patch_state(request: web.Request) -> web.Response:
    s = request.app[SERVICES]
    patch = json_object(await read_body(request, s.config.server.max_body_bytes))
    call_id = request.match_info["call_id"]
    call = s.registry.get(call_id)
    if call is None:
        stored = s.storage.call_record(call_id)
        if stored is not None and stored.get("status") == "ended":
            return _ended(call_id)
        call = s.registry.get_or_create(call_id)
    if call.ended:
        return _ended(call_id)
    merge_patch(call.state, patch)
    call.touch()
    s.registry.save(call)
    return web.json_response({"call_id": call.id, "state": call.state}, dumps=lambda o: json.dumps(o, ensure_ascii=False))


def _ended(call_id: str) -> web.Response:
    return web.json_response(
        openai_error_body(f"call {call_id!r} has ended; its state is final", type="invalid_request_error", code="call_ended"),
        status=409,
    )


async def get_call(request: web.Request) -> web.Response:
    s = request.app[SERVICES]
    call_id = request.match_info["call_id"]
    call = s.registry.get(call_id)
    record = call.to_record() if call is not None and not call.ended else s.storage.get_call(call_id)
    if record is None and call is not None:
        record = call.to_record()
    if record is None:
        return _not_found(call_id)
    return web.json_response(record, dumps=lambda o: json.dumps(o, ensure_ascii=False, default=str))
