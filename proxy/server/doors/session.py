"""One front-door session: a platform's socket, its sans-IO connection, its call,
the turn in flight, and the transcript the platform does not keep.

:class:`Session` reads the socket's frames into the connection's events
(:mod:`proxy.core.door`) and does what each says: attach the socket to its call
(one socket per call here: a second is closed 4409; the conversation is read back
from the call's turns on a reconnect, on any instance), start a turn (a task of
the session's :class:`asyncio.TaskGroup`: it is awaited, and an error in it is
logged and answered with the platform's error frame, never lost), cancel the reply
in flight or correct the last one with what the caller heard, answer a ping,
refuse an unreadable frame with its close code. When the socket closes, the reply
in flight is cancelled (``client_disconnected``) and the call's end waits for a
reconnect (:class:`~.sockets.Doors`).

Each turn reads the server's configuration as it is then (a SIGHUP reload reaches
a socket that stays open). A door module is the route and its connection class.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from aiohttp import web

from ...calls.model import Call
from ...config import FrontDoorConfig
from ...core.door import (
    Answer, Attach, Cancel, Details, DoorEvent, DoorOut, Ignore, LimitHit, PlatformNote, Refuse, SpeechOut, StartTurn,
    Transcript, TurnDone, TurnFailed,
)
from ...core.reply import ReplyEvent
from ...errors import CallgateError
from ...metrics import FRONT_DOOR_FRAMES, LIMIT_HITS
from ...telemetry import TurnEvent
from ..relay.reply import Reply
from ..services import SERVICES, Services
from .sockets import DOORS, Doors, frames, refuse
from .turn import run_turn

__all__ = ["Connection", "Session"]

log = logging.getLogger("callgate.doors")


class Connection(Protocol):
    """A platform's sans-IO connection (:mod:`proxy.core.door`)."""

    def hello(self) -> list[dict[str, Any]]:
        """The frames the server sends first."""

    def receive(self, frame: str | bytes) -> list[DoorEvent]:
        """One frame in, what the session does."""

    def send(self, event: DoorOut) -> list[dict[str, Any]]:
        """What the session says, as frames."""


