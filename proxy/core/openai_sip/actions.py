"""What the controller asks the server to do (actions), and what the server tells it
back (feedback), as frozen records; the turn it records; the latch states.

Actions, in the order a controller returns them, are carried out in that order:

==================  ====================================================================
:class:`Send`       client events to send on the sideband
:class:`Claim`      claim these function calls (by ``call_id``) in the database; answer
                    :class:`Claimed` with the ones won
:class:`RunTool`    an unmapped call to ``tool_webhook``; answer :class:`ToolAnswered`
:class:`Answer`     the outputs of a batch: store each (keyed by ``call_id``), then send
                    ``events`` (the outputs and one continuation)
:class:`Emit`       control events for the commands, in the turn ``turn``
:class:`Latch`      a hangup or refer decided: recorded before anything is said
:class:`Rest`       ``POST …/hangup`` or ``…/refer``, after claiming its latch (never
                    twice); answer :class:`RestDone`
:class:`StartTimer` (re)start a timer; answer :class:`TimerFired` when it runs out
:class:`CancelTimer`
:class:`Record`     a finished turn for the call record
:class:`End`        end the call once (``reason``), after its turns are recorded
==================  ====================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..commands import AnyCommand
from ..function_map import FunctionMap
from .api import Api, Verb
from .events import FunctionCall
from .usage import SipPrice

__all__ = [
    "Action", "Answer", "CancelTimer", "Claim", "Claimed", "Emit", "End", "Feedback", "Latch", "LatchState", "Output",
    "Record", "Rest", "RestDone", "Resume", "RunTool", "Send", "Settings", "SidebandLost", "SipTurn", "StartTimer", "Timer",
    "TimerFired", "ToolAnswered",
]


class LatchState(StrEnum):
    """A call's hangup or refer, as the database keeps it (at most one of each)."""

    DECIDED = "decided"  # the model's function call was accepted; its closing phrase plays
    CLAIMED = "claimed"  # the REST call is being made (an owner that dies here leaves it: ambiguous, never retried)
    SENT = "sent"  # OpenAI answered 2xx (an "accepted" ack, not the SIP outcome)
    FAILED = "failed"  # it answered otherwise, or not at all


class Timer(StrEnum):
    """The controller's timers."""

    GRACE = "grace"  # goodbye_grace_ms: Live's quiet output, Realtime's wait for audio to start
    MAX = "max"  # goodbye_max_ms: the longest a closing phrase is waited for
    CLOSE = "close"  # after a Live hangup: the longest session.closed is waited for


@dataclass(frozen=True, slots=True)
class Output:
    """The output of function call ``call_id`` (``name``), as sent."""

    call_id: str
    name: str
    output: str


@dataclass(frozen=True, slots=True)
class SipTurn:
    """One turn: what the caller said (``user_text``), what the model said
    (``raw_text``; ``spoken_text`` cut where a barge-in truncated it), the function
    calls (``{"id", "name", "arguments", "output", "executed"}``), ``attempts`` (one
    per response with its ``usage`` and ``cost_usd``), ``interrupted`` (barged in).
    ``id`` numbers the turns of a controller from 1."""

    id: int
    user_text: str
    raw_text: str
    spoken_text: str
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    attempts: tuple[Mapping[str, Any], ...] = ()
    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class Resume:
    """What the database says of a call another instance owned: its latches, the
    function calls already answered, the transfer's target."""

    hangup: LatchState | None = None
    refer: LatchState | None = None
    answered: frozenset[str] = frozenset()
    target: str = ""


@dataclass(frozen=True)
class Settings:
    """What a controller needs of the config: the API, the profile's FunctionMap,
    ``transfer_allow`` and ``speak_closing``, the waits (ms), whether ``tool_webhook``
    is set, the session's model and (Live) its backend's, the prices by model."""

    api: Api
    function_map: FunctionMap
    transfer_allow: tuple[str, ...] = ()
    speak_closing: bool = True
    goodbye_grace_ms: float = 800.0
    goodbye_max_ms: float = 15_000.0
    tool_webhook: bool = False
    model: str = ""
    backend_model: str = ""
    prices: Mapping[str, SipPrice] = field(default_factory=dict)


# -- actions --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Send:
    """Client events to send, in order."""

    events: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class Claim:
    """The function calls of ``group`` to claim (a call is executed by one instance only)."""

    group: str
    calls: tuple[FunctionCall, ...]


@dataclass(frozen=True, slots=True)
class RunTool:
    """An unmapped function call, for ``tool_webhook``."""

    call: FunctionCall


@dataclass(frozen=True, slots=True)
class Answer:
    """A batch's outputs to store, then ``events`` to send (the outputs, then at most
    one continuation)."""

    outputs: tuple[Output, ...]
    events: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class Emit:
    """Commands that become control events, in turn ``turn`` (``user_text`` and
    ``reply_text``: that turn's so far)."""

    turn: int
    user_text: str
    reply_text: str
    commands: tuple[AnyCommand, ...]


@dataclass(frozen=True, slots=True)
class Latch:
    """A hangup or refer was decided (``target``: the refer's URI)."""

    verb: Verb
    target: str = ""


@dataclass(frozen=True, slots=True)
class Rest:
    """``POST …/hangup`` or ``…/refer {"target_uri": target}``, once per call."""

    verb: Verb
    target: str = ""


@dataclass(frozen=True, slots=True)
class StartTimer:
    """(Re)start ``timer``: it fires after ``ms`` (ms)."""

    timer: Timer
    ms: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Stop ``timer`` if it runs."""

    timer: Timer


@dataclass(frozen=True, slots=True)
class Record:
    """A finished turn."""

    turn: SipTurn


@dataclass(frozen=True, slots=True)
class End:
    """End the call, once, with ``reason``."""

    reason: str


Action = Send | Claim | RunTool | Answer | Emit | Latch | Rest | StartTimer | CancelTimer | Record | End

# -- feedback ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    """Of a :class:`Claim`, the ``call_id`` s this instance won."""

    group: str
    won: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class ToolAnswered:
    """``tool_webhook``'s answer to a call (or the error output in its place)."""

    call_id: str
    output: str


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer ran out."""

    timer: Timer


@dataclass(frozen=True, slots=True)
class RestDone:
    """A :class:`Rest` was answered: ``ok`` (2xx, or the call gone already), the HTTP
    ``status`` (``None``: no answer)."""

    verb: Verb
    ok: bool
    status: int | None = None


@dataclass(frozen=True, slots=True)
class SidebandLost:
    """The sideband is gone for good (it could not be attached again): the call's end
    (Realtime: the caller hung up)."""

    reason: str = "socket_closed"


Feedback = Claimed | ToolAnswered | TimerFired | RestDone | SidebandLost
