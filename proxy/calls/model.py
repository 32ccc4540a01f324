"""What a call is in memory: a small cache entry of the database's row.

The database holds the call (its turns, control events, state, metadata); a
:class:`Call` here holds what the relay needs without asking it: who the call is,
whether it hung up, how many replies of it are in flight on this process, and the
last write queued for it (a read of the record waits for that write). A
:class:`Turn` is one chat completion request while it is in flight. Only
:class:`~proxy.calls.registry.CallRegistry` changes them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..storage import CallRow

__all__ = ["Call", "EndReason", "Turn", "TurnOutcome", "TurnStatus"]


class TurnStatus(StrEnum):
    """How a turn (one chat completion request) went."""

    IN_PROGRESS = "in_progress"
    OK = "ok"
    UPSTREAM_ERROR = "upstream_error"  # the upstream failed, sent an error event or a body that is not SSE/JSON
    UPSTREAM_INCOMPLETE = "upstream_incomplete"  # the stream ended with no finish_reason
    CLIENT_DISCONNECTED = "client_disconnected"  # the runtime went away mid-reply
    INTERRUPTED = "interrupted"  # the process serving it stopped (found by recovery)
    ERROR = "error"  # callgate itself failed mid-reply


class EndReason(StrEnum):
    """The end reasons callgate sets itself; the call layer may report any other."""

    AGENT_HANGUP = "agent_hangup"  # the model hung up and its replies finished
    IDLE_TIMEOUT = "idle_timeout"  # no request for end_function.idle_timeout_s
    RESPONSE_FINISHED = "response_finished"  # the one reply of a call without an id
    CALL_LAYER = "call_layer"  # POST /end without a reason
    LIMITS_EXCEEDED = "limits_exceeded"  # the call passed a limit of limits:


@dataclass(slots=True)
class Turn:
    """One chat completion request of a call, in flight. ``started_at``: Unix s."""

    request_id: str
    started_at: float
    stream: bool
    user_text: str = ""
    commands: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0  # commands rejected in this reply
    uncounted: int = 0  # of those, the ones past limits.rejected_events_per_reply (one event says how many)


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
    """One call as this process knows it.

    ``call_id``: the id the runtime gave (or callgate, for a request without one);
    ``id``: the record's key, the same but for a later call under an id whose call
    had ended (``{call_id}~{generation}``).
    """

    __slots__ = (
        "id", "call_id", "generation", "anonymous", "owner", "profile", "started_at", "hung_up", "hangup_source",
        "active_requests", "last_activity", "ending", "ended", "last_write", "stored", "turns", "events",
    )

    def __init__(self, call_id: str, *, anonymous: bool = False, generation: int = 1, owner: str | None = None, profile: str | None = None) -> None:
        self.call_id = call_id
        self.generation = generation
        self.id = call_id if generation == 1 else f"{call_id}~{generation}"
        self.anonymous = anonymous
        self.owner = owner
        self.profile = profile
        self.started_at = time.time()
        self.hung_up = False
        self.hangup_source: str | None = None  # the source of the call's accepted hangup
        self.active_requests = 0
        self.last_activity = time.monotonic()
        self.ending = False  # its end is being written: a new request starts the next call
        self.ended = False
        self.last_write: asyncio.Future[Any] | None = None
        self.stored = False  # its row was written (or read): begin_turn need not make it
        self.turns = 0  # turns and control events so far (limits:)
        self.events = 0

    @classmethod
    def from_row(cls, row: CallRow) -> Call:
        """The cache entry of a stored call."""
        call = cls(row.call_id, anonymous=row.anonymous, generation=row.generation, owner=row.owner)
        call.id = row.id
        call.hung_up = row.hangup_source is not None
        call.hangup_source = row.hangup_source
        call.ended = row.ended
        call.stored = True
        call.turns, call.events = row.turns, row.events
        return call

    def row(self) -> dict[str, Any]:
        """What the database's ``calls`` row is made from."""
        return {
            "id": self.id,
            "call_id": self.call_id,
            "generation": self.generation,
            "anonymous": self.anonymous,
            "owner": self.owner,
            "profile": self.profile,
            "started_at": self.started_at,
            "new": not self.stored,
        }
