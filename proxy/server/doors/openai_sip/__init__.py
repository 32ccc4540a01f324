"""The OpenAI SIP front door's server side: speech-to-speech phone calls (GPT-Live or
the Realtime API) whose audio flows between the carrier and OpenAI; callgate is the
backend that accepts them, watches their sideband and carries out their hangups and
transfers exactly once. The decisions are the sans-IO core's
(:mod:`proxy.core.openai_sip`); this package only carries them out.

=============  ====================================================================
``webhook``    ``POST /openai-sip/v1/webhook``: the signed incoming-call webhook
``door``       this instance's accepts, sessions, leases and takeovers
``session``    one call: the controller's actions carried out
``link``       the sideband WebSocket, attached again when it drops
``rest``       accept, reject, hangup and refer
``tools``      ``tool_webhook``: function calls the FunctionMap does not map
=============  ====================================================================
"""

from __future__ import annotations

from aiohttp import web

from .door import SIP_DOOR, SipDoor
from .webhook import webhook

__all__ = ["SIP_DOOR", "SipDoor", "add_routes"]


def add_routes(app: web.Application) -> None:
    """The webhook route, and the door (``app[SIP_DOOR]``), started after the app's
    services and stopped before them."""
    door = app[SIP_DOOR] = SipDoor()
    app.router.add_post("/openai-sip/v1/webhook", webhook)
    app.on_startup.append(door.start)
    app.on_shutdown.append(door.stop)
