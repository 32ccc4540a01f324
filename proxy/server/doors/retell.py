"""``GET /retell/v1/llm-websocket/{call_id}``: Retell's custom LLM front door.

One socket is one call (the path's ``call_id``). callgate sends ``config`` first
(auto-reconnect pings, the call's details); ``call_details`` puts ``from_number`` /
``to_number`` into the call's metadata as ``caller_number`` / ``callee_number``.
Each ``response_required`` / ``reminder_required`` is a turn on the transcript as
Retell sent it; its text goes out as ``response`` frames for its ``response_id``,
the last with ``content_complete: true`` and, when a command was acted on,
``end_call: true`` (hangup) or ``transfer_number`` (the callee). A newer
``response_id`` cancels the reply in flight. Protocol:
:class:`proxy.core.retell.RetellConnection`; the rest is the shared
:class:`~.session.Session`.
"""

from __future__ import annotations

from aiohttp import web

from ...core.retell import RetellConnection
from ..auth import key_in_query, requires
from ..services import SERVICES
from .session import Session
from .sockets import open_socket, owner_of

__all__ = ["retell_socket"]


@key_in_query
@requires("relay")
async def retell_socket(request: web.Request) -> web.WebSocketResponse:
    """The WebSocket of one Retell call (see the module docstring)."""
    s = request.app[SERVICES]
    ws = await open_socket(request, s)
    conn = RetellConnection(request.match_info["call_id"], s.config.server.max_body_bytes)
    session = Session(request.app, ws, "retell", conn, transcript=False, owner=owner_of(request),
                      traceparent=request.headers.get("traceparent"), tracestate=request.headers.get("tracestate"))
    await session.serve(conn.attach())
    return ws
