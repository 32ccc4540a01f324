"""What every front door shares at the socket: the WebSocket and its frames, one
socket per call on this process, the call's end when its socket closes, close codes.

Close codes (RFC 6455 and the 4000-4999 private range): ``1007`` a frame that is
not a JSON object or has a field of the wrong type, ``1009`` a frame over
``server.max_body_bytes``, ``4409`` a second socket for a call that has one already
here, ``1001`` callgate is shutting down. Each is logged with the call id.

A closed socket is written to the call (``calls.detached_at``): the call ends after
``end_function.after_hangup_s`` (reason ``socket_closed``, source the front door)
unless a socket for the same call id opens first, on any instance sharing the
database. This process ends it on time itself; the sweep of any instance ends it
when this one is gone. The end is conditional in the database: a call whose socket
came back (elsewhere) is not ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from ...calls.model import Call, EndReason
from ...config import FrontDoorConfig
from ...core.frames import FrameCode
from ...core.profile import Profile
from ...errors import RequestError
from ...metrics import FRONT_DOOR_FRAMES
from ..auth import key_of
from ..services import Services

__all__ = [
    "CLOSE_DUPLICATE", "CLOSE_GOING_AWAY", "CLOSE_INVALID", "CLOSE_TOO_BIG", "DOORS", "Doors", "door_profile", "frames", "open_socket", "owner_of",
    "refuse",
]

log = logging.getLogger("callgate.doors")

CLOSE_INVALID = 1007
CLOSE_TOO_BIG = 1009
CLOSE_DUPLICATE = 4409
CLOSE_GOING_AWAY = 1001


class Doors:
    """The front doors' sockets on this process: the live socket of each call id and
    the ends waiting for a reconnect (see the module docstring)."""

    def __init__(self) -> None:
        self.live: dict[str, web.WebSocketResponse] = {}
        self.pending: dict[str, asyncio.Task[None]] = {}

    def attach(self, call_id: str, ws: web.WebSocketResponse) -> bool:
        """``ws`` is ``call_id``'s socket from now on; ``False`` when it has one already.
        A waiting end here is called off (a reconnect)."""
        if call_id in self.live:
            return False
        waiting = self.pending.pop(call_id, None)
        if waiting is not None:
            waiting.cancel()
            log.info("front door reconnected call_id=%s", call_id)
        self.live[call_id] = ws
        return True

    async def take(self, call_id: str, ws: web.WebSocketResponse, door: str) -> bool:
        """:meth:`attach`, or ``False`` with ``ws`` closed (4409) and a log line when the
        call has a live socket here already."""
        if self.attach(call_id, ws):
            return True
        log.warning("front door refused a second socket door=%s call_id=%s close=%s", door, call_id, CLOSE_DUPLICATE)
        await ws.close(code=CLOSE_DUPLICATE, message=b"call already connected")
        return False

    def detach(self, s: Services, call_id: str, ws: web.WebSocketResponse, call: Call | None, source: str) -> None:
        """``ws`` closed: its call ends after ``end_function.after_hangup_s`` unless it
        reconnects (a task of its own: the socket's handler may be cancelled as it closes)."""
        if self.live.get(call_id) is not ws:
            return
        del self.live[call_id]
        if call is not None and not call.ended:
            task = asyncio.ensure_future(self._end_later(s, call_id, call, source))
            task.add_done_callback(_reported)
            self.pending[call_id] = task

    async def _end_later(self, s: Services, call_id: str, call: Call, source: str) -> None:
        try:
            await s.registry.detach_door(call, source)
            await asyncio.sleep(s.config.end_function.after_hangup_s)
            if not await s.registry.end(call, EndReason.SOCKET_CLOSED, source, if_detached=True):
                log.info("front door call_id=%s not ended: its socket opened again (here or on another instance)", call_id)
        finally:
            if self.pending.get(call_id) is asyncio.current_task():
                del self.pending[call_id]

    async def close(self) -> None:
        """At shutdown, once the replies in flight are done: every socket is closed with
        1001 (the platform reconnects, to the server that took over), and the waiting
        ends here are called off: the call's socket stays closed in the database, so
        the sweep of whichever instance runs ends it on time."""
        for ws in list(self.live.values()):
            with contextlib.suppress(Exception):
                await ws.close(code=CLOSE_GOING_AWAY, message=b"callgate is shutting down")
        waiting = list(self.pending.values())
        for t in waiting:
            t.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)


def _reported(task: asyncio.Task[None]) -> None:
    """A waiting end that failed is logged, never lost."""
    if not task.cancelled() and task.exception() is not None:
        log.error("front door: ending a call whose socket closed failed", exc_info=task.exception())


DOORS: web.AppKey[Doors] = web.AppKey("callgate_doors", Doors)


async def open_socket(request: web.Request, s: Services) -> web.WebSocketResponse:
    """The WebSocket upgrade; frames up to twice ``server.max_body_bytes`` are read
    (bigger ones are closed with 1009 by aiohttp), the limit itself is ours. A request
    that is no WebSocket upgrade raises :class:`~proxy.errors.RequestError` (HTTP 400,
    code ``websocket_upgrade_required``)."""
    ws = web.WebSocketResponse(max_msg_size=2 * s.config.server.max_body_bytes, autoping=True)
    if not ws.can_prepare(request).ok:
        raise RequestError("this route is a WebSocket: open it with an Upgrade: websocket request", code="websocket_upgrade_required")
    await ws.prepare(request)
    return ws


async def frames(ws: web.WebSocketResponse, door: str, call_id: Any) -> AsyncIterator[str | bytes]:
    """The socket's text (and binary) frames until it closes. A socket that breaks the
    WebSocket protocol is logged and counted by what broke: ``too_big`` (a frame past
    the reader's limit, close 1009) or ``protocol_error`` (anything else)."""
    async for msg in ws:
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            yield msg.data
        elif msg.type == WSMsgType.ERROR:
            exc = ws.exception()
            big = isinstance(exc, aiohttp.WebSocketError) and exc.code == WSCloseCode.MESSAGE_TOO_BIG
            code = FrameCode.TOO_BIG if big else FrameCode.PROTOCOL_ERROR
            log.warning("front door socket failed door=%s call_id=%s result=%s error=%s", door, call_id, code, exc)
            FRONT_DOOR_FRAMES.labels(door, code).inc()
            return


async def refuse(ws: web.WebSocketResponse, door: str, call_id: Any, code: FrameCode, message: str) -> None:
    """A frame callgate cannot read: logged, counted, the socket closed with its code."""
    FRONT_DOOR_FRAMES.labels(door, code).inc()
    close = CLOSE_TOO_BIG if code is FrameCode.TOO_BIG else CLOSE_INVALID
    log.warning("front door frame refused door=%s call_id=%s code=%s close=%s: %s", door, call_id, code, close, message)
    await ws.close(code=close, message=code.encode())


def door_profile(s: Services, door: FrontDoorConfig) -> Profile:
    """The front door's profile (``default_profile`` when it names none)."""
    return s.profiles[door.profile or s.config.default_profile]


def owner_of(request: web.Request) -> str | None:
    """The name of the request's key (``None`` without keys)."""
    key = key_of(request)
    return key.name if key else None
