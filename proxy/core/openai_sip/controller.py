"""One speech-to-speech call's controller (sans-IO): sideband events and the server's
feedback in, actions out (:mod:`.actions`). The call's control moves by the table of
:mod:`.table`; what was said goes into turns by :mod:`.turns`.

What it guarantees, whatever the events' order or repeats:

* a function call is answered at most once, keyed by its ``call_id``, and only when it
  is complete (its item ``completed``, its response or delegation ``completed``): an
  interrupted response's calls are recorded as not executed;
* each function call is claimed first (:class:`~.actions.Claim`): another instance
  that sees the same events executes nothing twice;
* a batch (the calls of one response or delegation) gets its outputs, then one
  ``response.create`` — or, when it holds a hangup or transfer, the closing phrase;
* a mapped hangup is acted on once: its ``endword`` (``speak_closing``) is said first,
  ``/hangup`` is sent only after it played (Realtime: ``output_audio_buffer.stopped``
  or ``.cleared`` of that response; a response that never starts audio within
  ``goodbye_grace_ms``; Live: the output transcript quiet for ``goodbye_grace_ms``,
  or ``session.output_audio.fixture.played``), and after ``goodbye_max_ms`` anyway;
* a mapped transfer likewise, after the allow-list and callee checks of text commands
  (:func:`proxy.core.commands.validate`), ``/refer`` to a ``tel:``/``sip:`` URI after its
  ``msg``; a refused one gets an error output the model can speak;
* the call ends once (:class:`~.actions.End`), its turns recorded first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..commands import HANGUP, AnyCommand, Command, RejectedCommand, RejectReason, reject
from ..tool_calls import ToolCall
from . import client
from .actions import (
    Action, Answer, CancelTimer, Claim, Claimed, Emit, End, Latch, LatchState, Output, Record, Rest, RestDone, Resume,
    RunTool, Send, Settings, SidebandLost, StartTimer, Timer, TimerFired, ToolAnswered,
)
from .api import Api, Verb, target_uri
from .events import (
    CallerText, FixturePlayed, FunctionCall, GroupDone, GroupStarted, ModelText, Playback, PlaybackState, SessionClosed,
    SessionInfo, SessionUsage, Truncated, UserItem,
)
from .table import Act, Control, Intent, Phase, Trigger
from .turns import TurnBook
from .usage import TokenUsage, seconds_cost, token_cost

__all__ = ["Controller"]

_DONE = (PlaybackState.STOPPED, PlaybackState.CLEARED)


@dataclass
class _Closing:
    """A hangup or transfer decided: its closing phrase, and what its wait has seen."""

    intent: Intent
    text: str = ""
    target: str = ""
    err_msg: str = ""
    group: str = ""  # Realtime: the response whose playback is awaited
    delegation: str = ""  # Live: the delegation the closing is said for
    awaiting_tag: bool = False  # Realtime: callgate's closing response is not yet created
    waiting: bool = False  # the batch's answer went out: the wait runs


@dataclass
class _Batch:
    group: str
    calls: dict[str, FunctionCall]
    outputs: dict[str, Output | None]  # call_id -> its output (None: the tool webhook's, to come)
    closing: _Closing | None = None


class Controller:
    """See the module docstring. ``resume``: what the database says of a call taken
    over from another instance (:meth:`start` returns what that asks for)."""

    def __init__(self, settings: Settings, resume: Resume | None = None) -> None:
        self.s = settings
        self.live = settings.api is Api.LIVE
        self.control = Control(live=self.live)
        self.book = TurnBook(self.live)
        self.resume = resume or Resume()
        self.seen: set[str] = set(self.resume.answered)  # call_ids claimed, skipped or answered: never again
        self.pending: dict[str, dict[str, FunctionCall]] = {}  # group -> its complete calls so far
        self.batches: list[_Batch] = []
        self.closing: _Closing | None = None
        self.playback: dict[str, PlaybackState] = {}
        self.model, self.backend_model = settings.model, settings.backend_model
        self.seconds: float | None = None
        self.acted: set[Verb] = set()
        self.closed_reason = "socket_closed"
        self._before = Phase.TALKING  # the phase before the last move
        self._claims: dict[str, tuple[FunctionCall, ...]] = {}  # group -> its calls being claimed
        self._n = 0
        self._on: dict[type, Callable[[Any], list[Action]]] = {
            SessionInfo: self._session, FunctionCall: self._call, GroupStarted: self._started, GroupDone: self._done,
            UserItem: lambda e: self._record(self.book.user_item(e.item_id)),
            CallerText: lambda e: self._record(self.book.caller(e.text, e.item_id)), ModelText: self._said,
            Playback: self._playback, Truncated: self._truncated,
            FixturePlayed: lambda e: self._played(Timer.GRACE, force=True), SessionUsage: self._usage,
            SessionClosed: self._session_closed, Claimed: self._claimed, ToolAnswered: self._tool_answered,
            TimerFired: lambda e: self._played(e.timer), RestDone: self._rest_done, SidebandLost: self._lost,
        }

    @property
    def ended(self) -> bool:
        """The call is over."""
        return self.control.phase is Phase.ENDED

    def start(self) -> list[Action]:
        """What a taken-over call's latches ask for (nothing for a new call): a hangup
        already claimed or sent waits (bounded) for the end; one only decided is made
        after ``goodbye_grace_ms`` (the closing phrase was said by the previous owner)."""
        r = self.resume
        hung, referred = r.hangup is not None, r.refer is not None
        self.acted |= {v for v, st in ((Verb.HANGUP, r.hangup), (Verb.REFER, r.refer)) if st is LatchState.SENT}
        if r.hangup in (LatchState.CLAIMED, LatchState.SENT):
            self.control = Control(Phase.HUNG_UP, Intent.HANGUP, True, referred, self.live)
            return [StartTimer(Timer.CLOSE, self.s.goodbye_max_ms)]
        for intent, state in ((Intent.HANGUP, r.hangup), (Intent.TRANSFER, r.refer)):
            if state is LatchState.DECIDED:
                self.control = Control(Phase.CLOSING, intent, hung, referred, self.live)
                self.closing = _Closing(intent, target=r.target if intent is Intent.TRANSFER else "", waiting=True)
                return [StartTimer(Timer.MAX, self.s.goodbye_grace_ms)]
        phase = Phase.TRANSFERRED if r.refer in (LatchState.CLAIMED, LatchState.SENT) else Phase.TALKING
        self.control = Control(phase, Intent.NONE, hung, referred, self.live)
        return []

    def on(self, event: Any) -> list[Action]:
        """One sideband message (:mod:`.events`) or feedback (:mod:`.actions`); the
        actions to carry out, in order. Types it has nothing to do with give none, and
        so does anything after the call ended."""
        handler = None if self.ended else self._on.get(type(event))
        return handler(event) if handler is not None else []

    # -- what the session says -------------------------------------------------------------

    def _session(self, e: SessionInfo) -> list[Action]:
        self.model = e.model or self.model
        return []

    def _call(self, e: FunctionCall) -> list[Action]:
        if e.call_id in self.seen:
            return []
        if not e.complete:
            return self._skip([e], "its response was interrupted")
        self.pending.setdefault(e.group, {})[e.call_id] = e
        return []

    def _skip(self, calls: list[FunctionCall], why: str) -> list[Action]:
        for c in calls:
            if c.call_id not in self.seen:
                self.seen.add(c.call_id)
                self.book.tool({"id": c.call_id, "name": c.name, "arguments": c.arguments, "output": None, "executed": False, "reason": why})
        return []

    def _done(self, e: GroupDone) -> list[Action]:
        self._attempt(e)
        calls = self.pending.pop(e.group, {})
        for c in e.calls:  # response.done's output: the same calls, in case an item event was missed
            if c.complete:
                calls.setdefault(c.call_id, c)
            else:
                self._skip([c], "its response was interrupted")
        fresh = [c for c in calls.values() if c.call_id not in self.seen]
        if e.status != "completed":
            return self._skip(fresh, f"its response ended {e.status}" + (f" ({e.reason})" if e.reason else ""))
        if not fresh or self.ended:
            return []
        self.seen.update(c.call_id for c in fresh)
        self._claims[e.group] = tuple(fresh)
        return [Claim(e.group, tuple(fresh))]

    def _attempt(self, e: GroupDone) -> None:
        if e.usage is None:
            return
        model = e.model or (self.backend_model if self.live else self.model)
        self.book.attempt(self._priced(model, e.usage, {"response_id": e.group, "status": e.status}))

    def _priced(self, model: str, usage: TokenUsage, extra: Mapping[str, Any]) -> dict[str, Any]:
        cost = token_cost(usage, self.s.prices.get(model))
        return {"upstream": "openai_sip", "model": model, "outcome": "won", **extra, "usage": usage.to_json(), "cost_usd": cost}

    def _started(self, e: GroupStarted) -> list[Action]:
        c = self.closing
        if c is not None and c.waiting and c.awaiting_tag and e.tag in (client.CLOSING_TAG, ""):
            c.group, c.awaiting_tag = e.group, False
        return []

    def _said(self, e: ModelText) -> list[Action]:
        self.book.model(e.item_id or e.group or "live", e.text, e.final)
        c = self.closing
        if self.live and c is not None and c.waiting and self.control.phase is Phase.CLOSING and e.text:
            return [StartTimer(Timer.GRACE, self.s.goodbye_grace_ms)]  # quiet this long after its last piece: played
        return []

    def _playback(self, e: Playback) -> list[Action]:
        if self.playback.get(e.group) not in _DONE:
            self.playback[e.group] = e.state
        c = self.closing
        if c is None or not c.waiting or c.group != e.group or self.control.phase is not Phase.CLOSING:
            return []
        return [CancelTimer(Timer.GRACE)] if e.state is PlaybackState.STARTED else self._trigger(Trigger.PLAYED)

    def _truncated(self, e: Truncated) -> list[Action]:
        self.book.truncate(e.item_id, e.audio_end_ms)
        return []

    def _usage(self, e: SessionUsage) -> list[Action]:
        self.seconds = max(self.seconds or 0.0, e.seconds)
        return []

    def _session_closed(self, e: SessionClosed) -> list[Action]:
        if e.seconds is not None:
            self.seconds = max(self.seconds or 0.0, e.seconds)
        self.closed_reason = e.reason
        return self._trigger(Trigger.CLOSED)

    def _lost(self, e: SidebandLost) -> list[Action]:
        self.closed_reason = e.reason
        return self._trigger(Trigger.CLOSED)

    def _record(self, turns: list[Any]) -> list[Action]:
        return [Record(t) for t in turns]

    # -- a batch of function calls ------------------------------------------------------------

    def _claimed(self, e: Claimed) -> list[Action]:
        batch = _Batch(e.group, {}, {})
        acts: list[Action] = []
        for call in self._claims.pop(e.group, ()):
            if call.call_id not in e.won:
                continue  # another instance has it
            batch.calls[call.call_id] = call
            acts += self._decide(call, batch)
        if not batch.calls:
            return acts
        self.batches.append(batch)
        return acts + self._answer_if_ready(batch)

    def _decide(self, call: FunctionCall, batch: _Batch) -> list[Action]:
        cmd = self.s.function_map.command(ToolCall(0, call.call_id, call.name, call.arguments), self.s.transfer_allow)
        if cmd is None:
            return self._unmapped(call, batch)
        if isinstance(cmd, Command):
            cmd, acts = self._control(cmd, batch)
        else:
            acts = []
        if isinstance(cmd, RejectedCommand):
            batch.outputs[call.call_id] = Output(call.call_id, call.name, client.error_output(cmd.closing or cmd.reason, cmd.code))
        else:
            result = "hanging up" if cmd.function == HANGUP else "transferring"
            batch.outputs[call.call_id] = Output(call.call_id, call.name, client.ok_output(result))
        emit = Emit(self.book.current.id, self.book.user_text(), self.book.reply_text(), (cmd,))
        return [emit, *acts]

    def _control(self, cmd: Command, batch: _Batch) -> tuple[AnyCommand, list[Action]]:
        """A valid hangup or transfer: the call's control moves, or it is refused."""
        trigger = Trigger.HANGUP if cmd.function == HANGUP else Trigger.TRANSFER
        if not self.control.allows(trigger):
            return reject(cmd, self._refusal(trigger)), []
        text = cmd.closing if self.s.speak_closing else ""
        target = "" if trigger is Trigger.HANGUP else target_uri(cmd.args.get("callee", "").strip())
        intent = Intent.HANGUP if trigger is Trigger.HANGUP else Intent.TRANSFER
        self.closing = _Closing(intent, text, target, cmd.args.get("err_msg", ""), delegation=batch.group)
        batch.closing = self.closing
        return cmd, self._trigger(trigger)

    def _refusal(self, trigger: Trigger) -> RejectReason:
        if self.ended:
            return RejectReason.CALL_ENDED
        if trigger is Trigger.HANGUP:
            return RejectReason.DUPLICATE_HANGUP if self.control.hung_up else RejectReason.CALL_ENDED
        return RejectReason.AFTER_HANGUP if self.control.hung_up else RejectReason.SECOND_TRANSFER

    def _unmapped(self, call: FunctionCall, batch: _Batch) -> list[Action]:
        try:
            args = json.loads(call.arguments) if call.arguments.strip() else {}
        except ValueError:
            args = None
        if not isinstance(args, dict):
            out = client.error_output("the arguments are not a JSON object", RejectReason.BAD_ARGUMENTS)
        elif not self.s.tool_webhook:
            out = client.error_output(f"no tool named {call.name!r} is available", "no_tool")
        else:
            batch.outputs[call.call_id] = None
            return [RunTool(call)]
        batch.outputs[call.call_id] = Output(call.call_id, call.name, out)
        return []

    def _tool_answered(self, e: ToolAnswered) -> list[Action]:
        for batch in self.batches:
            if batch.outputs.get(e.call_id, "") is None:
                batch.outputs[e.call_id] = Output(e.call_id, batch.calls[e.call_id].name, e.output)
                return self._answer_if_ready(batch)
        return []

    def _answer_if_ready(self, batch: _Batch) -> list[Action]:
        if any(o is None for o in batch.outputs.values()):
            return []
        self.batches.remove(batch)
        outputs = tuple(o for o in batch.outputs.values() if o is not None)
        for o in outputs:
            call = batch.calls[o.call_id]
            self.book.tool({"id": o.call_id, "name": o.name, "arguments": call.arguments, "output": o.output, "executed": True})
        if self.ended:
            return []
        events = [client.function_output(self.s.api, o.call_id, o.output) for o in outputs]
        c = batch.closing
        if c is None:
            events.append(client.response_create(self.s.api, n=self._next()))
        elif c.text:
            events.append(client.commentary(batch.group, c.text, self._next()) if self.live else client.response_create(self.s.api, c.text, self._next()))
        acts: list[Action] = [Answer(outputs, tuple(events))]
        return acts + (self._wait(c, batch.group) if c is not None and c is self.closing else [])

    def _next(self) -> int:
        self._n += 1
        return self._n

    # -- the closing phrase, and acting after it ------------------------------------------------

    def _wait(self, c: _Closing, group: str) -> list[Action]:
        """The closing phrase went out: wait for it to play (at most goodbye_max_ms)."""
        c.waiting = True
        acts: list[Action] = [StartTimer(Timer.MAX, self.s.goodbye_max_ms)]
        if self.live or c.text:
            c.awaiting_tag = bool(c.text) and not self.live
            return acts + ([] if c.text else [StartTimer(Timer.GRACE, self.s.goodbye_grace_ms)])
        c.group = group  # Realtime, nothing more to say: the function call's own response
        state = self.playback.get(group)
        if state in _DONE:
            return acts + self._trigger(Trigger.PLAYED)
        return acts + ([] if state is PlaybackState.STARTED else [StartTimer(Timer.GRACE, self.s.goodbye_grace_ms)])

    def _played(self, timer: Timer, force: bool = False) -> list[Action]:
        """A timer ran out (or a Live fixture played, ``force``)."""
        c, phase = self.closing, self.control.phase
        if timer is Timer.CLOSE:
            return self._trigger(Trigger.WAITED) if phase is Phase.HUNG_UP else []
        if c is None or not c.waiting or phase is not Phase.CLOSING:
            return []
        if timer is Timer.MAX:
            return self._trigger(Trigger.WAITED)
        if force or self.live or self.playback.get(c.group) is not PlaybackState.STARTED:
            return self._trigger(Trigger.PLAYED)
        return []

    def _rest_done(self, e: RestDone) -> list[Action]:
        if e.ok:
            self.acted.add(e.verb)
        return self._trigger(Trigger.ACTED if e.ok else Trigger.ACT_FAILED)

    def _trigger(self, trigger: Trigger) -> list[Action]:
        if not self.control.allows(trigger):
            return []
        self._before = self.control.phase
        self.control, acts = self.control.on(trigger)
        out: list[Action] = []
        for act in acts:
            out += self._carry(act)
        return out

    def _carry(self, act: Act) -> list[Action]:
        c = self.closing
        verb = Verb.REFER if c is not None and c.intent is Intent.TRANSFER else Verb.HANGUP
        if act is Act.LATCH:
            return [Latch(verb, c.target if c is not None else "")]
        if act in (Act.HANGUP, Act.REFER):
            return [CancelTimer(Timer.GRACE), CancelTimer(Timer.MAX), Rest(verb, c.target if c is not None else "")]
        if act is Act.WAIT_CLOSE:
            return [StartTimer(Timer.CLOSE, self.s.goodbye_max_ms)]
        if act is Act.SAY_ERROR:
            return self._say_error(c)
        return self._end()

    def _say_error(self, c: _Closing | None) -> list[Action]:
        if c is None or not c.err_msg:
            return []
        event = client.commentary(c.delegation, c.err_msg, self._next()) if self.live else client.response_create(self.s.api, c.err_msg, self._next())
        return [Send((event,))]

    def _end(self) -> list[Action]:
        if self.seconds is not None:
            price = self.s.prices.get(self.model)
            self.book.attempt({
                "upstream": "openai_sip", "model": self.model, "outcome": "won", "usage": {"seconds": self.seconds},
                "cost_usd": seconds_cost(self.seconds, price),
            })
        out_for = self.control.intent if self._before in (Phase.ACTING, Phase.HUNG_UP) else None  # a REST call out when it ended
        hung_up = Verb.HANGUP in self.acted or out_for is Intent.HANGUP
        transferred = Verb.REFER in self.acted or out_for is Intent.TRANSFER
        reason = "agent_hangup" if hung_up else "transferred" if transferred else self.closed_reason
        out: list[Action] = [CancelTimer(t) for t in Timer]
        return out + self._record(self.book.close()) + [End(reason)]
