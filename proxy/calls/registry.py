"""The call registry: the one owner of every call's lifecycle; the database is its truth.

Handlers call it and never change a :class:`~proxy.calls.model.Call`:

* :meth:`CallRegistry.begin_turn` / :meth:`~CallRegistry.finish_turn`: a turn is
  written when it begins (``in_progress``) and when it ends; the relay never waits
  for either write. :meth:`~CallRegistry.add_commands` stores the reply's commands
  as control events, numbered by the database.
* :meth:`~CallRegistry.end`: the call ends once (a conditional update); its
  ``call.ended`` event and end-function jobs commit in the same transaction, before
  anything is sent. After a hangup the call ends once its replies have finished and
  no request has come for ``after_hangup_s``.
* :meth:`~CallRegistry.sweep` (every ``sweep_s``, on every instance): turns of
  processes that stopped become ``interrupted``; calls that should have ended (idle,
  a hangup recorded but not its end, a call without an id whose reply is over) end,
  each exactly once whichever instance gets there first.
* reading: :meth:`~CallRegistry.record`, :meth:`~CallRegistry.events_after`, and
  :meth:`~CallRegistry.subscribe` for SSE followers (woken when events commit; they
  re-read the database, so a missed wake-up only delays an event).

One hangup per call is decided twice, on purpose: by :func:`one_hangup_per_call`,
which the reply inspector asks the moment it finds a hangup (so this process never
speaks a second one), and by a unique index in the database, which holds across
processes (the loser's event is stored as ``command.rejected``).

Memory is a cache: active calls (at most ``cache_calls``, least recently active
evicted first); an ended call leaves it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from ..config import LimitsConfig
from ..core.analyzer import HangupPolicy
from ..core.commands import AnyCommand, Command
from ..core.ids import new_id, secret_id
from ..errors import Forbidden, TooManyTurns
from ..metrics import CALLS_ENDED, COMMANDS, CONTROL_EVENTS, end_reason_label, reason_code
from ..storage import Store, ops
from .events import (
    CallEndedEvent,
    CommandRejectedEvent,
    ControlEvent,
    HangupEvent,
    event_for_command,
)
from .model import Call, EndReason, Turn, TurnOutcome

__all__ = ["DUPLICATE_HANGUP", "CallRegistry", "Signal", "one_hangup_per_call"]

log = logging.getLogger("callgate.calls")

DUPLICATE_HANGUP = "duplicate hangup: the call already hung up"


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
    """This process's hangup policy for ``call``: at most one hangup per call."""
    return _OneHangupPerCall(call)


class Signal:
    """A follower's wake-up: set when events of its call commit."""

    __slots__ = ("key", "event")

    def __init__(self, key: str) -> None:
        self.key = key
        self.event = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        """``True`` when woken, ``False`` after ``timeout`` s; clears itself."""
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self.event.clear()


