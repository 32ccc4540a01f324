"""What a call is in memory: a small cache entry of the database's row.

The database holds the call (its turns, control events, state, metadata); a
:class:`Call` here holds what the relay needs without asking it: who the call is,
its :class:`~proxy.core.lifecycle.Lifecycle` (one state, the replies in flight on
this process, whether it hung up), and its counts against ``limits:``. A
:class:`Turn` is one chat completion request while it is in flight. A call changes
only through :meth:`Call.move`, which only the call domain (:mod:`proxy.calls`)
calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

from ..core.lifecycle import Action, CallEvent, CallState, Lifecycle
from ..storage import CallRecord, CallStart, CommandRecord, TurnOutcome, TurnStatus

__all__ = ["Call", "EndReason", "Turn", "TurnOutcome", "TurnStatus", "record_key"]


class EndReason(StrEnum):
    """The end reasons callgate sets itself; the call layer may report any other."""

    AGENT_HANGUP = "agent_hangup"  # the model hung up and its replies finished
    IDLE_TIMEOUT = "idle_timeout"  # no request for end_function.idle_timeout_s
    RESPONSE_FINISHED = "response_finished"  # the one reply of a call without an id
    SOCKET_CLOSED = "socket_closed"  # a front door's socket closed and did not reconnect
    CALL_LAYER = "call_layer"  # POST /end without a reason
    LIMITS_EXCEEDED = "limits_exceeded"  # the call passed a limit of limits:


def record_key(call_id: str, generation: int) -> str:
    """The record key of the ``generation``-th call under ``call_id``: the id itself
    for the first, ``{call_id}~{generation}`` after."""
    return call_id if generation == 1 else f"{call_id}~{generation}"


@dataclass(slots=True)
class Turn:
    """One chat completion request of a call, in flight. ``started_at``: Unix s."""

    request_id: str
    started_at: float
    stream: bool
    user_text: str = ""
    commands: list[CommandRecord] = field(default_factory=list)
    rejected: int = 0  # commands rejected in this reply
    uncounted: int = 0  # of those, the ones past limits.rejected_events_per_reply (one event says how many)


class Call:
    """One call as this process knows it.

    ``call_id``: the id the runtime gave (or callgate, for a request without one);
    ``generation``: which call under that id (1, 2, ... after earlier ones ended);
    ``key``: the record key (:func:`record_key`), internal to callgate.
    """

    __slots__ = (
        "key", "call_id", "generation", "anonymous", "owner", "profile", "started_at", "lifecycle", "hangup_source",
        "last_activity", "turns", "events",
    )

    def __init__(
        self, call_id: str, *, anonymous: bool = False, generation: int = 1, owner: str | None = None, profile: str | None = None
    ) -> None:
        self.call_id = call_id
        self.generation = generation
        self.key = record_key(call_id, generation)
        self.anonymous = anonymous
        self.owner = owner
        self.profile = profile
        self.started_at = time.time()
        self.lifecycle = Lifecycle()
        self.hangup_source: str | None = None  # the source of the call's accepted hangup
        self.last_activity = time.monotonic()
        self.turns = 0  # turns and control events so far (limits:)
        self.events = 0

    @classmethod
    def from_record(cls, row: CallRecord) -> Call:
        """The cache entry of a stored call."""
        call = cls(row.call_id, anonymous=row.anonymous, generation=row.generation, owner=row.owner, profile=row.profile)
        call.key = row.key
        call.started_at = row.started_at
        call.hangup_source = row.hangup_source
        hung_up = row.hangup_source is not None
        state = CallState.ENDED if row.ended else CallState.HUNG_UP if hung_up else CallState.ACTIVE
        call.lifecycle = Lifecycle(state, 0, hung_up)
        call.turns, call.events = row.turns, row.last_seq
        return call

    @property
    def state(self) -> CallState:
        """Where the call stands."""
        return self.lifecycle.state

    @property
    def ended(self) -> bool:
        """Ending or ended: a new request for its call id begins the next call."""
        return self.lifecycle.ended

    @property
    def in_flight(self) -> int:
        """Its replies being served on this process."""
        return self.lifecycle.in_flight

    def move(self, event: CallEvent) -> tuple[Action, ...]:
        """Apply ``event`` (:meth:`~proxy.core.lifecycle.Lifecycle.on`); the actions
        it asks for. Raises :class:`~proxy.core.lifecycle.IllegalMove`."""
        self.lifecycle, actions = self.lifecycle.on(event)
        return actions

    def start(self) -> CallStart:
        """What its row is made of."""
        return CallStart(self.key, self.call_id, self.generation, self.anonymous, self.owner, self.profile, self.started_at)

    def __repr__(self) -> str:
        return f"<Call {self.key} {self.state} in_flight={self.in_flight}>"
