"""One turn of a front door: a chat completion upstream, walked by the same
:class:`~proxy.server.relay.reply.Reply` as the HTTP path, its speech handed to the
platform as it comes.

:func:`run_turn` builds the request (the front door's ``model`` and parameters, the
system prompt, the conversation, ``stream: true``; the command syntax injected with
``commands.inject_prompt``), parsed once and encoded once, races it across the
profile's upstreams, records the turn (TTFT, duration, attempts) and returns the
reply, whose :attr:`~proxy.server.relay.reply.Reply.hangup` /
:attr:`~proxy.server.relay.reply.Reply.transfer` are the call control acted on.
Commands always render as ``strip`` and thinking is always removed here, whatever
the profile says: a WebSocket platform speaks all the text it gets. The platform
takes the reply's :class:`~proxy.core.outputs.Speech` outputs directly (nothing is
encoded as SSE and decoded again). Cancelling the task (the caller barged in, the
socket closed) closes the upstream request; commands not yet found never fire.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict

from ...core import json_codec
from ...core.door import StartTurn
from ...core.function_map import FunctionMap
from ...core.ids import new_id
from ...core.outputs import Output, Speech
from ...core.text_tools import FORMS
from ...errors import UpstreamError
from ...prompts import inject_prompt, inject_tools, instructions
from ..relay.attempt import Attempt
from ..relay.race import Race
from ..relay.reply import Reply, new_machine
from .sockets import door_profile

if TYPE_CHECKING:
    from .session import Session

__all__ = ["SpeechSink", "run_turn"]

log = logging.getLogger("callgate.doors")


class SpeechSink:
    """A front door's :class:`~proxy.server.relay.reply.Sink`: each
    :class:`~proxy.core.outputs.Speech` to the session's platform (chunks, errors and
    ``[DONE]`` carry none)."""

    def __init__(self, session: Session, turn: int) -> None:
        self.session, self.turn = session, turn

    async def open(self, attempt: Attempt) -> None:
        """Nothing: the socket is open."""

    async def send(self, items: list[Output]) -> None:
        """The speech among ``items``; :class:`ConnectionError` when the socket is gone."""
        for item in items:
            if isinstance(item, Speech) and item.text:
                await self.session.speak(self.turn, item.text)

    def ready(self) -> bool:
        """Never: speech goes out as the socket's awaited frames (:meth:`send`)."""
        return False

    def send_now(self, items: list[Output]) -> None:
        """Never called (:meth:`ready` is false)."""
        raise NotImplementedError("a front door's speech is sent with send()")

    async def whole(self, attempt: Attempt, body: bytes) -> None:
        """Never: a front door's request streams."""

    async def close(self) -> None:
        """Nothing: the session sends the turn's last frame."""


async def run_turn(session: Session, start: StartTurn) -> Reply:
    """One turn (see the module docstring). Raises :class:`~proxy.errors.Forbidden` /
    :class:`~proxy.errors.TooManyTurns` as :meth:`~proxy.calls.CallRegistry.begin_turn`
    does; an upstream that fails before speaking is the turn's ``upstream_error``."""
    s = session.services
    cfg = session.config(s)
    profile = door_profile(s, cfg)
    text_forms = profile.settings.text_tool_calls or FORMS  # a platform speaks a tool call written as text: never
    profile = dataclasses.replace(
        profile, settings=dataclasses.replace(profile.settings, output="strip", thinking="remove", text_tool_calls=text_forms),
    )
    if start.messages is not None:
        head = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
        messages = head + [{"role": r, "content": c} for r, c in start.messages]
    else:
        assert session.transcript is not None
        messages = session.transcript.messages(cfg.system_prompt)
    body: dict[str, Any] = {**cfg.upstream_params(), "messages": messages, "stream": True}
    cc = s.config.commands
    if cc.inject_prompt:
        inject_prompt(body, instructions(cc.prompt_language, cc.hangup_tag, cc.transfer_tag))
    if cc.inject_tools:
        inject_tools(body, FunctionMap(profile.settings.function_map))
    started = time.perf_counter()
    machine = new_machine(s)
    span = s.telemetry.turn(
        cfg.model, session.call_id, 0, profile.name, session.traceparent, session.tracestate, door=session.door, start_ns=time.time_ns(),
    )
    race = Race(s, machine, json_codec.dumps(body), body, CIMultiDict(), True, profile.upstreams, started, span)
    first = race.start()  # the first attempt's request goes out while the call is looked up
    s.drain.enter()
    try:
        assert session.call_id is not None
        call, turn = await s.registry.begin_turn(
            session.call_id, stream=True, user_text=start.user_text, metadata=session.metadata or None, profile=profile.name,
            owner=session.owner, request_id=new_id("req_"),
        )
    except BaseException as e:
        first.cancel()
        await race.stop()
        s.drain.leave()
        span.end("error", error=type(e).__name__)
        raise
    span.call(call.call_id, call.generation)
    reply = Reply(s, profile, call, turn, started, race, machine, SpeechSink(session, start.turn), gone="the platform closed the socket")
    session.began(reply)
    try:
        await reply.run(first)
    except UpstreamError as e:
        log.warning("front door turn failed call_id=%s error=%s", call.call_id, e)
    finally:
        await race.stop()
        s.registry.finish_turn(call, turn, reply.outcome())
        s.drain.leave()
    return reply