class CallRegistry:
    """Every call this process serves; see the module docstring.

    ``steps``: the end function's ``(name, kind, after)``, written as jobs when a
    call ends; ``deliver``: queue each event for the webhook; ``on_events``: called
    with each batch of committed events; ``on_end``: called after each call ends
    (wakes the end function). Times in seconds.
    """

    def __init__(
        self,
        store: Store,
        *,
        idle_timeout_s: float,
        after_hangup_s: float = 0.0,
        sweep_s: float = 5.0,
        cache_calls: int = 10_000,
        limits: LimitsConfig | None = None,
        retention_s: float | None = None,
        steps: Iterable[tuple[str, str, list[str]]] = (),
        deliver: bool = False,
        on_events: Callable[[list[dict[str, Any]]], None] | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.idle_timeout_s = idle_timeout_s
        self.after_hangup_s = after_hangup_s
        self.sweep_s = sweep_s
        self.cache_calls = cache_calls
        self.limits = limits or LimitsConfig()
        self.retention_s = retention_s
        self.steps = list(steps)
        self.deliver = deliver
        self.on_events = on_events
        self.on_end = on_end
        self._calls: OrderedDict[str, Call] = OrderedDict()  # by record key, least recently active first
        self._latest: dict[str, str] = {}  # the runtime's call id -> its newest record key
        self._end_timers: dict[str, asyncio.TimerHandle] = {}
        self._signals: dict[str, set[Signal]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._calls)

    # -- finding calls -----------------------------------------------------------------

    def get(self, call_id: str, *, exact: bool = False) -> Call | None:
        """The call if it is in memory: the newest under the runtime's ``call_id``,
        else the one whose record key it is (only that with ``exact``)."""
        return self._calls.get(call_id if exact else self._latest.get(call_id, call_id))

    async def find(self, call_id: str, *, exact: bool = False) -> Call | None:
        """The call from memory, else from the database; ``None`` when unknown. An
        active call is cached; an ended one is not."""
        call = self.get(call_id, exact=exact)
        if call is not None:
            return call
        row = await self.store.read(ops.find_call, call_id, exact)
        if row is None:
            return None
        call = Call.from_row(row)
        return call if call.ended else self._remember(call)

    async def _current(self, call_id: str) -> Call | None:
        """The call as it stands: the cache, else the database. With a shared database
        the cache stays true because another instance's end of a call reaches this one
        (``ended:`` notifications, :meth:`ended_elsewhere`) and a lost connection to
        them empties it (:meth:`reset_cache`); a hangup another instance accepted is
        caught by the database's unique index."""
        cached = self.get(call_id)
        if cached is not None:
            return cached
        row = await self.store.read(ops.find_call, call_id, False)
        cached = self.get(call_id)  # it may have come meanwhile
        if row is None or (cached is not None and cached.id == row.id):
            if row is not None and cached is not None:
                cached.ended = cached.ended or row.ended
                cached.hangup_source = cached.hangup_source or row.hangup_source
                cached.hung_up = cached.hung_up or row.hangup_source is not None
            return cached
        call = Call.from_row(row)
        return call if call.ended else self._remember(call)

    def reset_cache(self) -> None:
        """Forget every call this process is not serving right now (after missing
        other instances' notifications): they are read again from the database."""
        for call in list(self._calls.values()):
            if not call.active_requests and call.id not in self._end_timers:
                self._forget(call)

    def ended_elsewhere(self, key: str) -> None:
        """Another instance ended the call ``key``: this one forgets it."""
        call = self.get(key, exact=True)
        if call is not None:
            call.ended = True
            self._cancel_end(call)
            self._forget(call)

    async def key_of(self, call_id: str) -> str:
        """The record key ``call_id`` names now (the call id itself for a call not
        seen yet)."""
        call = await self.find(call_id)
        return call.id if call is not None else call_id

    async def record(self, call_id: str, *, exact: bool = False) -> dict[str, Any] | None:
        """The call record, once the writes queued for the call are done."""
        call = await self.find(call_id, exact=exact)
        if call is None:
            return None
        await self._settled(call)
        return await self.store.read(ops.call_record, call.id)

    async def events_after(self, key: str, seq: int) -> list[dict[str, Any]]:
        """The call's events after ``seq``, from the database."""
        return await self.store.read(ops.events_after, key, seq)

    def subscribe(self, key: str) -> Signal:
        """A wake-up for the events of the call ``key``; :meth:`unsubscribe` it after."""
        signal = Signal(key)
        self._signals.setdefault(key, set()).add(signal)
        return signal

    def unsubscribe(self, signal: Signal) -> None:
        subs = self._signals.get(signal.key)
        if subs is not None:
            subs.discard(signal)
            if not subs:
                del self._signals[signal.key]

    def wake(self, key: str) -> None:
        """Events of ``key`` were committed (here, or by another instance)."""
        for signal in self._signals.get(key, ()):
            signal.event.set()

    # -- a turn ---------------------------------------------------------------------------

    async def begin_turn(
        self,
        call_id: str | None,
        *,
        stream: bool,
        user_text: str,
        metadata: Mapping[str, Any] | None = None,
        owner: str | None = None,
        profile: str | None = None,
    ) -> tuple[Call, Turn]:
        """A chat completion request arrived for ``call_id`` (``None``: a call of its
        own, ending with its reply). An id whose call has ended starts a new call
        under the same id (the earlier one stays readable under its record key).
        Waits while the database has too many writes queued (backpressure)."""
        await self.store.room()
        if call_id is None:
            call = self._remember(Call(secret_id("req_"), anonymous=True, owner=owner, profile=profile))
        else:
            found = await self._current(call_id)
            if found is not None and found.owner != owner and (found.owner or owner):
                raise Forbidden(f"call {call_id!r} belongs to another key")
            if found is None:
                call = self._remember(Call(call_id, owner=owner, profile=profile))
            elif found.ended or found.ending:
                call = self._remember(Call(found.call_id, generation=found.generation + 1, owner=owner, profile=profile))
            else:
                call = found
        if call.turns >= self.limits.max_turns_per_call:
            await self.end(call, EndReason.LIMITS_EXCEEDED, "limits")
            raise TooManyTurns(f"call {call.id!r} had {call.turns} turns, the most limits.max_turns_per_call allows; it has ended")
        self._cancel_end(call)  # a request inside the hangup window is a turn of the call
        call.turns += 1
        turn = Turn(request_id=new_id("req_"), started_at=time.time(), stream=stream, user_text=user_text)
        call.active_requests += 1
        self._touch(call)
        row = {"request_id": turn.request_id, "instance": self.instance, "started_at": turn.started_at, "stream": stream, "user_text": user_text}
        self._post(call, ops.begin_turn, call.row(), row, dict(metadata) if metadata else None, time.time())
        call.stored = True
        return call, turn

    def hangup_policy(self, call: Call) -> HangupPolicy:
        """What a reply's inspector asks when it finds a hangup."""
        return one_hangup_per_call(call)

    def add_commands(self, call: Call, turn: Turn, cmds: list[AnyCommand], reply_text: str) -> list[ControlEvent]:
        """The reply's commands (judged by the inspector and the hangup policy)
        become control events, stored and numbered by the database. Rejected ones past
        ``rejected_events_per_reply`` are only counted (one event says how many, when
        the reply ends)."""
        kept = []
        for cmd in cmds:
            accepted = isinstance(cmd, Command)
            reason = None if accepted else cmd.reason
            COMMANDS.labels(cmd.function or "unknown", cmd.source, "accepted" if accepted else "rejected", reason_code(reason)).inc()
            if not accepted:
                turn.rejected += 1
                if turn.rejected > self.limits.rejected_events_per_reply:
                    turn.uncounted += 1
                    continue
            kept.append(cmd)
        events = [event_for_command(cmd, call.id, reply_text) for cmd in kept]
        for cmd, event in zip(kept, events):
            accepted = isinstance(cmd, Command)
            if isinstance(event, HangupEvent):
                call.hangup_source = event.source
            turn.commands.append(
                {
                    "function": cmd.function,
                    "source": cmd.source,
                    "args": dict(cmd.args),
                    "raw": cmd.raw[:2000],
                    "accepted": accepted,
                    "reason": None if accepted else cmd.reason,
                    "event_id": event.id,
                }
            )
            log.info("control event call_id=%s type=%s source=%s", call.id, event.type, event.source)
        self._store_events(call, events)
        return events

    def _store_events(self, call: Call, events: list[ControlEvent]) -> None:
        if not events:
            return
        call.events += len(events)
        for e in events:
            CONTROL_EVENTS.labels(e.type).inc()
        stored = [(e.model_dump(mode="json"), _rejected(e)) for e in events]
        self._publish_after(call.id, self._write(call, ops.add_events, call.id, stored, self.deliver, time.time()))

    def finish_turn(self, call: Call, turn: Turn, outcome: TurnOutcome) -> None:
        """The reply is over: record how it went; end the call after a hangup (once
        no reply is in flight and the window passed) or after the one reply of a call
        without an id."""
        row = {
            "status": str(outcome.status),
            "error": outcome.error,
            "raw_text": outcome.raw_text,
            "spoken_text": outcome.spoken_text,
            "commands": turn.commands,
            "tool_calls": list(outcome.tool_calls),
            "ttft_ms": outcome.ttft_ms,
            "duration_ms": outcome.duration_ms,
        }
        if turn.uncounted:
            reason = f"{turn.uncounted} more commands rejected in this reply"
            self._store_events(call, [CommandRejectedEvent(call_id=call.id, source="response_finished", reason=reason, count=turn.uncounted)])
        self._post(call, ops.finish_turn, call.id, turn.request_id, row, _recorded_tool_calls(turn, outcome), time.time())
        call.active_requests -= 1
        self._touch(call)
        if call.events > self.limits.max_events_per_call:
            self.spawn(self.end(call, EndReason.LIMITS_EXCEEDED, "limits"))
        elif call.anonymous:
            self.spawn(self.end(call, EndReason.RESPONSE_FINISHED, "response_finished"))
        elif call.hangup_source is not None and not call.active_requests:
            self._after_hangup(call)

    # -- state and the end ---------------------------------------------------------------

    async def patch_state(self, call: Call, patch: dict[str, Any]) -> dict[str, Any] | None:
        """RFC 7386 merge patch into the call's ``state``; the new state, or ``None``
        when the call has ended."""
        state = await self._write(call, ops.patch_state, call.id, patch, time.time())
        self._touch(call)
        return state

    async def end(self, call: Call, reason: str, source: str, state: dict[str, Any] | None = None) -> bool:
        """End ``call`` once: ``call.ended`` and the end function's jobs are committed
        before this returns ``True``; ``False`` when it had already ended."""
        if call.ended:
            return False
        self._cancel_end(call)
        call.ending = True  # from here on, a request for this call id begins the next call
        event = CallEndedEvent(call_id=call.id, source=source, reason=str(reason))  # type: ignore[arg-type]
        # after the call's queued writes (its last turn), in one transaction
        stored = await self._write(call, ops.end_call, call.id, event.model_dump(mode="json"), state, self.steps, self.deliver, time.time())
        call.ended = True
        self._forget(call)
        if stored is None:
            return False
        log.info("call ended call_id=%s reason=%s source=%s", call.id, reason, source)
        CALLS_ENDED.labels(end_reason_label(str(reason))).inc()
        CONTROL_EVENTS.labels("call.ended").inc()
        self._published(call.id, [stored])
        if self.on_end is not None:
            self.on_end()
        return True

    async def end_key(self, key: str, reason: str, source: str) -> bool:
        """End the call with record key ``key`` (the sweep; the call may not be in memory)."""
        call = self.get(key, exact=True)
        if call is None:
            row = await self.store.read(ops.find_call, key, True)
            if row is None:
                return False
            call = Call.from_row(row)
        return await self.end(call, reason, source)

    # -- the sweep ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Register this instance; recover what earlier processes left (with an
        engine of one process, every other instance has stopped)."""
        now = time.time()
        await self.store.write(ops.heartbeat, self.instance, socket.gethostname(), os.getpid(), now)
        dead_before = now + 1 if not self.store.shared else now - 3 * self.sweep_s
        found = await self.store.write(ops.recover, self.instance, now, dead_before)
        if any(found.values()):
            log.warning("recovered after a stop: %d turn(s) interrupted, %d step(s) and %d delivery(ies) resumed",
                        found["turns"], found["jobs"], found["deliveries"])
        await self.sweep()

    async def sweep(self) -> int:
        """One round: heartbeat, recover, end due calls, delete calls past
        ``retention_s``, trim memory. Returns how many calls it ended."""
        now = time.time()
        await self.store.write(ops.heartbeat, self.instance, socket.gethostname(), os.getpid(), now)
        if self.store.shared:
            await self.store.write(ops.recover, self.instance, now, now - 3 * self.sweep_s)
        due = await self.store.read(ops.due_ends, now, self.idle_timeout_s, self.after_hangup_s)
        ended = 0
        for key, reason, source in due:
            live = self.get(key, exact=True)
            if live is not None and (live.active_requests or key in self._end_timers):
                continue  # this process is still on it
            ended += await self.end_key(key, reason, source)
        if self.retention_s is not None:
            purged = await self.store.write(ops.purge, now - self.retention_s)
            if purged:
                log.info("retention: deleted %d ended calls older than %.0f s", purged, self.retention_s)
        self._trim()
        return ended

    async def run_sweeper(self) -> None:
        """Sweep every ``sweep_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.sweep_s)
            try:
                await self.sweep()
            except Exception:
                log.exception("the sweep failed; the next one tries again")

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, kept until done (and drained on stop)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call lifecycle task failed: %r", task.exception())

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for the background work in flight (ends in progress) and the writes
        queued for every call."""
        for timer in list(self._end_timers.values()):
            timer.cancel()
        self._end_timers.clear()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        writes = [c.last_write for c in self._calls.values() if c.last_write is not None]
        if self.store.fifo:
            writes.append(asyncio.ensure_future(self.store.write(_barrier)))
        if writes:
            await asyncio.wait(writes, timeout=timeout)

    # -- internals -------------------------------------------------------------------------------

    def _write(self, call: Call, op: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Queue a write of ``call``'s, after the ones queued before it; the future
        resolves after its commit."""
        if self.store.fifo or call.last_write is None or call.last_write.done():
            fut = self.store.submit(op, *args)
        else:
            fut = asyncio.ensure_future(self._after(call.last_write, op, args))
        call.last_write = fut
        return fut

    def _post(self, call: Call, op: Callable[..., Any], *args: Any) -> None:
        """A write of ``call``'s nobody waits for (a turn's rows): with an engine that
        applies writes in order, queued without a future (no wake-up of the loop)."""
        if self.store.fifo:
            self.store.post(op, *args)
            call.last_write = None
        else:
            self._write(call, op, *args)

    async def _after(self, prev: asyncio.Future[Any], op: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        with contextlib.suppress(Exception):
            await asyncio.shield(prev)
        return await self.store.write(op, *args)

    async def _settled(self, call: Call) -> None:
        """Wait for the writes queued for ``call`` (their failures are logged): with
        an engine that applies writes in order, a write queued now commits after them."""
        if self.store.fifo:
            await self.store.write(_barrier)
        elif call.last_write is not None and not call.last_write.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(call.last_write)

    def _publish_after(self, key: str, fut: asyncio.Future[Any]) -> None:
        def done(f: asyncio.Future[Any]) -> None:
            if not f.cancelled() and f.exception() is None:
                self._published(key, f.result())

        fut.add_done_callback(done)

    def _published(self, key: str, events: list[dict[str, Any]]) -> None:
        self.wake(key)
        if self.on_events is not None and events:
            self.on_events(events)

    def _remember(self, call: Call) -> Call:
        self._calls[call.id] = call
        self._calls.move_to_end(call.id)
        newest = self._calls.get(self._latest.get(call.call_id, ""))
        if newest is None or newest is call or call.generation >= newest.generation:
            self._latest[call.call_id] = call.id
        return call

    def _forget(self, call: Call) -> None:
        if self._calls.get(call.id) is call:
            del self._calls[call.id]
        if self._latest.get(call.call_id) == call.id:
            del self._latest[call.call_id]

    def _touch(self, call: Call) -> None:
        call.last_activity = time.monotonic()
        if call.id in self._calls:
            self._calls.move_to_end(call.id)

    def _trim(self) -> None:
        """Keep at most ``cache_calls`` calls: the least recently active go first
        (never one with a reply in flight or a hangup window running)."""
        excess = len(self._calls) - self.cache_calls
        for call in list(self._calls.values()):
            if excess <= 0:
                break
            if not call.active_requests and call.id not in self._end_timers:
                self._forget(call)
                excess -= 1

    def _after_hangup(self, call: Call) -> None:
        """The call hung up and no reply is in flight: it ends once no request has
        come for ``after_hangup_s`` (at once when that is 0)."""
        if self.after_hangup_s <= 0:
            self.spawn(self.end(call, EndReason.AGENT_HANGUP, call.hangup_source or "text_command"))
            return
        self._cancel_end(call)
        loop = asyncio.get_running_loop()
        self._end_timers[call.id] = loop.call_later(self.after_hangup_s, self._hangup_window_over, call)

    def _hangup_window_over(self, call: Call) -> None:
        self._end_timers.pop(call.id, None)
        if not call.active_requests:
            self.spawn(self.end(call, EndReason.AGENT_HANGUP, call.hangup_source or "text_command"))

    def _cancel_end(self, call: Call) -> None:
        timer = self._end_timers.pop(call.id, None)
        if timer is not None:
            timer.cancel()


def _barrier(c: Any) -> None:
    """A write that does nothing: when it commits, every write queued before it has."""


def _rejected(event: ControlEvent) -> dict[str, Any] | None:
    """What is stored instead of a hangup when the call has one already (another
    process's): the same command, rejected."""
    if not isinstance(event, HangupEvent):
        return None
    return CommandRejectedEvent(
        id=event.id, call_id=event.call_id, created_at=event.created_at, source=event.source, function="hangup",
        reason=DUPLICATE_HANGUP, attrs=event.attrs, raw=event.raw,
    ).model_dump(mode="json")


def _recorded_tool_calls(turn: Turn, outcome: TurnOutcome) -> list[dict[str, Any]]:
    """The reply's tool calls for ``state.tool_calls``: ``[{"name", "arguments"
    (parsed when JSON), "turn"}]``."""
    out = []
    for tc in outcome.tool_calls:
        try:
            args: Any = json.loads(tc["arguments"]) if tc["arguments"] else {}
        except ValueError:
            args = tc["arguments"]
        out.append({"name": tc["name"], "arguments": args, "turn": turn.request_id})
    return out
