"""A call's turns: one chat completion request each, from its beginning to its end.

:meth:`Turns.begin` finds the call (or starts it, or the next call under an id whose
call has ended), checks its owner and ``limits.max_turns_per_call``, and queues the
turn's row (``in_progress``); :meth:`Turns.commands` makes the reply's commands
control events, counted in the metrics and stored (numbered by the database);
:meth:`Turns.finish` records how the reply went and moves the call on (the goodbye
window after a hangup; the end of a call without an id, or past
``limits.max_events_per_call``). The relay never waits for these writes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from ..config import LimitsConfig
from ..core.commands import AnyCommand, Command, RejectReason
from ..core.ids import new_id, secret_id
from ..core.lifecycle import CallEvent
from ..errors import TooManyTurns
from ..metrics import COMMANDS, CONTROL_EVENTS, labelled
from ..storage import CommandRecord, NewEvent, Store, TurnStart, ops
from .cache import CallCache
from .ending import Ending
from .events import CommandRejectedEvent, ControlEvent, HangupEvent, event_for_command
from .followers import Followers
from .model import Call, EndReason, Turn, TurnOutcome

__all__ = ["Turns"]

log = logging.getLogger("callgate.calls")


class Turns:
    """See the module docstring. ``instance``: this process's id (its turns' rows
    name it); ``deliver``: queue each event for the webhook."""

    def __init__(
        self, store: Store, cache: CallCache, ending: Ending, followers: Followers, *, instance: str, limits: LimitsConfig,
        deliver: bool = False,
    ) -> None:
        self.store = store
        self.cache = cache
        self.ending = ending
        self.followers = followers
        self.instance = instance
        self.limits = limits
        self.deliver = deliver

    async def begin(
        self, call_id: str | None, *, stream: bool, user_text: str, metadata: Mapping[str, Any] | None = None,
        owner: str | None = None, profile: str | None = None, request_id: str | None = None,
    ) -> tuple[Call, Turn]:
        """A chat completion request (``request_id``: its id, default a new one) arrived for ``call_id`` (``None``: a call of its
        own, ending with its reply). Raises :class:`~proxy.errors.Forbidden` (another
        key's call) and :class:`~proxy.errors.TooManyTurns` (the call is ended).
        Waits while the database has too many writes queued (backpressure)."""
        await self.store.room()
        call = await self._call_for(call_id, owner, profile)
        if call.turns >= self.limits.max_turns_per_call:
            await self.ending.end(call, EndReason.LIMITS_EXCEEDED, "limits", event=CallEvent.LIMITS_REACHED)
            raise TooManyTurns(
                f"call {call.call_id!r} had {call.turns} turns, the most limits.max_turns_per_call allows; it has ended"
            )
        self.ending.act(call, call.move(CallEvent.TURN_BEGAN))  # a request inside the goodbye window stops it
        call.turns += 1
        turn = Turn(request_id=request_id or new_id("req_"), started_at=time.time(), stream=stream, user_text=user_text)
        self.cache.touch(call)
        start = TurnStart(turn.request_id, self.instance, turn.started_at, stream, user_text)
        meta = dict(metadata) if metadata else None
        self.store.post(ops.begin_turn, call.start(), start, meta, time.time(), order_key=call.key)
        return call, turn

    async def _call_for(self, call_id: str | None, owner: str | None, profile: str | None) -> Call:
        """The call a turn belongs to, made when new."""
        if call_id is None:
            return self.cache.remember(Call(secret_id("req_"), anonymous=True, owner=owner, profile=profile))
        found, actions = await self.cache.current(call_id)
        if found is not None:
            self.ending.act(found, actions)
            self.cache.check_owner(found, owner)
        if found is None:
            return self.cache.remember(Call(call_id, owner=owner, profile=profile))
        if found.ended:
            return self.cache.remember(Call(found.call_id, generation=found.generation + 1, owner=owner, profile=profile))
        return found

    def commands(self, call: Call, turn: Turn, cmds: list[AnyCommand], reply_text: str) -> list[ControlEvent]:
        """The reply's commands (judged by the inspector and the hangup policy)
        become control events, stored and numbered by the database. Rejected ones past
        ``limits.rejected_events_per_reply`` are only counted (one event says how many,
        when the reply ends)."""
        kept = []
        for cmd in cmds:
            accepted = isinstance(cmd, Command)
            code = None if isinstance(cmd, Command) else cmd.code
            COMMANDS.labels(cmd.function or "unknown", cmd.source, "accepted" if accepted else "rejected", code or "").inc()
            if not accepted:
                turn.rejected += 1
                if turn.rejected > self.limits.rejected_events_per_reply:
                    turn.uncounted += 1
                    continue
            kept.append(cmd)
        events = [event_for_command(cmd, call, reply_text) for cmd in kept]
        for cmd, event in zip(kept, events):
            turn.commands.append(_recorded(cmd, event.id))
            log.info("control event call_id=%s type=%s source=%s", call.call_id, event.type, event.source)
        self._store(call, events)
        return list(events)

    def finish(self, call: Call, turn: Turn, outcome: TurnOutcome) -> None:
        """The reply is over: record how it went; move the call on (the goodbye window
        after a hangup, once no reply is in flight); end it past
        ``limits.max_events_per_call``, or after the one reply of a call without an id."""
        if turn.uncounted:
            reason = f"{turn.uncounted} more commands rejected in this reply"
            over = CommandRejectedEvent(
                call_id=call.call_id, generation=call.generation, source="response_finished", code=RejectReason.OVER_LIMIT,
                reason=reason, count=turn.uncounted,
            )
            self._store(call, [over])
        self.store.post(
            ops.finish_turn, call.key, turn.request_id, outcome, turn.commands, _state_tool_calls(turn, outcome), time.time(),
            order_key=call.key,
        )
        self.ending.act(call, call.move(CallEvent.TURN_FINISHED))
        self.cache.touch(call)
        if call.events > self.limits.max_events_per_call:
            self.ending.background.spawn(self.ending.end(call, EndReason.LIMITS_EXCEEDED, "limits", event=CallEvent.LIMITS_REACHED))
        elif call.anonymous:
            self.ending.end_soon(call, EndReason.RESPONSE_FINISHED, "response_finished")

    def _store(self, call: Call, events: list[Any]) -> None:
        if not events:
            return
        call.events += len(events)
        for e in events:
            labelled(CONTROL_EVENTS, e.type).inc()
        stored = [NewEvent(e.model_dump(mode="json"), _instead(e)) for e in events]
        fut = self.store.submit(ops.add_events, call.key, stored, self.deliver, time.time(), order_key=call.key)
        self.followers.after(call.key, fut)


def _recorded(cmd: AnyCommand, event_id: str) -> CommandRecord:
    """What the turn's record keeps of a command."""
    if isinstance(cmd, Command):
        return CommandRecord(cmd.function, cmd.source, dict(cmd.args), cmd.raw[:2000], True, event_id=event_id)
    return CommandRecord(cmd.function, cmd.source, dict(cmd.args), cmd.raw[:2000], False, cmd.reason, cmd.code, event_id)


def _instead(event: ControlEvent) -> dict[str, Any] | None:
    """What is stored instead of a hangup when the call has one already (another
    process's): the same command, rejected."""
    if not isinstance(event, HangupEvent):
        return None
    return CommandRejectedEvent(
        id=event.id, call_id=event.call_id, generation=event.generation, created_at=event.created_at,
        source=event.source, function="hangup", code=RejectReason.DUPLICATE_HANGUP,
        reason="duplicate hangup: the call already hung up", attrs=event.attrs, raw=event.raw,
    ).model_dump(mode="json")


def _state_tool_calls(turn: Turn, outcome: TurnOutcome) -> list[dict[str, Any]]:
    """The reply's tool calls for ``state.tool_calls``: ``[{"name", "arguments"
    (parsed when JSON), "turn"}]``."""
    out = []
    for tc in outcome.tool_calls:
        raw = tc.get("arguments") or ""
        try:
            args: Any = json.loads(raw) if raw else {}
        except ValueError:
            args = raw
        out.append({"name": tc.get("name"), "arguments": args, "turn": turn.request_id})
    return out
