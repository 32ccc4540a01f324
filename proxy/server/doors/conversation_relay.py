"""``GET /conversation-relay/v1/ws`` and ``POST /conversation-relay/v1/action``: the
Twilio ConversationRelay front door (Telnyx sends the same frames).

One socket is one call, its id the ``setup`` frame's ``callSid`` (``from`` / ``to``
go into the metadata as ``caller_number`` / ``callee_number``). Each complete
``prompt`` is a turn (:func:`~.turn.run_turn`) on the conversation callgate keeps
(:class:`proxy.core.conversation_relay.History`: the prompts and what the caller
heard); its text goes out as ``text`` tokens, the last with ``last: true``. A hangup
then sends ``end`` with ``handoffData`` ``{"reasonCode": "hangup", …}``; a transfer
``end`` with ``{"reasonCode": "transfer", "callee": …}``. An ``interrupt`` (or a new
prompt) cancels the reply in flight; the turn and the conversation keep
``utteranceUntilInterrupt``. The action URL answers TwiML from ``HandoffData``:
``<Dial>`` for a transfer, ``<Hangup/>`` otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import urllib.parse
from typing import Any

from aiohttp import web

from ...calls.model import Call
from ...core import conversation_relay as cr
from ...core.frames import FrameError
from ...errors import CallgateError, RequestError
from ..auth import key_in_query, requires
from ..bodies import read_body
from ..services import SERVICES, Services
from .sockets import DOORS, door_profile, frames, ignored, open_socket, owner_of, refuse
from .turn import DoorReply, run_turn

__all__ = ["action", "relay_socket"]

log = logging.getLogger("callgate.doors")

DOOR = "conversation_relay"


@key_in_query
@requires("relay")
async def relay_socket(request: web.Request) -> web.WebSocketResponse:
    """The WebSocket of one ConversationRelay session (see the module docstring)."""
    s = copy.copy(request.app[SERVICES])
    ws = await open_socket(request, s)
    session = _Session(s, ws, owner_of(request))
    try:
        await session.serve(request.app[DOORS])
    finally:
        await session.interrupt(None)
        if session.call_id is not None:
            request.app[DOORS].detach(s, session.call_id, ws, session.call, DOOR)
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


class _Session:
    """One ConversationRelay call on its socket."""

    def __init__(self, s: Services, ws: web.WebSocketResponse, owner: str | None) -> None:
        self.s, self.ws, self.owner = s, ws, owner
        self.door = s.config.front_doors.conversation_relay
        self.profile = door_profile(s, self.door)
        self.call_id: str | None = None
        self.call: Call | None = None
        self.metadata: dict[str, Any] = {}
        self.history = cr.History()
        self.task: asyncio.Task[None] | None = None
        self.reply: DoorReply | None = None
        self.sent: list[str] = []  # what the reply in flight has sent

    async def serve(self, doors: Any) -> None:
        async for frame in frames(self.ws, DOOR, self.call_id):
            try:
                msg = cr.read(frame, self.s.config.server.max_body_bytes)
            except FrameError as e:
                return await refuse(self.ws, DOOR, self.call_id, e)
            if isinstance(msg, cr.Setup):
                if not await self.setup(msg, doors):
                    return
            elif isinstance(msg, cr.Prompt) and self.call_id is not None:
                await self.prompt(msg)
            elif isinstance(msg, cr.Interrupt):
                await self.interrupt(msg.heard or None)
            elif isinstance(msg, cr.PlatformError):
                log.warning("conversation relay error call_id=%s: %s", self.call_id, msg.description)
            elif isinstance(msg, (cr.Unknown, cr.Prompt)):  # a prompt before setup has no call
                ignored(DOOR, getattr(msg, "type", "prompt"))

    async def setup(self, msg: cr.Setup, doors: Any) -> bool:
        """The session's call: ``False`` (the socket closed) when it has a socket already."""
        call_id = msg.call_sid or msg.session_id
        if self.call_id is not None:
            ignored(DOOR, "setup")  # a second setup: the session has its call
            return True
        if not await doors.take(call_id, self.ws, DOOR):
            return False
        self.call_id = call_id
        self.metadata.update({k: v for k, v in (("caller_number", msg.caller_number), ("callee_number", msg.callee_number)) if v})
        return True

    async def prompt(self, msg: cr.Prompt) -> None:
        said = self.history.prompt(msg)
        if said is None:
            return
        await self.interrupt(None)
        self.task = asyncio.ensure_future(self.answer(said))

    async def interrupt(self, heard: str | None) -> None:
        """The caller spoke over the reply in flight (``heard``: what Twilio says they
        heard; else what was sent): it is cancelled and the conversation keeps that."""
        task = self.task
        if task is None or task.done():
            return
        heard = heard if heard is not None else "".join(self.sent)
        if self.reply is not None:
            self.reply.heard = heard
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.history.heard(heard)

    async def answer(self, said: str) -> None:
        """One turn for the caller's utterance ``said``."""
        assert self.call_id is not None
        self.sent, self.reply = [], None

        async def send(token: str) -> None:
            self.sent.append(token)
            await self.ws.send_json(cr.text(token, False))

        try:
            reply = await run_turn(
                self.s, self.door, self.profile, self.call_id, owner=self.owner, messages=self.history.messages(self.door.system_prompt),
                user_text=said, metadata=self.metadata or None, send=send, on_reply=self._began,
            )
        except CallgateError as e:
            log.warning("front door turn refused door=%s call_id=%s: %s", DOOR, self.call_id, e)
            await self.ws.send_json(cr.end({"reasonCode": "error", "error": type(e).__name__}))
            return
        self.history.heard(reply.spoken_text)
        with contextlib.suppress(ConnectionError):
            await self.ws.send_json(cr.text("", True))
            await self._act(reply)

    async def _act(self, reply: DoorReply) -> None:
        hangup, transfer = reply.hangup, reply.transfer
        if transfer is not None:
            await self.ws.send_json(cr.end({"reasonCode": "transfer", "callee": transfer.callee, "event_id": transfer.id}))
        elif hangup is not None:
            await self.ws.send_json(cr.end({"reasonCode": "hangup", "event_id": hangup.id}))

    def _began(self, reply: DoorReply) -> None:
        self.reply, self.call = reply, reply.call
