"""The front doors: the platforms that hand callgate a call rather than a chat
completion request. The WebSocket platforms that call an LLM server themselves
(Retell's custom LLM, Twilio and Telnyx ConversationRelay) share one
:class:`~.session.Session`: each turn relayed upstream and inspected as on the HTTP
path, commands carried out as the platform's own end and transfer messages. OpenAI's
speech-to-speech SIP calls have no turn to relay (the model is OpenAI's): their door
(``openai_sip/``) is their protocol's adapter: a signed webhook, a sideband callgate
dials, and the same registry for turns, control events and the call's end.

======================  ==========================================================
``session``             one socket's session: its connection's events, its call, the turn
                        in flight, the transcript (every door shares it)
``turn``                one turn: the request upstream, walked by the relay's Reply, the
                        speech out
``sockets``             the socket: frames, close codes, one socket per call, the end
                        waiting for a reconnect
``retell``              ``GET /retell/v1/llm-websocket/{call_id}``
``conversation_relay``  ``GET /conversation-relay/v1/ws``, ``POST …/v1/action``
``openai_sip/``         ``POST /openai-sip/v1/webhook``: OpenAI's SIP calls (GPT-Live, Realtime)
======================  ==========================================================
"""

from __future__ import annotations

from aiohttp import web

from . import openai_sip
from .conversation_relay import action, relay_socket
from .retell import retell_socket
from .sockets import DOORS, Doors

__all__ = ["DOORS", "Doors", "add_routes"]


def add_routes(app: web.Application) -> None:
    """The front doors' routes, and their per-process registry of calls (``app[DOORS]``)."""
    app[DOORS] = Doors()
    app.router.add_get("/retell/v1/llm-websocket/{call_id}", retell_socket)
    app.router.add_get("/conversation-relay/v1/ws", relay_socket)
    app.router.add_post("/conversation-relay/v1/action", action)
    openai_sip.add_routes(app)  # POST /openai-sip/v1/webhook: OpenAI's speech-to-speech SIP calls