class Session:
    """See the module docstring. ``door``: its name (``retell``,
    ``conversation_relay``: the config key, the metric label); ``transcript``: keep
    the conversation (a platform that sends none with its turns); ``owner``: the
    socket's key's name; ``traceparent`` / ``tracestate``: the platform's W3C trace
    context on the upgrade request, which each turn's span continues."""

    def __init__(
        self, app: web.Application, ws: web.WebSocketResponse, door: str, conn: Connection, *, transcript: bool, owner: str | None,
        traceparent: str | None = None, tracestate: str | None = None,
    ) -> None:
        self.app, self.ws, self.door, self.conn, self.owner = app, ws, door, conn, owner
        self.traceparent, self.tracestate = traceparent, tracestate  # the platform's trace context (W3C), on the upgrade
        self.doors: Doors = app[DOORS]
        self.transcript = Transcript() if transcript else None
        self.call_id: str | None = None
        self.call: Call | None = None
        self.metadata: dict[str, str] = {}
        self.task: asyncio.Task[None] | None = None
        self.reply: Reply | None = None  # the reply in flight, once its call is known
        self.last: Reply | None = None  # the last reply that ended
        self.sent: list[str] = []  # what the reply in flight has sent
        self._group: asyncio.TaskGroup | None = None

    @property
    def services(self) -> Services:
        """The server's services as they are now (one copy per turn)."""
        return self.app[SERVICES].snapshot()

    def config(self, s: Services) -> FrontDoorConfig:
        """This door's section of ``front_doors:``."""
        cfg: FrontDoorConfig = getattr(s.config.front_doors, self.door)
        return cfg

    async def serve(self, first: DoorEvent | None = None) -> None:
        """The socket until it closes; ``first``: an event the route knows before any
        frame (Retell's call, from the path)."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                try:
                    if first is None or await self.on(first):
                        await self._send(self.conn.hello())
                        await self._read()
                finally:
                    await self.cancel(None, ReplyEvent.CLIENT_GONE)
        finally:
            if self.call_id is not None:
                self.doors.detach(self.app[SERVICES], self.call_id, self.ws, self.call, self.door)

    async def _read(self) -> None:
        async for frame in frames(self.ws, self.door, self.call_id):
            for event in self.conn.receive(frame):
                if not await self.on(event):
                    return

    async def on(self, event: DoorEvent) -> bool:
        """Do what one event says; ``False`` when the socket closed."""
        if isinstance(event, StartTurn):
            if self.call_id is None:
                return self._ignored("turn")
            if self.transcript is not None:
                self.transcript.said(event.user_text)
            assert self._group is not None
            self.task = self._group.create_task(self._answer(event))
        elif isinstance(event, Cancel):
            await self.cancel(event.heard, ReplyEvent.BARGED_IN)
        elif isinstance(event, Attach):
            return await self._attach(event)
        elif isinstance(event, Details):
            self.metadata.update(event.metadata)
        elif isinstance(event, Answer):
            await self._send([event.frame])
        elif isinstance(event, Refuse):
            await refuse(self.ws, self.door, self.call_id, event.code, event.message)
            return False
        else:
            self._note(event)
        return True

    def _note(self, event: Ignore | PlatformNote | LimitHit) -> bool:
        if isinstance(event, Ignore):
            return self._ignored(event.kind)
        if isinstance(event, LimitHit):
            LIMIT_HITS.labels(event.limit).inc()
            log.warning("front door input cut door=%s call_id=%s limit=limits.%s", self.door, self.call_id, event.limit)
        else:
            log.warning("front door platform error door=%s call_id=%s: %s", self.door, self.call_id, event.text)
        return True

    def _ignored(self, kind: str) -> bool:
        FRONT_DOOR_FRAMES.labels(self.door, "unknown").inc()
        log.debug("front door frame ignored door=%s type=%s", self.door, kind)
        return True

    async def _attach(self, event: Attach) -> bool:
        """The socket's call: ``False`` (the socket closed) when it has a socket here already."""
        if not await self.doors.take(event.call_id, self.ws, self.door):
            return False
        self.call_id = event.call_id
        self.metadata.update(event.metadata)
        s = self.services
        self.call = await s.registry.attach_door(event.call_id)
        if self.call is not None and self.transcript is not None:  # a reconnect: the conversation goes on
            self.transcript = Transcript.of(await s.registry.conversation(self.call))
        return True

    async def cancel(self, heard: str | None, why: ReplyEvent) -> None:
        """The reply in flight is cut (``why``: the caller barged in, or the socket
        closed) and the transcript keeps what the caller heard (``heard``, when the
        platform says; else what was sent). With no reply in flight, the platform's
        ``heard`` corrects the last reply: it was cut while the caller listened."""
        task = self.task
        if task is not None and not task.done():
            if self.reply is not None:
                self.reply.cancelled_by = why
                self.reply.heard = heard
                if why is ReplyEvent.BARGED_IN:
                    self.reply.span.event(TurnEvent.BARGE_IN, {"callgate.heard_chars": len(heard) if heard is not None else -1})
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if self.transcript is not None:
                self.transcript.heard(heard if heard is not None else "".join(self.sent))
        elif heard is not None and self.last is not None:
            if self.transcript is not None:
                self.transcript.heard_instead(heard)
            self.app[SERVICES].registry.heard(self.last.call, self.last.turn, heard)

    async def _answer(self, start: StartTurn) -> None:
        """One turn; its final frame (or error frame) goes out whatever happens."""
        self.sent, self.reply = [], None
        try:
            reply = await run_turn(self, start)
        except asyncio.CancelledError:
            raise
        except CallgateError as e:
            log.warning("front door turn refused door=%s call_id=%s: %s", self.door, self.call_id, e)
            return await self._final(TurnFailed(start.turn, type(e).__name__))
        except Exception as e:
            log.exception("front door turn failed door=%s call_id=%s", self.door, self.call_id)
            return await self._final(TurnFailed(start.turn, type(e).__name__))
        self.last, self.reply = reply, None
        if self.transcript is not None:
            self.transcript.heard(reply.spoken_text)
        hangup, transfer = reply.hangup, reply.transfer
        await self._final(TurnDone(
            start.turn, hangup=hangup.id if hangup else None, transfer_to=transfer.callee if transfer else None,
            transfer_id=transfer.id if transfer else None,
        ))

    def began(self, reply: Reply) -> None:
        """The turn's call is known: its reply may be cut from here."""
        self.reply, self.call = reply, reply.call

    async def speak(self, turn: int, text: str) -> None:
        """Speakable text of the reply in flight. Raises :class:`ConnectionError`
        when the socket is gone."""
        self.sent.append(text)
        await self._send(self.conn.send(SpeechOut(turn, text)))

    async def _final(self, event: TurnDone | TurnFailed) -> None:
        with contextlib.suppress(ConnectionError):
            await self._send(self.conn.send(event))

    async def _send(self, out: list[dict[str, Any]]) -> None:
        for frame in out:
            await self.ws.send_json(frame)
