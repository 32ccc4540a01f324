"""A speech-to-speech call's control as a state machine (sans-IO): phases, triggers,
one table. Modelled on :mod:`proxy.core.lifecycle`.

::

    TALKING ──hangup/transfer──▶ CLOSING ──played / waited──▶ ACTING ──acted──▶ ENDED (Realtime hangup)
      ▲  ▲                                                     │  │            HUNG_UP (Live hangup) ──closed/waited──▶ ENDED
      │  └────────────────────act failed───────────────────────┘  └─acted────▶ TRANSFERRED (a refer)
      └──────────── (TRANSFERRED: a hangup may still follow) ────────────

* ``TALKING``: the conversation goes on; function calls are answered;
* ``CLOSING``: a hangup or transfer is decided; its closing phrase is playing
  (Realtime: until ``output_audio_buffer.stopped`` of that response; Live: until its
  output transcript is quiet for ``goodbye_grace_ms``, or a fixture played);
* ``ACTING``: its REST call (``/hangup``, ``/refer``) is out;
* ``HUNG_UP``: Live, hung up: ``session.closed`` brings the last usage (bounded wait);
* ``TRANSFERRED``: the refer was accepted; what follows is unconfirmed (reference §9),
  so callgate keeps listening until the call ends;
* ``ENDED``: the call is over (``session.closed``, the Realtime socket gone for good,
  or callgate's own hangup); late events change nothing.

:class:`Facts` beside the phase: ``intent`` (what the closing leads to), ``hung_up``
and ``referred`` (a hangup or refer was decided: never a second one; a failed one is not
tried again, since neither API says what happened on the line). A pair missing from
:data:`TRANSITIONS`, or a second hangup or refer, is an :class:`IllegalMove`
(:meth:`Control.allows` asks first). A move may ask for :class:`Act` s, which the
controller turns into actions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

__all__ = ["TRANSITIONS", "Act", "Control", "Guard", "IllegalMove", "Intent", "Move", "Phase", "Trigger"]


class Phase(StrEnum):
    """Where the call's control stands (see the module docstring)."""

    TALKING = "talking"
    CLOSING = "closing"
    ACTING = "acting"
    HUNG_UP = "hung_up"
    TRANSFERRED = "transferred"
    ENDED = "ended"


class Trigger(StrEnum):
    """What moves it."""

    HANGUP = "hangup"  # a mapped hangup was decided (its function call is this instance's)
    TRANSFER = "transfer"  # a valid transfer was decided
    PLAYED = "played"  # the closing phrase has played
    WAITED = "waited"  # a bounded wait ran out (goodbye_max_ms; the close after a Live hangup)
    ACTED = "acted"  # the REST call was answered 2xx (or the call was gone already)
    ACT_FAILED = "act_failed"  # it failed: logged, not tried again
    CLOSED = "closed"  # the call ended (session.closed; the sideband gone for good)


class Intent(StrEnum):
    """What a closing leads to."""

    NONE = "none"
    HANGUP = "hangup"
    TRANSFER = "transfer"


class Act(StrEnum):
    """What a move asks for."""

    LATCH = "latch"  # record the decision (hangup/refer decided) before anything is said
    HANGUP = "hangup"  # POST …/hangup, latched
    REFER = "refer"  # POST …/refer, latched
    WAIT_CLOSE = "wait_close"  # Live: wait (bounded) for session.closed after the hangup
    SAY_ERROR = "say_error"  # a refer failed: its err_msg is spoken
    END = "end"  # the turns recorded, the call ended once


class Guard(StrEnum):
    """A condition on the facts, after the trigger's own effect on them."""

    HANGUP = "hangup"  # the closing leads to a hangup
    TRANSFER = "transfer"  # … to a transfer
    LIVE = "live"  # the call is on GPT-Live


@dataclass(frozen=True, slots=True)
class Move:
    """One row: go to ``to`` and ask for ``acts`` when ``when`` holds (always, when ``None``)."""

    to: Phase
    acts: tuple[Act, ...] = ()
    when: Guard | None = None


