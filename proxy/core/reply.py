"""One reply as a state machine (sans-IO): states, events, one table.

A reply is one chat completion request's answer (an HTTP turn, or a front door's
turn). Attempts race across the pool; one is adopted and streams to the runtime;
after a stall it may be continued by another. The reply is in one of four states
(:class:`ReplyState`)::

    RACING ──attempt won──▶ STREAMING ──finished / failed / cut──▶ ENDED
      │                      │    ▲
      │                      │    └──attempt won──┐
      │                      └──stalled, cut──▶ CONTINUING ──gave up──▶ ENDED
      └──gave up, client gone, barged in, drain expired, callgate failed──▶ ENDED

* ``RACING``: attempts run; none was adopted; the runtime got nothing yet;
* ``STREAMING``: the adopted attempt's output goes to the runtime;
* ``CONTINUING``: the adopted attempt stalled or broke after speech; a continuation
  races (the runtime keeps what it got);
* ``ENDED``: the turn's :class:`TurnStatus` is decided, once.

The events (:class:`ReplyEvent`) come from the server as :class:`ReplyInput`
records; a move may ask for actions (:class:`ReplyAction`: close connections,
tell the pool of a fault, continue, send the runtime an error event or a finish)
which the server carries out. :data:`TRANSITIONS` is the whole table: ``(state,
event)`` to the moves tried in order, each with an optional :class:`Guard` on the
facts the machine keeps (speech began, a hangup was found, a tool call began, the
upstream sent an error object, continuations left). A pair missing from the table
is an :class:`IllegalMove`.

:class:`ReplyMachine` is the only writer of the turn's status and of every
attempt's :class:`AttemptOutcome`; an outcome is written once (a second write is
an :class:`IllegalMove`). When the reply ends, every attempt it started has one.
Modelled on h11's connection state machine, like :mod:`proxy.core.lifecycle`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "ERROR_CODES", "TRANSITIONS", "AttemptOutcome", "Guard", "IllegalMove", "Move", "ReplyAction", "ReplyEvent",
    "ReplyInput", "ReplyMachine", "ReplyState", "TurnStatus",
]


class TurnStatus(StrEnum):
    """How a turn (one reply) went: the turn's ``status`` in the database (the
    schema's CHECK lists the same values) and the metrics' label."""

    IN_PROGRESS = "in_progress"  # written when the turn begins
    OK = "ok"
    UPSTREAM_ERROR = "upstream_error"  # the upstream failed, sent an error event or a body that is not SSE/JSON
    UPSTREAM_INCOMPLETE = "upstream_incomplete"  # the stream ended with no finish_reason
    CLIENT_DISCONNECTED = "client_disconnected"  # the runtime (or the platform's socket) went away mid-reply
    BARGED_IN = "barged_in"  # the caller spoke over the reply (a front door cancelled it)
    SHUT_DOWN = "shut_down"  # callgate's drain ran out with the reply open
    INTERRUPTED = "interrupted"  # the process serving it stopped (found by recovery)
    ERROR = "error"  # callgate itself failed mid-reply


class AttemptOutcome(StrEnum):
    """How one attempt at an upstream ended (the turn's ``attempts[].outcome`` and
    ``callgate_upstream_attempts_total{outcome}``)."""

    WON = "won"  # its answer reached the runtime, to the end
    LOST = "lost"  # another attempt produced speakable output first; this one was cancelled
    FAILED = "failed"  # it failed (before speech, or after it with nothing to continue)
    CANCELLED = "cancelled"  # the reply ended (the runtime left, the caller spoke, a shutdown) before this attempt did
    STALLED = "stalled"  # it spoke, then went silent or broke; a continuation took over, or the reply ended after a hangup
    CONTINUED = "continued"  # it carried on a stalled attempt's speech, to the end


class ReplyState(StrEnum):
    """Where a reply stands (see the module docstring)."""

    RACING = "racing"
    STREAMING = "streaming"
    CONTINUING = "continuing"
    ENDED = "ended"


class ReplyEvent(StrEnum):
    """What happens to a reply."""

    STARTED = "started"  # an attempt began (``continuation`` says whether it continues a stalled one)
    ATTEMPT_FAILED = "attempt_failed"  # an attempt failed before it was adopted
    WON = "won"  # an attempt was adopted; the others still running lose
    GAVE_UP = "gave_up"  # no attempt will answer: the last failure is the reply's
    SPOKE = "spoke"  # the adopted attempt's speakable output began
    HANGUP_FOUND = "hangup_found"  # the adopted attempt wrote a hangup (acted on or refused)
    TOOL_CALL_BEGAN = "tool_call_began"  # the adopted attempt began a tool call
    ERROR_SEEN = "error_seen"  # the upstream sent an error object inside its stream
    FINISHED = "finished"  # the adopted attempt's stream ended with its finish_reason or [DONE]
    CUT = "cut"  # it ended with neither
    STALLED = "stalled"  # its speech went silent ``routing.stall_ms``
    BROKE = "broke"  # it failed mid-stream (a read error, a bad chunk, its timeout)
    CLIENT_GONE = "client_gone"  # the runtime, or the platform's socket, went away
    BARGED_IN = "barged_in"  # the caller spoke over the reply (a front door)
    DRAIN_EXPIRED = "drain_expired"  # callgate's drain ran out with the reply open
    CALLGATE_FAILED = "callgate_failed"  # callgate itself failed


class ReplyAction(StrEnum):
    """What a move asks the server to do."""

    CLOSE = "close"  # close the event's attempt's connection (the adopted one, in STREAMING)
    CLOSE_OTHERS = "close_others"  # cancel every other attempt still running, their connections closed
    FAULT = "fault"  # tell the pool the attempt failed after its head (its upstream's health)
    CONTINUE = "continue"  # race a continuation after what the runtime received
    FAIL_REQUEST = "fail_request"  # nothing was sent: the runtime gets the upstream's error as the answer
    SEND_ERROR = "send_error"  # the runtime gets an error event (:data:`ERROR_CODES`) and ``[DONE]``
    SEND_FINISH = "send_finish"  # the runtime gets what was held, a finish (when none came) and ``[DONE]``


class Guard(StrEnum):
    """A condition on a :class:`ReplyMachine`'s facts."""

    MAY_CONTINUE = "may_continue"  # stall recovery continues, speech began, no hangup, no tool call, budget left
    HUNG_UP = "hung_up"  # stall detection is on, speech began, and a hangup was found: the reply is done
    ERROR_SEEN = "error_seen"  # the upstream sent an error object in the stream


