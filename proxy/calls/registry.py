"""The call registry: the one owner of every call's lifecycle.

Handlers call it and never set a :class:`~proxy.calls.model.Call`'s fields:

* finding a call: :meth:`CallRegistry.find` (memory, else the database: an active
  call that outlived a restart is taken up again, an ended one comes back ended),
  :meth:`~CallRegistry.open` (the same, or a new call), :meth:`~CallRegistry.record`
  (the call record as the API shows it);
* a turn: :meth:`~CallRegistry.begin_turn`, :meth:`~CallRegistry.add_commands` (the
  reply's commands become control events), :meth:`~CallRegistry.finish_turn` (the
  call ends after a reply that carried a hangup, or after the one reply of a call
  without an id; otherwise the record is saved);
* :meth:`~CallRegistry.patch_state`, :meth:`~CallRegistry.end` (exactly once: model
  hangup, ``POST /end``, idle timeout), :meth:`~CallRegistry.sweep`.

The one-hangup-per-call policy is :func:`one_hangup_per_call`, asked by the reply
inspector the moment it finds a hangup, so concurrent replies of one call cannot
both hang up. Control events are numbered, wake SSE subscribers and go to the
sinks; an ended call is handed to ``on_end`` (the durable end function) and stays
in memory ``record_ttl_s`` (the database keeps it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from ..core.analyzer import HangupPolicy
from ..core.commands import AnyCommand, Command
from ..core.ids import new_id
from ..storage import Storage
from .events import CallEndedEvent, ControlEvent, HangupEvent, event_for_command
from .model import Call, EndReason, Turn, TurnOutcome, utcnow

__all__ = ["DUPLICATE_HANGUP", "CallRegistry", "EventSink", "one_hangup_per_call"]

log = logging.getLogger("callgate.calls")

DUPLICATE_HANGUP = "duplicate hangup: the call already hung up"

EventSink = Callable[[Call, ControlEvent], None]


class _OneHangupPerCall:
    __slots__ = ("call",)

    def __init__(self, call: Call) -> None:
        self.call = call

    def refuse_hangup(self, act: bool) -> str | None:
        if self.call.hung_up:
            return DUPLICATE_HANGUP
        if act:
            self.call.hung_up = True
        return None


def one_hangup_per_call(call: Call) -> HangupPolicy:
    """The call domain's hangup policy for ``call``: at most one hangup per call."""
    return _OneHangupPerCall(call)


