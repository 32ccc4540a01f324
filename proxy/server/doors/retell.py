"""``GET /retell/v1/llm-websocket/{call_id}``: Retell's custom LLM front door.

One socket is one call (the path's ``call_id``). callgate sends ``config`` first
(auto-reconnect pings, the call's details); ``call_details`` puts ``from_number`` /
``to_number`` into the call's metadata as ``caller_number`` / ``callee_number``.
Each ``response_required`` / ``reminder_required`` is a turn (:func:`~.turn.run_turn`)
on the transcript as Retell sent it; its text goes out as ``response`` frames for
its ``response_id``, the last with ``content_complete: true`` and, when a command
was acted on, ``end_call: true`` (hangup) or ``transfer_number`` (the callee). A
newer ``response_id`` cancels the reply in flight. Protocol: :mod:`proxy.core.retell`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from typing import Any

from aiohttp import web

from ...core import retell
from ...core.frames import FrameError
from ...errors import CallgateError
from ..auth import key_in_query, requires
from ..services import SERVICES, Services
from .sockets import DOORS, door_profile, frames, ignored, open_socket, owner_of, refuse
from .turn import DoorReply, run_turn

__all__ = ["retell_socket"]

log = logging.getLogger("callgate.doors")

DOOR = "retell"


@key_in_query
@requires("relay")
async def retell_socket(request: web.Request) -> web.WebSocketResponse:
    """The WebSocket of one Retell call (see the module docstring)."""
    s = copy.copy(request.app[SERVICES])
    call_id = request.match_info["call_id"]
    ws = await open_socket(request, s)
    doors = request.app[DOORS]
    if not await doors.take(call_id, ws, DOOR):
        return ws
    session = _Session(s, ws, call_id, owner_of(request))
    try:
        await session.serve()
    finally:
        await session.stop()
        doors.detach(s, call_id, ws, session.call, DOOR)
    return ws


class _Session:
    """One Retell call on its socket: the reply in flight, the call's metadata."""

    def __init__(self, s: Services, ws: web.WebSocketResponse, call_id: str, owner: str | None) -> None:
        self.s, self.ws, self.call_id, self.owner = s, ws, call_id, owner
        self.door = s.config.front_doors.retell
        self.profile = door_profile(s, self.door)
        self.metadata: dict[str, Any] = {}
        self.task: asyncio.Task[None] | None = None
        self.reply: DoorReply | None = None
        self.call: Any = None

    async def serve(self) -> None:
        await self.ws.send_json(retell.config_message())
        async for frame in frames(self.ws, DOOR, self.call_id):
            try:
                msg = retell.read(frame, self.s.config.server.max_body_bytes)
            except FrameError as e:
                return await refuse(self.ws, DOOR, self.call_id, e)
            await self.on(msg)

    async def on(self, msg: retell.Inbound) -> None:
        """One message from Retell."""
        if isinstance(msg, retell.ResponseRequired):
            await self.interrupt()
            self.task = asyncio.ensure_future(self.answer(msg))
        elif isinstance(msg, retell.CallDetails):
            self.metadata.update({k: v for k, v in (("caller_number", msg.caller_number), ("callee_number", msg.callee_number)) if v})
        elif isinstance(msg, retell.PingPong):
            await self.ws.send_json(retell.ping_pong(msg.timestamp))
        elif isinstance(msg, retell.Unknown):
            ignored(DOOR, msg.interaction_type)

    async def interrupt(self) -> None:
        """The reply in flight is superseded: cancelled, its upstream closed."""
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def answer(self, msg: retell.ResponseRequired) -> None:
        """One turn for ``msg.response_id``."""
        rid = msg.response_id

        async def send(text: str) -> None:
            await self.ws.send_json(retell.response(rid, text, complete=False))

        user = next((u.content for u in reversed(msg.transcript) if u.role == "user"), "")
        try:
            reply = await run_turn(
                self.s, self.door, self.profile, self.call_id, owner=self.owner, messages=retell.messages(self.door.system_prompt, msg.transcript),
                user_text=user, metadata=self.metadata or None, send=send, on_reply=self._began,
            )
        except CallgateError as e:
            log.warning("front door turn refused door=%s call_id=%s: %s", DOOR, self.call_id, e)
            await self.ws.send_json(retell.response(rid, "", complete=True, end_call=True))
            return
        transfer = reply.transfer
        with contextlib.suppress(ConnectionError):
            await self.ws.send_json(retell.response(
                rid, "", complete=True, end_call=reply.hangup is not None, transfer_number=transfer.callee if transfer else None,
            ))

    def _began(self, reply: DoorReply) -> None:
        self.reply, self.call = reply, reply.call

    async def stop(self) -> None:
        """The socket closed: the reply in flight is cancelled."""
        await self.interrupt()