# The error event's ``code`` a runtime gets for a reply that ends with this status after streaming began.
ERROR_CODES: dict[TurnStatus, str] = {
    TurnStatus.UPSTREAM_ERROR: "upstream_stream_error",
    TurnStatus.UPSTREAM_INCOMPLETE: "upstream_incomplete",
    TurnStatus.SHUT_DOWN: "server_shutting_down",
    TurnStatus.ERROR: "internal_error",
}


@dataclass(frozen=True, slots=True)
class Move:
    """One row of the table: go to ``to``; when ``status`` is set, that is the turn's;
    write ``subject`` as the event's attempt's outcome and ``others`` as every other
    running attempt's; ask for ``actions``; when ``when`` holds (always, when ``None``)."""

    to: ReplyState
    status: TurnStatus | None = None
    subject: AttemptOutcome | None = None
    others: AttemptOutcome | None = None
    actions: tuple[ReplyAction, ...] = ()
    when: Guard | None = None


@dataclass(frozen=True, slots=True)
class ReplyInput:
    """One event with its data: ``attempt`` (an index from :meth:`ReplyMachine.start`;
    the adopted one when ``None`` in STREAMING), ``failure`` (a code: how the
    upstream failed) and ``error`` (the sentence the turn records)."""

    event: ReplyEvent
    attempt: int | None = None
    failure: str | None = None
    error: str | None = None


class IllegalMove(Exception):
    """An event the table has no move for in the reply's state (an attempt adopted
    twice, a finish before anything was adopted), or an attempt's outcome written a
    second time."""

    def __init__(self, state: ReplyState, event: ReplyEvent, why: str = "") -> None:
        super().__init__(f"{event} is not a legal move of a reply that is {state}{': ' + why if why else ''}")
        self.state = state
        self.event = event


_R, _S, _C, _E = ReplyState.RACING, ReplyState.STREAMING, ReplyState.CONTINUING, ReplyState.ENDED
_O, _A = AttemptOutcome, ReplyAction
_T = TurnStatus
_CUT_SHORT = (_A.CLOSE, _A.FAULT)


def _ended_before_adoption(state: ReplyState, send: tuple[ReplyAction, ...] = ()) -> dict[tuple[ReplyState, ReplyEvent], tuple[Move, ...]]:
    """The reply ends while attempts race (first ones, or a continuation)."""
    others = (_A.CLOSE_OTHERS,)
    return {
        (state, ReplyEvent.CLIENT_GONE): (Move(_E, _T.CLIENT_DISCONNECTED, others=_O.CANCELLED, actions=others),),
        (state, ReplyEvent.BARGED_IN): (Move(_E, _T.BARGED_IN, others=_O.CANCELLED, actions=others),),
        (state, ReplyEvent.DRAIN_EXPIRED): (Move(_E, _T.SHUT_DOWN, others=_O.CANCELLED, actions=others + send),),
        (state, ReplyEvent.CALLGATE_FAILED): (Move(_E, _T.ERROR, others=_O.CANCELLED, actions=others + send),),
    }


