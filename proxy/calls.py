"""Calls: the in-memory conversation record of each call, and when a call ends.

A :class:`Call` holds the turns (last user message, the assistant's output as raw
and as spoken, commands, tool calls, time to first token and duration in ms), the
control events, ``state`` set by the call layer, ``metadata`` from the runtime and
the end reason; the end function's steps live in the database.

:class:`CallRegistry` appends control events (at most one hangup per call), wakes
SSE subscribers, hands events to the sinks, ends a call exactly once (model hangup,
``POST /end``, idle timeout, or the end of the one request of an anonymous call),
hands the ended call to ``on_end`` (the durable end-function pipeline), and forgets
the in-memory call ``record_ttl_s`` after it ended (the database keeps it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .events import CallEndedEvent, CommandRejectedEvent, ControlEvent, HangupEvent, control_event_adapter

log = logging.getLogger("callgate.calls")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Turn:
    """One chat completion request of a call."""

    request_id: str
    started_at: datetime
    stream: bool
    user_text: str = ""
    raw_text: str = ""
    spoken_text: str = ""
    commands: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    ttft_ms: float | None = None
    duration_ms: float | None = None
    status: str = "in_progress"  # in_progress | ok | upstream_error | client_disconnected
    error: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Turn:
        """From :meth:`to_dict`'s output (a stored record)."""
        d = dict(d)
        d["started_at"] = datetime.fromisoformat(d["started_at"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "started_at": self.started_at.isoformat(),
            "stream": self.stream,
            "user_text": self.user_text,
            "raw_text": self.raw_text,
            "spoken_text": self.spoken_text,
            "commands": self.commands,
            "tool_calls": self.tool_calls,
            "ttft_ms": self.ttft_ms,
            "duration_ms": self.duration_ms,
            "status": self.status,
            "error": self.error,
        }


class Call:
    """One call's record. Mutated only from the event loop."""

    def __init__(self, call_id: str, *, anonymous: bool = False) -> None:
        self.id = call_id
        self.anonymous = anonymous
        self.started_at = _utcnow()
        self.last_activity = time.monotonic()
        self.turns: list[Turn] = []
        self.events: list[ControlEvent] = []
        self.state: dict[str, Any] = {}
        self.metadata: dict[str, Any] = {}  # from the runtime, e.g. IMS extendData (callerNumber, ...)
        self.hung_up = False
        self.active_requests = 0
        self.end_reason: str | None = None
        self.end_source: str | None = None
        self.ended_at: datetime | None = None
        self.delivery_failures: list[dict[str, Any]] = []
        self.expires_at: float | None = None
        self._waiters: list[asyncio.Future[None]] = []

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Call:
        """A live call again from its stored record (after a restart)."""
        call = cls(record["id"], anonymous=bool(record.get("anonymous")))
        call.started_at = datetime.fromisoformat(record["started_at"])
        call.state = record.get("state") or {}
        call.metadata = record.get("metadata") or {}
        call.turns = [Turn.from_dict(t) for t in record.get("turns") or []]
        call.events = [control_event_adapter.validate_python(e) for e in record.get("events") or []]
        call.hung_up = any(e.type == "hangup" for e in call.events)
        call.delivery_failures = record.get("delivery_failures") or []
        return call

    @property
    def ended(self) -> bool:
        return self.end_reason is not None

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    async def wait_for_events(self, seen: int, timeout: float) -> bool:
        """Wait until the call has more than ``seen`` events (``True``) or ``timeout`` s pass."""
        if len(self.events) > seen:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            pass
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)
        return len(self.events) > seen

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def transcript(self) -> list[dict[str, str]]:
        """``[{"role": "user"|"assistant", "text": ...}]`` in order, as spoken."""
        out: list[dict[str, str]] = []
        for t in self.turns:
            if t.user_text:
                out.append({"role": "user", "text": t.user_text})
            if t.spoken_text:
                out.append({"role": "assistant", "text": t.spoken_text})
        return out

    def to_record(self) -> dict[str, Any]:
        """The call record as JSON-ready data (``GET /v1/calls/{id}``, webhook steps)."""
        return {
            "id": self.id,
            "status": "ended" if self.ended else "active",
            "anonymous": self.anonymous,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "end_reason": self.end_reason,
            "end_source": self.end_source,
            "state": self.state,
            "metadata": self.metadata,
            "transcript": self.transcript(),
            "turns": [t.to_dict() for t in self.turns],
            "events": [e.model_dump(mode="json") for e in self.events],
            "delivery_failures": self.delivery_failures,
        }