class IllegalMove(Exception):
    """A trigger the table has no move for in this phase (a second hangup, a hangup
    while a transfer's closing plays)."""

    def __init__(self, phase: Phase, trigger: Trigger) -> None:
        super().__init__(f"{trigger} is not a legal move of a call that is {phase}")
        self.phase = phase
        self.trigger = trigger


_T, _C, _A, _H, _X, _E = Phase.TALKING, Phase.CLOSING, Phase.ACTING, Phase.HUNG_UP, Phase.TRANSFERRED, Phase.ENDED
_ACT = (Move(_A, (Act.HANGUP,), Guard.HANGUP), Move(_A, (Act.REFER,)))
_ENDS = (Move(_E, (Act.END,)),)
_STAY = {p: (Move(p),) for p in Phase}

TRANSITIONS: dict[tuple[Phase, Trigger], tuple[Move, ...]] = {
    (_T, Trigger.HANGUP): (Move(_C, (Act.LATCH,)),),
    (_T, Trigger.TRANSFER): (Move(_C, (Act.LATCH,)),),
    (_X, Trigger.HANGUP): (Move(_C, (Act.LATCH,)),),  # a transfer did not end the call: a hangup may follow
    (_C, Trigger.PLAYED): _ACT,
    (_C, Trigger.WAITED): _ACT,
    (_A, Trigger.ACTED): (Move(_H, (Act.WAIT_CLOSE,), Guard.LIVE), Move(_E, (Act.END,), Guard.HANGUP), Move(_X)),
    (_A, Trigger.ACT_FAILED): (Move(_T, (), Guard.HANGUP), Move(_T, (Act.SAY_ERROR,))),
    (_H, Trigger.WAITED): _ENDS,
    **{(p, Trigger.CLOSED): _ENDS for p in (_T, _C, _A, _H, _X)},
    **{(p, t): _STAY[p] for p in (_T, _A, _H, _X) for t in (Trigger.PLAYED, Trigger.WAITED) if (p, t) != (_H, Trigger.WAITED)},
    **{(_E, t): _STAY[_E] for t in Trigger if t not in (Trigger.HANGUP, Trigger.TRANSFER)},  # late events change nothing
}


@dataclass(frozen=True, slots=True)
class Control:
    """The phase and the facts its guards read. Frozen: :meth:`on` returns the next
    one. ``live``: the call is on GPT-Live."""

    phase: Phase = Phase.TALKING
    intent: Intent = Intent.NONE
    hung_up: bool = False
    referred: bool = False
    live: bool = False

    def on(self, trigger: Trigger) -> tuple[Control, tuple[Act, ...]]:
        """The control after ``trigger`` and what the move asks for. Raises
        :class:`IllegalMove`."""
        moves = TRANSITIONS.get((self.phase, trigger))
        facts = self._facts(trigger)
        if moves is None or facts is None:
            raise IllegalMove(self.phase, trigger)
        for move in moves:
            if move.when is None or facts._holds(move.when):
                return replace(facts, phase=move.to), move.acts
        raise IllegalMove(self.phase, trigger)  # a table whose last move has a guard

    def allows(self, trigger: Trigger) -> bool:
        """Whether ``trigger`` is a legal move now."""
        return (self.phase, trigger) in TRANSITIONS and self._facts(trigger) is not None

    def _facts(self, trigger: Trigger) -> Control | None:
        """The facts after the trigger's own effect; ``None`` when it cannot have one
        (a second hangup or refer)."""
        if trigger is Trigger.HANGUP:
            return None if self.hung_up else replace(self, hung_up=True, intent=Intent.HANGUP)
        if trigger is Trigger.TRANSFER:
            return None if self.referred or self.hung_up else replace(self, referred=True, intent=Intent.TRANSFER)
        return self

    def _holds(self, guard: Guard) -> bool:
        if guard is Guard.LIVE:
            return self.live and self.intent is Intent.HANGUP
        if guard is Guard.HANGUP:
            return self.intent is Intent.HANGUP
        return self.intent is Intent.TRANSFER