def _racing(state: ReplyState, gave_up: ReplyAction) -> dict[tuple[ReplyState, ReplyEvent], tuple[Move, ...]]:
    """The race of first attempts (``RACING``) or of a continuation (``CONTINUING``)."""
    return {
        (state, ReplyEvent.STARTED): (Move(state),),
        (state, ReplyEvent.ATTEMPT_FAILED): (Move(state, subject=_O.FAILED, actions=(_A.CLOSE,)),),
        (state, ReplyEvent.WON): (Move(_S, others=_O.LOST, actions=(_A.CLOSE_OTHERS,)),),
        (state, ReplyEvent.GAVE_UP): (Move(_E, _T.UPSTREAM_ERROR, others=_O.CANCELLED, actions=(_A.CLOSE_OTHERS, gave_up)),),
    }


_FAILED_MID_STREAM = (
    Move(_E, _T.OK, subject=_O.STALLED, actions=(_A.CLOSE, _A.SEND_FINISH), when=Guard.HUNG_UP),
    Move(_C, subject=_O.STALLED, actions=(*_CUT_SHORT, _A.CONTINUE), when=Guard.MAY_CONTINUE),
    Move(_E, _T.UPSTREAM_ERROR, subject=_O.FAILED, actions=(*_CUT_SHORT, _A.SEND_ERROR)),
)

TRANSITIONS: dict[tuple[ReplyState, ReplyEvent], tuple[Move, ...]] = {
    **_racing(_R, _A.FAIL_REQUEST),
    **_ended_before_adoption(_R),
    (_S, ReplyEvent.SPOKE): (Move(_S),),
    (_S, ReplyEvent.HANGUP_FOUND): (Move(_S),),
    (_S, ReplyEvent.TOOL_CALL_BEGAN): (Move(_S),),
    (_S, ReplyEvent.ERROR_SEEN): (Move(_S),),
    (_S, ReplyEvent.FINISHED): (
        Move(_E, _T.UPSTREAM_ERROR, subject=_O.FAILED, when=Guard.ERROR_SEEN),
        Move(_E, _T.OK, subject=_O.WON),
    ),
    (_S, ReplyEvent.CUT): (
        Move(_C, subject=_O.STALLED, actions=(*_CUT_SHORT, _A.CONTINUE), when=Guard.MAY_CONTINUE),
        Move(_E, _T.UPSTREAM_INCOMPLETE, subject=_O.FAILED, actions=(*_CUT_SHORT, _A.SEND_ERROR)),
    ),
    (_S, ReplyEvent.STALLED): _FAILED_MID_STREAM,
    (_S, ReplyEvent.BROKE): _FAILED_MID_STREAM,
    (_S, ReplyEvent.CLIENT_GONE): (Move(_E, _T.CLIENT_DISCONNECTED, subject=_O.CANCELLED, actions=(_A.CLOSE,)),),
    (_S, ReplyEvent.BARGED_IN): (Move(_E, _T.BARGED_IN, subject=_O.CANCELLED, actions=(_A.CLOSE,)),),
    (_S, ReplyEvent.DRAIN_EXPIRED): (Move(_E, _T.SHUT_DOWN, subject=_O.CANCELLED, actions=(_A.CLOSE, _A.SEND_ERROR)),),
    (_S, ReplyEvent.CALLGATE_FAILED): (Move(_E, _T.ERROR, subject=_O.CANCELLED, actions=(_A.CLOSE, _A.SEND_ERROR)),),
    **_racing(_C, _A.SEND_ERROR),
    **_ended_before_adoption(_C, (_A.SEND_ERROR,)),
    # the status stands: a reply that ended is not ended again by what comes after
    (_E, ReplyEvent.CLIENT_GONE): (Move(_E),),
    (_E, ReplyEvent.BARGED_IN): (Move(_E),),
    (_E, ReplyEvent.DRAIN_EXPIRED): (Move(_E),),
    (_E, ReplyEvent.CALLGATE_FAILED): (Move(_E),),
}


@dataclass(slots=True)
class _Attempt:
    continuation: bool
    outcome: AttemptOutcome | None = None


