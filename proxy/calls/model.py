"""What a call is: :class:`Call`, its :class:`Turn` objects, their statuses.

A :class:`Call` holds the turns (last user message, the assistant's output as raw
and as spoken, commands, tool calls, time to first token and duration in ms), the
control events, ``state`` set by the call layer, ``metadata`` from the runtime and
the end reason; the end function's steps live in the database. Only
:class:`~proxy.calls.registry.CallRegistry` changes a call; everyone else reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from .events import ControlEvent, control_event_adapter

__all__ = ["Call", "EndReason", "Turn", "TurnOutcome", "TurnStatus", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class TurnStatus(StrEnum):
    """How a turn (one chat completion request) went."""

    IN_PROGRESS = "in_progress"
    OK = "ok"
    UPSTREAM_ERROR = "upstream_error"  # the upstream failed or sent an error event
    CLIENT_DISCONNECTED = "client_disconnected"  # the runtime went away mid-reply
    ERROR = "error"  # callgate itself failed mid-reply


class EndReason(StrEnum):
    """The end reasons callgate sets itself; the call layer may report any other."""

    AGENT_HANGUP = "agent_hangup"  # the model hung up and its reply finished
    IDLE_TIMEOUT = "idle_timeout"  # no request for end_function.idle_timeout_s
    RESPONSE_FINISHED = "response_finished"  # the one reply of a call without an id
    CALL_LAYER = "call_layer"  # POST /end without a reason


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
    status: TurnStatus = TurnStatus.IN_PROGRESS
    error: str | None = None
    hangup_source: str | None = None  # the source of the hangup it carried, if any

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Turn:
        """From :meth:`to_dict`'s output (a stored record)."""
        d = dict(d)
        d["started_at"] = datetime.fromisoformat(d["started_at"])
        d["status"] = TurnStatus(d.get("status", TurnStatus.OK))
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
            "status": str(self.status),
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class TurnOutcome:
    """How a turn ended, as the relay saw it (times in ms)."""

    status: TurnStatus
    error: str | None = None
    raw_text: str = ""
    spoken_text: str = ""
    tool_calls: Sequence[dict[str, Any]] = ()
    ttft_ms: float | None = None
    duration_ms: float | None = None


class Call:
    """One call's record. Changed only by the registry, on the event loop.

    ``call_id``: the id the runtime gave (or callgate, for a request without one);
    ``id``: the record's key, the same but for a later call under an id whose call
    had ended (``{call_id}~{generation}``).
    """

    def __init__(self, call_id: str, *, anonymous: bool = False, generation: int = 1) -> None:
        self.call_id = call_id
        self.generation = generation
        self.id = call_id if generation == 1 else f"{call_id}~{generation}"
        self.anonymous = anonymous
        self.started_at = utcnow()
        self.last_activity = time.monotonic()
        self.turns: list[Turn] = []
        self.events: list[ControlEvent] = []
        self.state: dict[str, Any] = {}
        self.metadata: dict[str, Any] = {}  # from the runtime: caller_number, callee_number, runtime_call_id, its own fields
        self.hung_up = False
        self.hangup_source: str | None = None  # the source of the call's accepted hangup
        self.active_requests = 0
        self.end_reason: str | None = None
        self.end_source: str | None = None
        self.ended_at: datetime | None = None
        self.delivery_failures: list[dict[str, Any]] = []
        self.expires_at: float | None = None
        self._waiters: list[asyncio.Future[None]] = []

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Call:
        """The call again from its stored record (after a restart)."""
        call = cls(record.get("call_id") or record["id"], anonymous=bool(record.get("anonymous")), generation=record.get("generation", 1))
        call.id = record["id"]
        call.started_at = datetime.fromisoformat(record["started_at"])
        call.state = record.get("state") or {}
        call.metadata = record.get("metadata") or {}
        call.turns = [Turn.from_dict(t) for t in record.get("turns") or []]
        call.events = [control_event_adapter.validate_python(e) for e in record.get("events") or []]
        hangups = [e for e in call.events if e.type == "hangup"]
        call.hung_up = bool(hangups)
        call.hangup_source = hangups[0].source if hangups else None
        call.delivery_failures = record.get("delivery_failures") or []
        if record.get("status") == "ended":
            call.end_reason = record.get("end_reason") or ""
            call.end_source = record.get("end_source")
            ended_at = record.get("ended_at")
            call.ended_at = datetime.fromisoformat(ended_at) if ended_at else None
        return call

    @property
    def ended(self) -> bool:
        return self.end_reason is not None

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

    def wake(self) -> None:
        """New events: wake every :meth:`wait_for_events`."""
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
            "call_id": self.call_id,
            "generation": self.generation,
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
