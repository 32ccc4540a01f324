"""What the storage takes and hands out, typed: rows read by column name into frozen
records, and the values an operation writes.

Read: :class:`CallRecord` (a ``calls`` row), :class:`TurnRecord`, :class:`Job`,
:class:`Delivery`. Written: :class:`CallStart` and :class:`TurnStart` (a turn
begins), :class:`TurnOutcome` and :class:`CommandRecord` (it ends),
:class:`NewEvent` (a control event to store). Times are Unix seconds; JSON columns
come back parsed. Each record's ``to_json()`` is its part of the call record that
``GET /v1/calls/{id}`` answers (:func:`call_json`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..core import json_codec
from ..core.routing import usage_totals
from .db import Row
from .statuses import CallStatus, DeliveryStatus, JobStatus, TurnStatus

__all__ = [
    "CallRecord",
    "CallStart",
    "CommandRecord",
    "Delivery",
    "Job",
    "NewEvent",
    "TurnOutcome",
    "TurnRecord",
    "TurnStart",
    "call_json",
    "dumps",
    "end_function_summary",
    "iso",
    "loads",
]


def dumps(value: Any) -> str:
    """``value`` as JSON text (for a JSON column)."""
    return json_codec.dumps(value).decode()


def loads(text: str | None, default: Any = None) -> Any:
    """A JSON column's value; ``default`` for NULL or empty."""
    return json_codec.loads(text) if text else default


def iso(ts: float | None) -> str | None:
    """Unix seconds -> ISO 8601 UTC (``None`` stays ``None``)."""
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts is not None else None


# -- written --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallStart:
    """What a call's row is made of when its first turn begins. ``key``: the record
    key (``call_id``, or ``{call_id}~{generation}`` for a later call under it)."""

    key: str
    call_id: str
    generation: int = 1
    anonymous: bool = False
    owner: str | None = None
    profile: str | None = None
    started_at: float = 0.0


@dataclass(frozen=True, slots=True)
class TurnStart:
    """A turn as it begins: ``instance`` serves it; ``user_text``: the last user message."""

    request_id: str
    instance: str
    started_at: float
    stream: bool
    user_text: str = ""


