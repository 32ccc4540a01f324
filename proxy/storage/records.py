"""What the storage hands out: statuses, jobs, deliveries and the assembled call record.

A call record (``GET /v1/calls/{id}``, the end function's input) is assembled from
the ``calls``, ``turns`` and ``events`` rows, with the end-function steps under
``end_function`` and the webhook deliveries under ``control_deliveries``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ..core import json_codec

__all__ = [
    "TERMINAL",
    "CallRow",
    "Delivery",
    "DeliveryStatus",
    "Job",
    "JobStatus",
    "end_function_summary",
    "iso",
    "loads",
    "dumps",
]


class JobStatus(StrEnum):
    """Where an end-function step stands."""

    PENDING = "pending"  # waiting for its time, or for the steps it comes after
    RUNNING = "running"  # a try is under way, under a lease
    DONE = "done"
    FAILED = "failed"  # out of tries: a dead letter, with its last error
    SKIPPED = "skipped"  # its `when:` did not hold
    BLOCKED = "blocked"  # a step it comes after failed


class DeliveryStatus(StrEnum):
    """Where a control event's webhook delivery stands."""

    PENDING = "pending"  # due at next_at (the first try, or a retry)
    DONE = "done"
    FAILED = "failed"  # a dead letter: refused, or not delivered while fresh


TERMINAL = (JobStatus.DONE, JobStatus.FAILED, JobStatus.SKIPPED, JobStatus.BLOCKED)


def dumps(value: Any) -> str:
    return json_codec.dumps(value).decode()


def loads(text: str | None, default: Any = None) -> Any:
    return json_codec.loads(text) if text else default


def iso(ts: float | None) -> str | None:
    """Unix seconds -> ISO 8601 UTC (``None`` stays ``None``)."""
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts is not None else None


@dataclass(frozen=True, slots=True)
class CallRow:
    """What the call registry keeps of a stored call."""

    id: str
    call_id: str
    generation: int
    status: str
    anonymous: bool
    owner: str | None
    hangup_source: str | None
    last_activity: float
    turns: int = 0
    events: int = 0

    @property
    def ended(self) -> bool:
        return self.status == "ended"


JOB_COLUMNS = (
    "id, call_id, step, kind, after, status, attempts, next_at, last_error, response_code, duration_ms, "
    "output, idempotency_key, locked_by"
)


@dataclass(slots=True)
class Job:
    """One end-function step of one call."""

    id: int
    call_id: str
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

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Job:
        return cls(
            id=row[0], call_id=row[1], step=row[2], kind=row[3], after=loads(row[4], []), status=JobStatus(row[5]),
            attempts=row[6], next_at=row[7], last_error=row[8], response_code=row[9], duration_ms=row[10],
            output=loads(row[11]), idempotency_key=row[12], locked_by=row[13],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "call_id": self.call_id,
            "step": self.step,
            "kind": self.kind,
            "after": self.after,
            "status": str(self.status),
            "attempts": self.attempts,
            "next_at": self.next_at,
            "last_error": self.last_error,
            "response_code": self.response_code,
            "duration_ms": self.duration_ms,
            "output": self.output,
            "idempotency_key": self.idempotency_key,
        }


DELIVERY_COLUMNS = "event_id, call_key, seq, type, status, attempts, next_at, last_error, response_code, created_at, updated_at, payload"


@dataclass(slots=True)
class Delivery:
    """One control event's delivery to the webhook."""

    event_id: str
    call_id: str
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

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Delivery:
        return cls(
            event_id=row[0], call_id=row[1], seq=row[2], type=row[3], status=DeliveryStatus(row[4]), attempts=row[5],
            next_at=row[6], last_error=row[7], response_code=row[8], created_at=row[9], updated_at=row[10],
            payload=loads(row[11], {}),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "call_id": self.call_id,
            "seq": self.seq,
            "type": self.type,
            "status": str(self.status),
            "attempts": self.attempts,
            "next_at": self.next_at,
            "last_error": self.last_error,
            "response_code": self.response_code,
            "created_at": self.created_at,
        }


def end_function_summary(jobs: list[Job]) -> dict[str, Any]:
    """``{"status": "done"|"running"|"pending"|"failed", "steps": [job dicts]}`` for a record."""
    statuses = {j.status for j in jobs}
    if JobStatus.RUNNING in statuses:
        overall = JobStatus.RUNNING
    elif JobStatus.PENDING in statuses:
        overall = JobStatus.PENDING
    elif statuses & {JobStatus.FAILED, JobStatus.BLOCKED}:
        overall = JobStatus.FAILED
    else:
        overall = JobStatus.DONE
    return {"status": str(overall), "steps": [j.to_dict() for j in jobs]}