class CallRegistry:
    """Every live call; see the module docstring.

    ``store``: the database (records are loaded from and saved to it);
    ``on_end``: called with the record of each call that ends, once (persists it
    and starts its end function); ``sinks``: called with every control event as
    it is appended (must not block). Times in seconds.
    """

    def __init__(
        self,
        *,
        idle_timeout_s: float,
        record_ttl_s: float,
        after_hangup_s: float = 0.0,
        store: Storage | None = None,
        on_end: Callable[[dict[str, Any]], Any] | None = None,
        sinks: Iterable[EventSink] = (),
    ) -> None:
        self.idle_timeout_s = idle_timeout_s
        self.record_ttl_s = record_ttl_s
        self.after_hangup_s = after_hangup_s
        self.store = store
        self.on_end = on_end
        self.sinks: list[EventSink] = list(sinks)
        self._calls: dict[str, Call] = {}  # by record key
        self._latest: dict[str, str] = {}  # the runtime's call id -> its newest record key
        self._end_timers: dict[str, asyncio.TimerHandle] = {}  # hangup windows, by record key

    def __len__(self) -> int:
        return len(self._calls)

    # -- finding calls ---------------------------------------------------------------

    def get(self, call_id: str, *, exact: bool = False) -> Call | None:
        """The call if it is in memory: the newest under the runtime's ``call_id``,
        else the one whose record key it is (only that with ``exact``)."""
        return self._calls.get(call_id if exact else self._latest.get(call_id, call_id))

    def find(self, call_id: str, *, exact: bool = False) -> Call | None:
        """The call from memory, else from the database; ``None`` when unknown.
        ``call_id`` is the runtime's id (its newest call) or a record key (only that
        with ``exact``)."""
        call = self.get(call_id, exact=exact)
        if call is None and self.store is not None:
            key = call_id if exact else self.store.latest_key(call_id) or call_id
            stored = self.store.call_record(key)
            if stored is not None:
                call = self._remember(Call.from_record(stored))
                if call.ended:
                    call.expires_at = time.monotonic() + self.record_ttl_s
        return call

    def open(self, call_id: str, *, anonymous: bool = False) -> Call:
        """:meth:`find`, or a new call."""
        call = None if anonymous else self.find(call_id)
        return call if call is not None else self._remember(Call(call_id, anonymous=anonymous))

    def record(self, call_id: str, *, exact: bool = False) -> dict[str, Any] | None:
        """The call record as ``GET /v1/calls/{id}`` shows it: a live call from memory,
        an ended one from the database with its steps and deliveries."""
        call = self.find(call_id, exact=exact)
        if call is None:
            return None
        if not call.ended:
            return call.to_record()
        stored = self.store.get_call(call.id) if self.store is not None else None
        return stored if stored is not None else call.to_record()

    # -- a turn ------------------------------------------------------------------------

    def begin_turn(
        self, call_id: str | None, *, stream: bool, user_text: str, metadata: Mapping[str, Any] | None = None
    ) -> tuple[Call, Turn]:
        """A chat completion request arrived for ``call_id`` (``None``: a call of its
        own, ending with its reply). An id whose call has ended starts a new call
        under the same id (the earlier one stays readable under its record key)."""
        if call_id is None:
            call = self.open(new_id("req_"), anonymous=True)
        else:
            call = self.open(call_id)
            if call.ended:
                call = self._remember(Call(call.call_id, generation=call.generation + 1))
        self._cancel_end(call)  # a request inside the hangup window is a turn of the call
        turn = Turn(request_id=new_id("req_"), started_at=datetime.now(UTC), stream=stream, user_text=user_text)
        call.turns.append(turn)
        if metadata:
            call.metadata.update(metadata)
        call.active_requests += 1
        call.last_activity = time.monotonic()
        return call, turn

    def hangup_policy(self, call: Call) -> HangupPolicy:
        """What a reply's inspector asks when it finds a hangup."""
        return one_hangup_per_call(call)

    def add_commands(self, call: Call, turn: Turn, cmds: list[AnyCommand], reply_text: str) -> list[ControlEvent]:
        """The reply's commands (already judged by the inspector and the hangup
        policy) become control events and the turn's command log."""
        events = []
        for cmd in cmds:
            event = self._emit(call, event_for_command(cmd, call.id, reply_text))
            accepted = isinstance(cmd, Command)
            if isinstance(event, HangupEvent):
                call.hangup_source = event.source
            turn.commands.append(
                {
                    "function": cmd.function,
                    "source": cmd.source,
                    "args": dict(cmd.args),
                    "raw": cmd.raw,
                    "accepted": accepted,
                    "reason": None if accepted else cmd.reason,
                    "event_id": event.id,
                }
            )
            log.info("control event call_id=%s type=%s source=%s", call.id, event.type, event.source)
            events.append(event)
        return events

    def finish_turn(self, call: Call, turn: Turn, outcome: TurnOutcome) -> None:
        """The reply is over: record how it went; end the call after a hangup or
        the one reply of a call without an id; save it otherwise."""
        turn.status, turn.error = outcome.status, outcome.error
        turn.raw_text, turn.spoken_text = outcome.raw_text, outcome.spoken_text
        turn.tool_calls = list(outcome.tool_calls)
        turn.ttft_ms, turn.duration_ms = outcome.ttft_ms, outcome.duration_ms
        if turn.tool_calls:  # readable by the end function as conv.state["tool_calls"]
            call.state.setdefault("tool_calls", []).extend(_recorded_tool_calls(turn))
        call.active_requests -= 1
        call.last_activity = time.monotonic()
        if call.anonymous:
            self.end(call, EndReason.RESPONSE_FINISHED, "response_finished")
        elif call.hangup_source is not None and not call.active_requests:
            self._after_hangup(call)
        else:
            self._save(call)

    # -- state and the end ------------------------------------------------------------

    def patch_state(self, call: Call, patch: dict[str, Any]) -> dict[str, Any]:
        """RFC 7386 JSON merge patch into a live call's ``state``; returns the state."""
        merge_patch(call.state, patch)
        call.last_activity = time.monotonic()
        self._save(call)
        return call.state

    def end(self, call: Call, reason: str, source: str, state: dict[str, Any] | None = None) -> bool:
        """End ``call`` once: merge ``state``, emit ``call.ended``, hand the record to
        ``on_end``. ``False`` when it had already ended (nothing changes)."""
        if call.ended:
            return False
        self._cancel_end(call)
        if state:
            call.state.update(state)
        call.end_reason, call.end_source, call.ended_at = str(reason), source, utcnow()
        log.info("call ended call_id=%s reason=%s source=%s", call.id, reason, source)
        self._emit(call, CallEndedEvent(call_id=call.id, source=source, reason=str(reason)))  # type: ignore[arg-type]
        call.expires_at = time.monotonic() + self.record_ttl_s
        if self.on_end is not None:
            try:
                self.on_end(call.to_record())
            except Exception:  # the end must not fail the request that carried it
                log.exception("could not hand the ended call to the end function call_id=%s", call.id)
        return True

    def delivery_failed(self, call_id: str, failure: dict[str, Any]) -> None:
        """A control event could not be delivered: noted in the call's record."""
        call = self._calls.get(call_id)
        if call is not None:
            call.delivery_failures.append(failure)

    def sweep(self, now: float | None = None) -> None:
        """End calls idle for ``idle_timeout_s``; forget expired records."""
        now = time.monotonic() if now is None else now
        for call in list(self._calls.values()):
            if call.expires_at is not None and now >= call.expires_at:
                self._forget(call)
            elif self._idle(call, now):
                self.end(call, EndReason.IDLE_TIMEOUT, "idle_timeout")

    def _idle(self, call: Call, now: float) -> bool:
        return (
            not call.ended
            and not call.active_requests
            and call.id not in self._end_timers
            and now - call.last_activity >= self.idle_timeout_s
        )

    async def run_sweeper(self) -> None:
        """Sweep forever, about four times per idle timeout (at most every 5 s)."""
        interval = max(0.02, min(self.idle_timeout_s / 4, 5.0))
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    # -- internals -----------------------------------------------------------------------

    def _remember(self, call: Call) -> Call:
        self._calls[call.id] = call
        newest = self._calls.get(self._latest.get(call.call_id, ""))
        if newest is None or call.generation >= newest.generation:
            self._latest[call.call_id] = call.id
        return call

    def _forget(self, call: Call) -> None:
        del self._calls[call.id]
        if self._latest.get(call.call_id) == call.id:
            del self._latest[call.call_id]

    def _after_hangup(self, call: Call) -> None:
        """The call hung up and no reply is in flight: it ends once no request has
        come for ``after_hangup_s`` (at once when that is 0)."""
        if self.after_hangup_s <= 0:
            self.end(call, EndReason.AGENT_HANGUP, call.hangup_source or "text_command")
            return
        self._save(call)
        self._cancel_end(call)
        loop = asyncio.get_running_loop()
        self._end_timers[call.id] = loop.call_later(self.after_hangup_s, self._hangup_window_over, call)

    def _hangup_window_over(self, call: Call) -> None:
        self._end_timers.pop(call.id, None)
        if not call.active_requests:
            self.end(call, EndReason.AGENT_HANGUP, call.hangup_source or "text_command")

    def _cancel_end(self, call: Call) -> None:
        timer = self._end_timers.pop(call.id, None)
        if timer is not None:
            timer.cancel()

    def _emit(self, call: Call, event: ControlEvent) -> ControlEvent:
        """Number ``event``, append it, wake subscribers, hand it to the sinks."""
        event.seq = len(call.events) + 1
        call.events.append(event)
        call.wake()
        for sink in self.sinks:
            try:
                sink(call, event)
            except Exception:  # a sink must never break the call
                log.exception("control event sink failed call_id=%s event=%s", call.id, event.id)
        return event

    def _save(self, call: Call) -> None:
        if self.store is not None and not call.ended:
            try:
                self.store.save_call(call.to_record())
            except Exception:
                log.exception("could not save the call record call_id=%s", call.id)


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch, in place: ``null`` removes, objects merge."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = value
    return target


def _recorded_tool_calls(turn: Turn) -> list[dict[str, Any]]:
    """``[{"name", "arguments" (parsed when JSON), "turn"}]``."""
    out = []
    for tc in turn.tool_calls:
        try:
            args: Any = json.loads(tc["arguments"]) if tc["arguments"] else {}
        except ValueError:
            args = tc["arguments"]
        out.append({"name": tc["name"], "arguments": args, "turn": turn.request_id})
    return out
