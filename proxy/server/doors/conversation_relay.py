"""``GET /conversation-relay/v1/ws`` and ``POST /conversation-relay/v1/action``: the
Twilio ConversationRelay front door (Telnyx sends the same frames).

One socket is one call, its id the ``setup`` frame's ``callSid`` (``from`` / ``to``
go into the metadata as ``caller_number`` / ``callee_number``). Each complete
``prompt`` is a turn on the conversation callgate keeps for the call (the caller's
utterances and what they heard: :class:`proxy.core.door.Transcript`, read back from
the call's turns when a socket reconnects, to any instance); its text goes out as
``text`` tokens, the last with ``last: true``. A hangup then sends ``end`` with
``handoffData`` ``{"reasonCode": "hangup", …}``; a transfer ``end`` with
``{"reasonCode": "transfer", "callee": …}``. An ``interrupt`` (or a new prompt)
cancels the reply in flight; an ``interrupt`` after the reply finished streaming
(the text-to-speech still speaking it) corrects it: the conversation and the turn's
``heard_text`` keep ``utteranceUntilInterrupt`` either way. The action URL answers
TwiML from ``HandoffData``: ``<Dial>`` for a transfer, ``<Hangup/>`` otherwise.
Protocol: :class:`proxy.core.conversation_relay.RelayConnection`; the rest is the
shared :class:`~.session.Session`.
"""

from __future__ import annotations

import logging
import urllib.parse

from aiohttp import web

from ...core import conversation_relay as cr
from ...core.conversation_relay import RelayConnection
from ...errors import RequestError
from ..auth import key_in_query, requires
from ..bodies import read_body
from ..services import SERVICES
from .session import Session
from .sockets import open_socket, owner_of

__all__ = ["action", "relay_socket"]

log = logging.getLogger("callgate.doors")


@key_in_query
@requires("relay")
async def relay_socket(request: web.Request) -> web.WebSocketResponse:
    """The WebSocket of one ConversationRelay session (see the module docstring)."""
    s = request.app[SERVICES]
    ws = await open_socket(request, s)
    conn = RelayConnection(s.config.server.max_body_bytes, s.config.limits.max_prompt_chars)
    session = Session(request.app, ws, "conversation_relay", conn, transcript=True, owner=owner_of(request),
                      traceparent=request.headers.get("traceparent"), tracestate=request.headers.get("tracestate"))
    await session.serve()
    return ws


@key_in_query
@requires("relay")
async def action(request: web.Request) -> web.Response:
    """``POST /conversation-relay/v1/action``: Twilio's ``<Connect action>`` after
    ``end``; TwiML from the ``HandoffData`` field of the URL-encoded form (``text/xml``).
    Raises :class:`~proxy.errors.RequestError` for another body type,
    :class:`~proxy.errors.BodyTooLarge` past ``server.max_body_bytes``."""
    if request.can_read_body and request.content_type != "application/x-www-form-urlencoded":
        raise RequestError("the action URL takes Twilio's application/x-www-form-urlencoded form", code="unsupported_content_type")
    raw = await read_body(request, request.app[SERVICES].config.server.max_body_bytes)
    form = {k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode("utf-8", "replace")).items()}
    twiml = cr.twiml(form.get("HandoffData"))
    log.info("conversation relay action call_sid=%s status=%s twiml=%s", form.get("CallSid"), form.get("SessionStatus"), twiml)
    return web.Response(text=f'<?xml version="1.0" encoding="UTF-8"?>{twiml}', content_type="text/xml")