@dataclass(frozen=True, slots=True)
class TurnOutcome:
    """How a turn ended, as the relay saw it (``ttft_ms``, ``duration_ms``: ms);
    ``tool_calls``: ``[{"id", "name", "arguments"}]`` as assembled;
    ``speech_gap_max_ms``: the longest silence inside its speech (ms, see
    :mod:`proxy.core.gaps`; ``None``: nothing was spoken)."""

    status: TurnStatus
    error: str | None = None
    raw_text: str = ""
    spoken_text: str = ""
    reasoning_text: str = ""
    tool_calls: Sequence[Mapping[str, Any]] = ()
    ttft_ms: float | None = None
    duration_ms: float | None = None
    attempts: Sequence[Mapping[str, Any]] = ()  # one per upstream attempt, in start order
    heard_text: str | None = None  # what the caller heard, when the platform said so (None: all of spoken_text)
    speech_gap_max_ms: float | None = None  # the longest silence inside the reply's speech (ms)


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """A control command of a turn, as the turn's record keeps it. ``code``: the
    rejection code (``None`` when accepted); ``event_id``: the event it became."""

    function: str | None
    source: str
    args: Mapping[str, str]
    raw: str
    accepted: bool
    reason: str | None = None
    code: str | None = None
    event_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The turn record's ``commands`` entry."""
        return {
            "function": self.function, "source": self.source, "args": dict(self.args), "raw": self.raw,
            "accepted": self.accepted, "reason": self.reason, "code": self.code, "event_id": self.event_id,
        }


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A control event to store (its JSON, without ``seq``), and what is stored
    instead when a unique index refuses it (a call's second hangup: its
    ``command.rejected``)."""

    payload: Mapping[str, Any]
    instead: Mapping[str, Any] | None = None


# -- read ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One ``calls`` row. ``key``: the record key (column ``id``); ``call_id``: the
    runtime's id; ``last_seq``: the last event's number."""

    key: str
    call_id: str
    generation: int
    status: CallStatus
    anonymous: bool
    owner: str | None
    profile: str | None
    started_at: float
    last_activity: float
    ended_at: float | None
    end_reason: str | None
    end_source: str | None
    hangup_at: float | None
    hangup_source: str | None
    last_seq: int
    turns: int
    state: dict[str, Any] = field(hash=False)
    metadata: dict[str, Any] = field(hash=False)

    COLUMNS = (
        "id, call_id, generation, status, anonymous, owner, profile, started_at, last_activity, ended_at, end_reason, "
        "end_source, hangup_at, hangup_source, last_seq, turns, state, metadata"
    )

    @classmethod
    def from_row(cls, r: Row) -> CallRecord:
        """From a row of :attr:`COLUMNS`."""
        return cls(
            key=r["id"], call_id=r["call_id"], generation=r["generation"], status=CallStatus(r["status"]),
            anonymous=bool(r["anonymous"]), owner=r["owner"], profile=r["profile"], started_at=r["started_at"],
            last_activity=r["last_activity"], ended_at=r["ended_at"], end_reason=r["end_reason"],
            end_source=r["end_source"], hangup_at=r["hangup_at"], hangup_source=r["hangup_source"],
            last_seq=r["last_seq"], turns=r["turns"], state=loads(r["state"], {}), metadata=loads(r["metadata"], {}),
        )

    @property
    def ended(self) -> bool:
        """Its end is written."""
        return self.status is CallStatus.ENDED

    def to_json(self) -> dict[str, Any]:
        """The call's own fields of the call record: ``id`` and ``call_id`` are the
        runtime's id, ``generation`` which call under it (1, 2, ...), ``key`` the
        record key (``{call_id}~{generation}`` past the first)."""
        return {
            "id": self.call_id, "call_id": self.call_id, "generation": self.generation, "key": self.key,
            "status": str(self.status), "anonymous": self.anonymous, "owner": self.owner, "profile": self.profile,
            "started_at": iso(self.started_at), "ended_at": iso(self.ended_at), "end_reason": self.end_reason,
            "end_source": self.end_source, "state": self.state, "metadata": self.metadata,
            "last_activity": iso(self.last_activity),
        }


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One ``turns`` row: a chat completion request of a call, numbered ``idx``
    from 1. ``commands`` and ``tool_calls`` are their JSON; ``speech_gap_max_ms``:
    the longest silence inside its speech (ms; ``None``: nothing spoken, or recorded
    before schema v7)."""

    call_key: str
    idx: int
    request_id: str
    instance: str
    started_at: float
    stream: bool
    status: TurnStatus
    user_text: str
    raw_text: str
    spoken_text: str
    reasoning_text: str
    commands: list[dict[str, Any]] = field(hash=False)
    tool_calls: list[dict[str, Any]] = field(hash=False)
    ttft_ms: float | None
    duration_ms: float | None
    error: str | None
    finished_at: float | None
    attempts: list[dict[str, Any]] = field(hash=False)
    heard_text: str | None = None
    speech_gap_max_ms: float | None = None

    COLUMNS = (
        "call_key, idx, request_id, instance, started_at, stream, status, user_text, raw_text, spoken_text, "
        "reasoning_text, commands, tool_calls, ttft_ms, duration_ms, error, finished_at, attempts, heard_text, speech_gap_max_ms"
    )

    @property
    def heard(self) -> str:
        """What the caller heard of the reply: ``heard_text`` when the platform said, else ``spoken_text``."""
        return self.heard_text if self.heard_text is not None else self.spoken_text

    @classmethod
    def from_row(cls, r: Row) -> TurnRecord:
        """From a row of :attr:`COLUMNS`."""
        return cls(
            call_key=r["call_key"], idx=r["idx"], request_id=r["request_id"], instance=r["instance"],
            started_at=r["started_at"], stream=bool(r["stream"]), status=TurnStatus(r["status"]),
            user_text=r["user_text"], raw_text=r["raw_text"], spoken_text=r["spoken_text"],
            reasoning_text=r["reasoning_text"], commands=loads(r["commands"], []), tool_calls=loads(r["tool_calls"], []), ttft_ms=r["ttft_ms"],
            duration_ms=r["duration_ms"], error=r["error"], finished_at=r["finished_at"], attempts=loads(r["attempts"], []),
            heard_text=r["heard_text"], speech_gap_max_ms=r["speech_gap_max_ms"],
        )

    def to_json(self) -> dict[str, Any]:
        """The call record's ``turns`` entry."""
        return {
            "request_id": self.request_id, "started_at": iso(self.started_at), "stream": self.stream,
            "status": str(self.status), "user_text": self.user_text, "raw_text": self.raw_text,
            "spoken_text": self.spoken_text, "reasoning_text": self.reasoning_text, "commands": self.commands, "tool_calls": self.tool_calls,
            "ttft_ms": self.ttft_ms, "duration_ms": self.duration_ms, "error": self.error, "instance": self.instance,
            "attempts": self.attempts, "heard_text": self.heard_text, "speech_gap_max_ms": self.speech_gap_max_ms,
        }


