"""One turn of a front door: a chat completion upstream, inspected as on the HTTP path,
its speakable text handed to the platform piece by piece.

:func:`run_turn` builds the request (the front door's ``model`` and parameters, the
system prompt, the conversation, ``stream: true``; the command syntax injected with
``commands.inject_prompt``), races it across the profile's upstreams, records the
turn (TTFT, duration, attempts) and returns the :class:`DoorReply`, whose
:attr:`DoorReply.events` are the control events acted on (the platform's hangup or
transfer). Commands always render as ``strip`` and thinking is always removed here,
whatever the profile says: a WebSocket platform speaks all the text it gets. Cancelling the task (an interruption) closes the upstream request;
commands not yet found never fire.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from multidict import CIMultiDict

from ...calls.events import ControlEvent, HangupEvent, TransferEvent
from ...calls.model import TurnOutcome, TurnStatus
from ...config import FrontDoorConfig
from ...core.commands import AnyCommand
from ...core.function_map import FunctionMap
from ...core.ids import new_id
from ...core.profile import Profile
from ...core.sse import SSEDecoder
from ...errors import UpstreamError
from ...prompts import inject_prompt, inject_tools, instructions
from ..relay.attempt import Attempt
from ..relay.race import Race
from ..relay.reply import Reply
from ..relay.stream import relay_attempts
from ..services import Services

__all__ = ["DoorReply", "TextSink", "run_turn"]

log = logging.getLogger("callgate.doors")


class DoorReply(Reply):
    """A reply whose control events the front door carries out itself; ``heard``:
    what the caller heard when the platform said so (an interruption)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events: list[ControlEvent] = []
        self.heard: str | None = None

    def commands(self, cmds: list[AnyCommand]) -> None:
        """The commands become control events (as on the HTTP path), kept for the platform."""
        if cmds:
            self.acted = True
            self.events += list(self.s.registry.add_commands(self.call, self.turn, cmds, self.spoken_text))

    def outcome(self) -> TurnOutcome:
        """The turn's outcome; an interrupted reply records what the caller heard."""
        out = super().outcome()
        return dataclasses.replace(out, spoken_text=self.heard) if self.heard is not None else out

    @property
    def hangup(self) -> HangupEvent | None:
        """The hangup acted on in this reply."""
        return next((e for e in self.events if isinstance(e, HangupEvent)), None)

    @property
    def transfer(self) -> TransferEvent | None:
        """The transfer acted on in this reply."""
        return next((e for e in self.events if isinstance(e, TransferEvent)), None)


class TextSink:
    """The inspected SSE bytes of a reply in, its content pieces out to ``send``
    (error events and ``[DONE]`` carry no speech)."""

    def __init__(self, send: Callable[[str], Awaitable[None]]) -> None:
        self.decoder = SSEDecoder()
        self.send = send

    async def write(self, data: bytes) -> None:
        """One write of the relay: each event's ``choices[0].delta.content`` goes to ``send``."""
        for event in self.decoder.feed(data):
            text = _content(event.data)
            if text:
                await self.send(text)


def _content(data: str | None) -> str:
    if not data or data == "[DONE]":
        return ""
    try:
        chunk = json.loads(data)
        choices = chunk.get("choices") or []
        content = choices[0].get("delta", {}).get("content") if choices else None
    except (ValueError, AttributeError, IndexError, TypeError):
        return ""
    return content if isinstance(content, str) else ""


def upstream_body(s: Services, door: FrontDoorConfig, profile: Profile, messages: list[dict[str, str]]) -> bytes:
    """The chat completion request of a turn (see the module docstring)."""
    body: dict[str, Any] = {**door.upstream_params(), "messages": messages, "stream": True}
    cc = s.config.commands
    if cc.inject_prompt:
        inject_prompt(body, instructions(cc.prompt_language, cc.hangup_tag, cc.transfer_tag))
    if cc.inject_tools:
        inject_tools(body, FunctionMap(profile.settings.function_map))
    return json.dumps(body, ensure_ascii=False).encode()


async def run_turn(
    s: Services, door: FrontDoorConfig, profile: Profile, call_id: str, *, owner: str | None, messages: list[dict[str, str]],
    user_text: str, metadata: dict[str, Any] | None, send: Callable[[str], Awaitable[None]],
    on_reply: Callable[[DoorReply], None] | None = None,
) -> DoorReply:
    """One turn (see the module docstring); ``send`` gets the speakable text as it comes;
    ``on_reply`` the reply once the call is known (to mark an interruption).
    Raises :class:`~proxy.errors.Forbidden` / :class:`~proxy.errors.TooManyTurns` as
    :meth:`~proxy.calls.CallRegistry.begin_turn` does."""
    profile = dataclasses.replace(profile, settings=dataclasses.replace(profile.settings, output="strip", thinking="remove"))
    started = time.perf_counter()
    race = Race(s, upstream_body(s, door, profile, messages), CIMultiDict(), True, profile.upstreams, started)
    first = asyncio.ensure_future(race.first())
    first.add_done_callback(_retrieved)
    s.drain.enter()
    try:
        call, turn = await s.registry.begin_turn(
            call_id, stream=True, user_text=user_text, metadata=metadata, profile=profile.name, owner=owner, request_id=new_id("req_"),
        )
    except BaseException:
        first.cancel()
        s.drain.leave()
        raise
    reply = DoorReply(s, profile, call, turn, started, race)
    if on_reply is not None:
        on_reply(reply)
    try:
        await _relay(first, reply, TextSink(send))
    finally:
        await race.cancel()
        s.registry.finish_turn(call, turn, reply.outcome())
        s.drain.leave()
    return reply


async def _relay(first: asyncio.Future[Attempt], reply: DoorReply, sink: TextSink) -> None:
    """The winning attempt through the inspector to ``sink``; ``reply`` records how it went."""
    try:
        attempt = await first
    except UpstreamError as e:
        reply.settle(TurnStatus.UPSTREAM_ERROR, str(e), e.failure)
        log.warning("front door turn failed call_id=%s error=%s", reply.call.call_id, e)
        return
    except asyncio.CancelledError:
        first.cancel()
        reply.settle(TurnStatus.INTERRUPTED, "the caller spoke again")
        raise
    try:
        held = reply.adopt(attempt)
        if held:
            await sink.write(held)
        await relay_attempts(sink, attempt, reply)
        reply.settle(TurnStatus.OK)
    except ConnectionError:
        reply.settle(TurnStatus.CLIENT_DISCONNECTED, "the platform closed the socket")
    except asyncio.CancelledError:
        reply.settle(TurnStatus.INTERRUPTED, "the caller spoke again")
        raise
    finally:
        if reply.current is not None:
            reply.current.release()


def _retrieved(task: asyncio.Future[Attempt]) -> None:
    """A first attempt nobody awaited leaves no warning."""
    if not task.cancelled():
        task.exception()
