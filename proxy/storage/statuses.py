"""Every status the database stores, as an enum; the schema's CHECK constraints list
the same values (a test holds them equal), and so do the metrics' labels.

SQL uses them two ways: bound as parameters where a value is written (``SET status
= :status``), and as literals made from the enum (:func:`lit`) in the ``WHERE``
clauses that must match a partial index's predicate (``WHERE status = 'pending'``):
neither SQLite's planner nor a generic PostgreSQL plan can use a partial index
for ``status = ?``.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from ..core.openai_sip.actions import LatchState as SipLatch
from ..core.openai_sip.api import Api as SipApi
from ..core.reply import TurnStatus  # decided by the reply's state machine; stored as is

__all__ = [
    "TERMINAL", "CallStatus", "DeliveryStatus", "EventType", "JobStatus", "SipApi", "SipCallStatus", "SipFunctionStatus",
    "SipLatch", "TurnStatus", "lit", "one_of",
]


class CallStatus(StrEnum):
    """A call's row: ``active`` until its end is written, then ``ended``."""

    ACTIVE = "active"
    ENDED = "ended"


class EventType(StrEnum):
    """A control event's ``type``."""

    HANGUP = "hangup"
    TRANSFER = "transfer"
    COMMAND_REJECTED = "command.rejected"
    CALL_ENDED = "call.ended"


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

    PENDING = "pending"  # due at next_at (the first try, or a retry); claimed under a lease while sent
    DONE = "done"
    FAILED = "failed"  # a dead letter: refused, or not delivered while fresh


class SipCallStatus(StrEnum):
    """An OpenAI SIP call (``sip_calls``): from its webhook to its end. ``SipApi`` (the
    API it is on) and ``SipLatch`` (its hangup and refer) are the sans-IO core's enums."""

    ACCEPTING = "accepting"  # an instance claimed it; its accept (or reject) is under way
    ACCEPTED = "accepted"  # accepted: its sideband has an owner, under a lease
    REJECTED = "rejected"  # refused (allow_callers): rejected with reject_status
    GONE = "gone"  # the accept answered 404: the caller had hung up
    FAILED = "failed"  # the accept failed otherwise (logged, not tried again)
    ENDED = "ended"  # the call ended


class SipFunctionStatus(StrEnum):
    """A function call of an OpenAI SIP call (``sip_function_calls``), keyed by its ``call_id``."""

    RUNNING = "running"  # claimed by an instance: being executed
    ANSWERED = "answered"  # its output was stored and sent


TERMINAL = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.SKIPPED, JobStatus.BLOCKED})


def lit(value: StrEnum) -> str:
    """An enum value as an SQL string literal (``'pending'``). Enum values are
    identifiers: no quote to escape."""
    assert "'" not in value
    return f"'{value}'"


def one_of(values: Iterable[StrEnum]) -> str:
    """``'a', 'b', 'c'``: the values as a list of literals, for ``IN (...)`` and the
    schema's CHECK constraints."""
    return ", ".join(lit(v) for v in values)