@dataclass(slots=True)
class Job:
    """One ``jobs`` row: an end-function step of an ended call. ``attempts``: tries
    claimed so far (the one under way included)."""

    id: int
    call_key: str
    step: str
    kind: str
    after: list[str]
    status: JobStatus
    attempts: int
    next_at: float
    last_error: str | None
    response_code: int | None
    duration_ms: float | None
    output: Any
    idempotency_key: str
    locked_by: str | None = None

    COLUMNS = (
        "id, call_key, step, kind, after, status, attempts, next_at, last_error, response_code, duration_ms, "
        "output, idempotency_key, locked_by"
    )

    @classmethod
    def from_row(cls, r: Row) -> Job:
        """From a row of :attr:`COLUMNS`."""
        return cls(
            id=r["id"], call_key=r["call_key"], step=r["step"], kind=r["kind"], after=loads(r["after"], []),
            status=JobStatus(r["status"]), attempts=r["attempts"], next_at=r["next_at"], last_error=r["last_error"],
            response_code=r["response_code"], duration_ms=r["duration_ms"], output=loads(r["output"]),
            idempotency_key=r["idempotency_key"], locked_by=r["locked_by"],
        )

    def to_json(self) -> dict[str, Any]:
        """The call record's ``end_function.steps`` entry (and the admin API's)."""
        return {
            "id": self.id, "call_key": self.call_key, "step": self.step, "kind": self.kind, "after": self.after,
            "status": str(self.status), "attempts": self.attempts, "next_at": self.next_at,
            "last_error": self.last_error, "response_code": self.response_code, "duration_ms": self.duration_ms,
            "output": self.output, "idempotency_key": self.idempotency_key,
        }


@dataclass(slots=True)
class Delivery:
    """One ``deliveries`` row: a control event's delivery to the webhook.
    ``attempts``: tries claimed so far (the one under way included)."""

    event_id: str
    call_key: str
    seq: int
    type: str
    status: DeliveryStatus
    attempts: int
    next_at: float
    last_error: str | None
    response_code: int | None
    created_at: float
    updated_at: float
    payload: dict[str, Any]

    COLUMNS = "event_id, call_key, seq, type, status, attempts, next_at, last_error, response_code, created_at, updated_at, payload"

    @classmethod
    def from_row(cls, r: Row) -> Delivery:
        """From a row of :attr:`COLUMNS`."""
        return cls(
            event_id=r["event_id"], call_key=r["call_key"], seq=r["seq"], type=r["type"],
            status=DeliveryStatus(r["status"]), attempts=r["attempts"], next_at=r["next_at"],
            last_error=r["last_error"], response_code=r["response_code"], created_at=r["created_at"],
            updated_at=r["updated_at"], payload=loads(r["payload"], {}),
        )

    def to_json(self) -> dict[str, Any]:
        """The call record's ``control_deliveries`` entry (and the admin API's)."""
        return {
            "event_id": self.event_id, "call_key": self.call_key, "seq": self.seq, "type": self.type,
            "status": str(self.status), "attempts": self.attempts, "next_at": self.next_at,
            "last_error": self.last_error, "response_code": self.response_code, "created_at": self.created_at,
        }


def end_function_summary(jobs: Sequence[Job]) -> dict[str, Any]:
    """``{"status": "done"|"running"|"pending"|"failed", "steps": [...]}`` for a record."""
    statuses = {j.status for j in jobs}
    if JobStatus.RUNNING in statuses:
        overall = JobStatus.RUNNING
    elif JobStatus.PENDING in statuses:
        overall = JobStatus.PENDING
    elif statuses & {JobStatus.FAILED, JobStatus.BLOCKED}:
        overall = JobStatus.FAILED
    else:
        overall = JobStatus.DONE
    return {"status": str(overall), "steps": [j.to_json() for j in jobs]}


def _transcript(turns: Sequence[TurnRecord]) -> list[dict[str, str]]:
    out = []
    for t in turns:
        if t.user_text:
            out.append({"role": "user", "text": t.user_text})
        if t.heard:  # what the caller heard: all that was spoken, unless a front door's platform said less
            out.append({"role": "assistant", "text": t.heard})
    return out


def call_json(
    call: CallRecord,
    turns: Sequence[TurnRecord],
    events: list[dict[str, Any]],
    jobs: Sequence[Job] | None = None,
    deliveries: Sequence[Delivery] = (),
) -> dict[str, Any]:
    """The call record (``GET /v1/calls/{id}``, the end function's input): the call,
    ``transcript``, ``turns``, ``events``; ``end_function`` when ``jobs`` is given and
    the call has steps or ended; ``control_deliveries`` (and ``delivery_failures``)
    when it has any."""
    record = call.to_json()
    record["transcript"] = _transcript(turns)
    record["turns"] = [t.to_json() for t in turns]
    record["usage"], record["cost_usd"] = usage_totals([a for t in turns for a in t.attempts])
    record["events"] = events
    if jobs is not None and (jobs or call.ended):
        record["end_function"] = end_function_summary(jobs)
    if deliveries:
        sent = [d.to_json() for d in deliveries]
        record["control_deliveries"] = sent
        record["delivery_failures"] = [d for d in sent if d["status"] == DeliveryStatus.FAILED]
    return record
