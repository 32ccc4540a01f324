"""The sideband WebSocket of one call: attached after the accept, read, attached again
when it drops while the call lives.

``aiohttp``'s ``ws_connect`` to :func:`proxy.core.openai_sip.api.sideband_url` with
``Authorization: Bearer {api_key}`` (no subprotocol; reference §3), pinged every 30 s.
Each text frame is read by :func:`proxy.core.openai_sip.events.read` and handed on.

When the socket closes and the call has not ended, it is attached again, up to
``reattach_tries`` times in a row (0.25 s, then doubling to 2 s between); an attach
answered 4xx after an earlier one succeeded means the call is gone (Realtime: the
caller hung up, which drops the socket without a close frame). The first attach is
tried ``reattach_tries`` times more whatever it is answered. :meth:`Link.run` returns why it gave up.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import aiohttp
from aiohttp import WSMsgType

from ....config import OpenAISipConfig
from ....core.backoff import delay_s
from ....core.openai_sip import events
from ....core.openai_sip.api import Api, sideband_url

__all__ = ["Link"]

log = logging.getLogger("callgate.sip")


class Link:
    """One call's sideband; ``on_event`` gets every event read (on the event loop)."""

    def __init__(
        self, session: aiohttp.ClientSession, config: Callable[[], OpenAISipConfig], api: Api, call_id: str,
        on_event: Callable[[events.ServerEvent], None],
    ) -> None:
        self.session = session
        self.config = config
        self.api = api
        self.call_id = call_id
        self.on_event = on_event
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.attached = asyncio.Event()  # set while a socket is open
        self.attaches = 0
        self.stopping = False

    async def run(self) -> str:
        """Attach, read, attach again; the reason it stopped for good: ``gone`` (an
        attach answered 4xx), ``connection_lost`` (tries used up) or ``stopped``."""
        failed = 0
        while not self.stopping:
            got = await self._attach_and_read()
            if got is None:
                return "gone"
            if self.stopping:
                break
            failed = 0 if got else failed + 1
            cfg = self.config()
            if failed > cfg.reattach_tries:
                log.warning("openai sip sideband lost call_id=%s after %d tries", self.call_id, cfg.reattach_tries)
                return "connection_lost"
            await asyncio.sleep(delay_s(failed, 0.25, 2.0, random.random()))  # jittered: calls dropped together spread out
        return "stopped"

    async def _attach_and_read(self) -> bool | None:
        """One socket: ``True`` when it carried an event, ``False`` when it failed or
        carried none, ``None`` when a later attach was refused with a 4xx (the call is gone)."""
        cfg = self.config()
        url = sideband_url(cfg.base_url, self.api, self.call_id)
        try:
            ws = await self.session.ws_connect(
                url, headers={"Authorization": f"Bearer {cfg.api_key}"}, heartbeat=30, max_msg_size=16 << 20,
                timeout=aiohttp.ClientWSTimeout(ws_close=5),
            )
        except aiohttp.WSServerHandshakeError as e:
            log.warning("openai sip sideband attach refused call_id=%s status=%s", self.call_id, e.status)
            return None if 400 <= e.status < 500 and self.attaches else False  # the first attach may come too early: tried again
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            log.warning("openai sip sideband attach failed call_id=%s status=none: %s", self.call_id, e)
            return False
        self.attaches += 1
        log.info("openai sip sideband attached call_id=%s attach=%d", self.call_id, self.attaches)
        return await self._read(ws)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        self.ws = ws
        self.attached.set()
        got = False
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    event = events.read(self.api, msg.data)
                    got = True
                    if isinstance(event, events.SessionClosed):
                        self.stopping = True
                    self.on_event(event)
        finally:
            self.attached.clear()
            self.ws = None
            await ws.close()
        if not self.stopping:
            log.info("openai sip sideband closed call_id=%s code=%s", self.call_id, ws.close_code)
        return got

    async def send(self, text: str) -> bool:
        """Send one frame on the open socket; ``False`` when there is none (or it broke)."""
        ws = self.ws
        if ws is None or ws.closed:
            return False
        try:
            await ws.send_str(text)
        except (ConnectionError, aiohttp.ClientError, RuntimeError):
            return False
        return True

    async def close(self) -> None:
        """Stop: the socket is closed and not attached again."""
        self.stopping = True
        ws = self.ws
        if ws is not None:
            await ws.close()