class ReplyMachine:
    """One reply's state, its facts and its attempts' outcomes; see the module docstring.

    ``stall_ms``: ``routing.stall_ms`` (0: no stall detection); ``continue_on_stall``:
    ``routing.on_stall == "continue"``; ``max_continuations``: how many
    continuations one reply may start.
    """

    __slots__ = (
        "state", "status", "failure", "error", "current", "attempts", "spoke", "hung_up", "tool_call", "error_seen",
        "continuations", "stall_ms", "continue_on_stall", "max_continuations",
    )

    def __init__(self, *, stall_ms: float = 0, continue_on_stall: bool = False, max_continuations: int = 0) -> None:
        self.state = ReplyState.RACING
        self.status: TurnStatus | None = None
        self.failure: str | None = None  # how the upstream failed, when the status says it did
        self.error: str | None = None  # the sentence the turn records
        self.current: int | None = None  # the adopted attempt
        self.attempts: list[_Attempt] = []
        self.spoke = self.hung_up = self.tool_call = self.error_seen = False
        self.continuations = 0
        self.stall_ms, self.continue_on_stall, self.max_continuations = stall_ms, continue_on_stall, max_continuations

    @property
    def ended(self) -> bool:
        """The turn's status is decided."""
        return self.state is ReplyState.ENDED

    @property
    def streaming(self) -> bool:
        """An attempt was adopted at some point: the runtime may have got bytes."""
        return self.current is not None

    def start(self, *, continuation: bool = False) -> int:
        """An attempt begins (:attr:`ReplyEvent.STARTED`); its index."""
        self.on(ReplyInput(ReplyEvent.STARTED))
        self.attempts.append(_Attempt(continuation))
        return len(self.attempts) - 1

    def outcome(self, attempt: int) -> AttemptOutcome | None:
        """The outcome written for ``attempt`` (``None`` while it runs)."""
        return self.attempts[attempt].outcome

    def running(self) -> list[int]:
        """The attempts with no outcome yet."""
        return [i for i, a in enumerate(self.attempts) if a.outcome is None]

    def on(self, inp: ReplyInput) -> tuple[ReplyAction, ...]:
        """Apply ``inp``; the actions the move asks for. Raises :class:`IllegalMove`
        (and changes nothing) when the table has no move for it, or it would adopt or
        fail an attempt that is not running, or write an outcome a second time."""
        moves = TRANSITIONS.get((self.state, inp.event))
        if moves is None:
            raise IllegalMove(self.state, inp.event)
        subject = self._subject(inp)
        if inp.event in (ReplyEvent.WON, ReplyEvent.ATTEMPT_FAILED) and not self._running(subject):
            raise IllegalMove(self.state, inp.event, f"attempt {subject} is not running")
        self._facts(inp)  # only the fact events change facts: their one move has no guard and writes nothing
        move = next(m for m in moves if m.when is None or self._holds(m.when))
        if move.subject is not None and not self._running(subject):
            raise IllegalMove(self.state, inp.event, f"attempt {subject} has its outcome already")
        if move.subject is not None:
            self._write(subject, move.subject)
        if move.others is not None:
            for i in self.running():
                if i != subject:
                    self._write(i, move.others)
        if inp.event is ReplyEvent.WON:
            self._adopt(subject)
        if move.status is not None:
            self.status = move.status
            self.failure = inp.failure if move.status in (TurnStatus.UPSTREAM_ERROR, TurnStatus.UPSTREAM_INCOMPLETE) else None
            self.error = inp.error if inp.error is not None else self.error
        self.state = move.to
        return move.actions

    def note(self, error: str) -> None:
        """Something worth recording about a reply that still went well (the turn's ``error``)."""
        self.error = error

    # -- internals ---------------------------------------------------------------------

    def _subject(self, inp: ReplyInput) -> int:
        """The attempt the event is about (-1: none)."""
        if inp.attempt is not None:
            if not 0 <= inp.attempt < len(self.attempts):
                raise IllegalMove(self.state, inp.event, f"no attempt {inp.attempt}")
            return inp.attempt
        if self.state is ReplyState.STREAMING and self.current is not None:
            return self.current
        return -1

    def _facts(self, inp: ReplyInput) -> None:
        ev = inp.event
        if ev is ReplyEvent.SPOKE:
            self.spoke = True
        elif ev is ReplyEvent.HANGUP_FOUND:
            self.hung_up = True
        elif ev is ReplyEvent.TOOL_CALL_BEGAN:
            self.tool_call = True
        elif ev is ReplyEvent.ERROR_SEEN:
            self.error_seen = True

    def _running(self, attempt: int) -> bool:
        return attempt >= 0 and self.attempts[attempt].outcome is None

    def _adopt(self, attempt: int) -> None:
        if self.state is ReplyState.CONTINUING:
            self.continuations += 1
        self.current, self.spoke = attempt, False

    def _write(self, attempt: int, outcome: AttemptOutcome) -> None:
        a = self.attempts[attempt]
        a.outcome = AttemptOutcome.CONTINUED if outcome is AttemptOutcome.WON and a.continuation else outcome

    def _holds(self, guard: Guard) -> bool:
        if guard is Guard.ERROR_SEEN:
            return self.error_seen
        began = self.spoke and self.stall_ms > 0
        if guard is Guard.HUNG_UP:
            return began and self.hung_up
        return (
            began and self.continue_on_stall and not self.hung_up and not self.tool_call
            and self.continuations < self.max_continuations
        )