EventSink = Callable[[Call, ControlEvent], None]
CallHook = Callable[[Call], None]


class CallRegistry:
    """All live calls; see the module docstring.

    ``sinks``: called with every event as it is appended (must not block).
    ``on_end``: called once when a call ends (persists it, starts its end function).
    ``on_save``: called after each finished turn of a live call (persists it).
    ``load``: the stored record of a call not in memory, or ``None``; an active one
    is taken up again (a call that outlives a restart keeps its turns and state).
    Times in seconds.
    """

    def __init__(
        self,
        *,
        idle_timeout_s: float,
        record_ttl_s: float,
        sinks: list[EventSink] | None = None,
        on_end: CallHook | None = None,
        on_save: CallHook | None = None,
        load: Callable[[str], dict[str, Any] | None] | None = None,
    ) -> None:
        self.idle_timeout_s = idle_timeout_s
        self.record_ttl_s = record_ttl_s
        self.sinks = sinks or []
        self.on_end = on_end
        self.on_save = on_save
        self.load = load
        self._calls: dict[str, Call] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def get(self, call_id: str) -> Call | None:
        return self._calls.get(call_id)

    def get_or_create(self, call_id: str, *, anonymous: bool = False) -> Call:
        call = self._calls.get(call_id)
        if call is None:
            record = self.load(call_id) if self.load is not None and not anonymous else None
            if record is not None and record.get("status") == "active":
                call = Call.from_record(record)
            else:
                call = Call(call_id, anonymous=anonymous)
            self._calls[call_id] = call
        return call

    def emit(self, call: Call, event: ControlEvent) -> ControlEvent:
        """Append ``event`` (a second hangup becomes ``command.rejected``), number it,
        wake subscribers, hand it to the sinks. Returns the event appended."""
        if isinstance(event, HangupEvent):
            if call.hung_up:
                event = CommandRejectedEvent(
                    call_id=call.id,
                    source=event.source,
                    function="hangup",
                    reason="duplicate hangup: the call already hung up",
                    attrs=event.attrs,
                    raw=event.raw,
                )
            else:
                call.hung_up = True
        event.seq = len(call.events) + 1
        call.events.append(event)
        call._wake()
        for sink in self.sinks:
            try:
                sink(call, event)
            except Exception:  # a sink must never break the call
                log.exception("control event sink failed call_id=%s event=%s", call.id, event.id)
        return event

    def end(self, call: Call, reason: str, source: str, state: dict[str, Any] | None = None) -> bool:
        """End ``call`` once: merge ``state``, emit ``call.ended``, hand it to
        ``on_end``. ``False`` when it had already ended (nothing changes)."""
        if call.ended:
            return False
        if state:
            call.state.update(state)
        call.end_reason, call.end_source, call.ended_at = reason, source, _utcnow()
        log.info("call ended call_id=%s reason=%s source=%s", call.id, reason, source)
        self.emit(call, CallEndedEvent(call_id=call.id, source=source, reason=reason))  # type: ignore[arg-type]
        call.expires_at = time.monotonic() + self.record_ttl_s
        if self.on_end is not None:
            try:
                self.on_end(call)
            except Exception:  # the end must not fail the request that carried it
                log.exception("could not hand the ended call to the end function call_id=%s", call.id)
        return True

    def save(self, call: Call) -> None:
        """A turn of a live call finished: persist it."""
        if self.on_save is not None and not call.ended:
            try:
                self.on_save(call)
            except Exception:
                log.exception("could not save the call record call_id=%s", call.id)

    def sweep(self, now: float | None = None) -> None:
        """End calls idle for ``idle_timeout_s``; forget expired records."""
        now = time.monotonic() if now is None else now
        for call in list(self._calls.values()):
            if call.expires_at is not None and now >= call.expires_at:
                del self._calls[call.id]
            elif not call.ended and not call.active_requests and now - call.last_activity >= self.idle_timeout_s:
                self.end(call, "idle_timeout", "idle_timeout")

    async def run_sweeper(self) -> None:
        """Sweep forever, about four times per idle timeout (at most every 5 s)."""
        interval = max(0.02, min(self.idle_timeout_s / 4, 5.0))
        while True:
            await asyncio.sleep(interval)
            self.sweep()
