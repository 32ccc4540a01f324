"""A call's lifecycle as a state machine (sans-IO): states, events, one table.

A call is in one of four states (:class:`CallState`)::

    ACTIVE ──hangup accepted──▶ HUNG_UP ──window elapsed──▶ ENDING ──end written──▶ ENDED
      │                           │  ▲                        │  ▲
      └──end asked / limits───────┴──┼────────────────────────┘  │
                                     └──end failed (hung up)─────┘

* ``ACTIVE``: turns come and go;
* ``HUNG_UP``: the model's hangup was accepted; once no reply is in flight the
  goodbye window runs (``end_function.after_hangup_s``), and a request inside it is a
  turn of the call (the runtime's goodbye turn), which stops the window;
* ``ENDING``: the end is being written (``call.ended`` and the end function's jobs);
  a new request for the call id begins the next call;
* ``ENDED``: written; it never reopens.

The events (:class:`CallEvent`) move it; a move may ask for actions
(:class:`Action`: start or cancel the window, end the call) which the call
domain carries out. :data:`TRANSITIONS` is the whole table: ``(state, event)`` to
the moves tried in order, each with an optional guard (:class:`Guard`) on the
facts a :class:`Lifecycle` keeps besides its state (replies in flight, whether a
hangup was accepted). A pair missing from the table is an illegal move:
:class:`IllegalMove`. Modelled on h11's connection state machine.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

__all__ = ["TRANSITIONS", "Action", "CallEvent", "CallState", "Guard", "IllegalMove", "Lifecycle", "Move"]


class CallState(StrEnum):
    """Where a call stands (see the module docstring)."""

    ACTIVE = "active"
    HUNG_UP = "hung_up"
    ENDING = "ending"
    ENDED = "ended"


class CallEvent(StrEnum):
    """What happens to a call."""

    TURN_BEGAN = "turn_began"  # a chat completion request of the call arrived
    HANGUP_ACCEPTED = "hangup_accepted"  # the model's hangup was accepted (choice 0)
    TURN_FINISHED = "turn_finished"  # a reply of the call is over
    WINDOW_ELAPSED = "window_elapsed"  # the goodbye window after a hangup ran out
    END_ASKED = "end_asked"  # the call layer, the sweep or an anonymous call's reply ends it
    LIMITS_REACHED = "limits_reached"  # a bound of ``limits:`` was passed
    END_WRITTEN = "end_written"  # the end committed
    END_FAILED = "end_failed"  # writing the end failed: the call is as it was
    ENDED_ELSEWHERE = "ended_elsewhere"  # another instance (or an earlier write) ended it


class Action(StrEnum):
    """What a move asks the call domain to do."""

    START_WINDOW = "start_window"
    CANCEL_WINDOW = "cancel_window"
    END_CALL = "end_call"


class Guard(StrEnum):
    """A condition on a :class:`Lifecycle`'s facts, checked after the event's own
    effect on them (a finished turn no longer counts as in flight)."""

    IDLE = "idle"  # no reply in flight
    BUSY = "busy"  # a reply in flight
    HUNG_UP = "hung_up"  # a hangup was accepted


@dataclass(frozen=True, slots=True)
class Move:
    """One row of the table: go to ``to`` and ask for ``actions``, when ``when``
    holds (always, when it is ``None``)."""

    to: CallState
    actions: tuple[Action, ...] = ()
    when: Guard | None = None


class IllegalMove(Exception):
    """An event the table has no move for in the call's state (an ended call asked
    to begin a turn, a turn finished that never began, a second hangup)."""

    def __init__(self, state: CallState, event: CallEvent) -> None:
        super().__init__(f"{event} is not a legal move of a call that is {state}")
        self.state = state
        self.event = event


_A, _H, _G, _E = CallState.ACTIVE, CallState.HUNG_UP, CallState.ENDING, CallState.ENDED
_END = (Action.CANCEL_WINDOW, Action.END_CALL)

TRANSITIONS: dict[tuple[CallState, CallEvent], tuple[Move, ...]] = {
    (_A, CallEvent.TURN_BEGAN): (Move(_A),),
    (_A, CallEvent.HANGUP_ACCEPTED): (Move(_H, (Action.START_WINDOW,), Guard.IDLE), Move(_H)),
    (_A, CallEvent.TURN_FINISHED): (Move(_A),),
    (_A, CallEvent.END_ASKED): (Move(_G, _END),),
    (_A, CallEvent.LIMITS_REACHED): (Move(_G, _END),),
    (_A, CallEvent.ENDED_ELSEWHERE): (Move(_E, (Action.CANCEL_WINDOW,)),),
    (_H, CallEvent.TURN_BEGAN): (Move(_H, (Action.CANCEL_WINDOW,)),),
    (_H, CallEvent.TURN_FINISHED): (Move(_H, (Action.START_WINDOW,), Guard.IDLE), Move(_H)),
    (_H, CallEvent.WINDOW_ELAPSED): (Move(_G, _END, Guard.IDLE), Move(_H)),
    (_H, CallEvent.END_ASKED): (Move(_G, _END),),
    (_H, CallEvent.LIMITS_REACHED): (Move(_G, _END),),
    (_H, CallEvent.ENDED_ELSEWHERE): (Move(_E, (Action.CANCEL_WINDOW,)),),
    (_G, CallEvent.TURN_FINISHED): (Move(_G),),
    (_G, CallEvent.END_ASKED): (Move(_G),),  # already ending: no second end
    (_G, CallEvent.LIMITS_REACHED): (Move(_G),),
    (_G, CallEvent.WINDOW_ELAPSED): (Move(_G),),
    (_G, CallEvent.END_WRITTEN): (Move(_E),),
    (_G, CallEvent.END_FAILED): (Move(_H, (), Guard.HUNG_UP), Move(_A)),
    (_G, CallEvent.ENDED_ELSEWHERE): (Move(_E),),
    (_E, CallEvent.TURN_FINISHED): (Move(_E),),  # a reply that outlived its call's end
    (_E, CallEvent.END_ASKED): (Move(_E),),
    (_E, CallEvent.LIMITS_REACHED): (Move(_E),),
    (_E, CallEvent.WINDOW_ELAPSED): (Move(_E),),
    (_E, CallEvent.ENDED_ELSEWHERE): (Move(_E),),
}


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """A call's state and the facts its guards read: ``in_flight`` (replies being
    served on this process) and ``hung_up`` (a hangup was accepted). Frozen:
    :meth:`on` returns the next one."""

    state: CallState = CallState.ACTIVE
    in_flight: int = 0
    hung_up: bool = False

    def on(self, event: CallEvent) -> tuple[Lifecycle, tuple[Action, ...]]:
        """The lifecycle after ``event`` and the actions the move asks for. Raises
        :class:`IllegalMove` when the table has no move for it."""
        moves = TRANSITIONS.get((self.state, event))
        facts = self._facts(event)
        if moves is None or facts is None:
            raise IllegalMove(self.state, event)
        for move in moves:
            if move.when is None or facts._holds(move.when):
                return replace(facts, state=move.to), move.actions
        raise IllegalMove(self.state, event)  # a table whose last move has a guard

    def allows(self, event: CallEvent) -> bool:
        """Whether ``event`` is a legal move now."""
        return (self.state, event) in TRANSITIONS and self._facts(event) is not None

    @property
    def ended(self) -> bool:
        """Ending or ended: a new request for the call id begins the next call."""
        return self.state in (CallState.ENDING, CallState.ENDED)

    def _facts(self, event: CallEvent) -> Lifecycle | None:
        """The facts after the event's own effect; ``None`` when it cannot have one
        (a turn finished while none was in flight, a second hangup)."""
        if event is CallEvent.TURN_BEGAN:
            return replace(self, in_flight=self.in_flight + 1)
        if event is CallEvent.TURN_FINISHED:
            return replace(self, in_flight=self.in_flight - 1) if self.in_flight > 0 else None
        if event is CallEvent.HANGUP_ACCEPTED:
            return None if self.hung_up else replace(self, hung_up=True)
        return self

    def _holds(self, guard: Guard) -> bool:
        if guard is Guard.IDLE:
            return self.in_flight == 0
        if guard is Guard.BUSY:
            return self.in_flight > 0
        return self.hung_up
