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
* ``GET /v1/calls/{call_id}``: the call record (404 in the OpenAI error shape when
  unknown or expired).
"""

from __future__ import annotations

import json

from aiohttp import web

from .errors import RequestError, openai_error_body
from .events import CallEndedEvent
from .relay import json_object, read_body
from .services import SERVICES
from .sse import encode_event


def _not_found(call_id: str) -> web.Response:
    return web.json_response(
        openai_error_body(f"no call {call_id!r}", type="invalid_request_error", code="call_not_found"), status=404
    )


async def call_events(request: web.Request) -> web.StreamResponse:
    s = request.app[SERVICES]
    call = s.registry.get_or_create(request.match_info["call_id"])
    last_id = request.headers.get("Last-Event-ID", "").strip()
    seen = int(last_id) if last_id.isdigit() else 0
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    keepalive = s.config.control.sse_keepalive_s
    try:
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
    call = s.registry.get_or_create(request.match_info["call_id"])
    ended = s.registry.end(call, reason, "call_layer", state)
    return web.json_response(
        {"call_id": call.id, "already_ended": not ended, "end_reason": call.end_reason, "end_source": call.end_source}
    )


async def get_call(request: web.Request) -> web.Response:
    s = request.app[SERVICES]
    call_id = request.match_info["call_id"]
    call = s.registry.get(call_id)
    if call is None:
        return _not_found(call_id)
    return web.json_response(call.to_record(), dumps=lambda o: json.dumps(o, ensure_ascii=False))
