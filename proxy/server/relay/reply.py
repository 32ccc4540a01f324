"""One reply in flight: the attempts racing for it, the one it adopted, what goes to
the runtime, its commands, timings, and how it went.

:meth:`Reply.run` walks the reply once, from the race's winner to its end: the
adopted attempt's events through its inspector (each JSON decoded once), the
outputs (:mod:`proxy.core.outputs`) handed to a :class:`Sink` (the HTTP response's
SSE encoder, or a front door taking the speech), commands handed to the registry as
they come. The reply's state machine (:class:`~proxy.core.reply.ReplyMachine`) is fed
every event (an attempt won, spoke, finished, stalled, broke, was cut; the runtime
went away; the caller barged in; the drain ran out; callgate failed) and alone
decides the turn's status and each attempt's outcome; this module carries out what it
answers: close connections, continue after a stall (the next upstream, after what
the runtime received; a continuation's chunks carry the first attempt's chunk ``id``
and no ``role``), or send the runtime an error event or a finish and ``[DONE]``.

A stall is ``routing.stall_ms`` of silence after speech began (with ``on_stall:
continue`` it is continued, with ``error`` the runtime gets the error event). Each
adopted attempt has its own inspector; the turn's texts are theirs joined in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiohttp

from ...calls.events import ControlEvent, HangupEvent, TransferEvent
from ...calls.model import Call, Turn, TurnOutcome
from ...core import json_codec
from ...core.commands import HANGUP, TRANSFER, AnyCommand, Command
from ...core.inspector import InvalidChunk, ReplyInspector
from ...core.gaps import SpeechGaps
from ...core.outputs import DONE, CommandFound, Forward, Output, Rewrite, Speech, commands_of, continued, finish
from ...core.profile import Profile
from ...core.reply import ERROR_CODES, ReplyAction, ReplyEvent, ReplyInput, ReplyMachine, ReplyState, TurnStatus
from ...core.sse import SSEDecodeError, SSEEvent
from ...errors import UpstreamError, UpstreamFailure, openai_error_body
from ...metrics import ADDED_TTFB, CHUNKS, UPSTREAM_STALLS, UPSTREAM_TTFB, labelled
from ...telemetry import TurnEvent
from ..services import Services
from .attempt import Attempt
from .pump import Pump, Stalled
from .race import Race
from .record import turn_outcome
from .stream import Sink

__all__ = ["Reply", "Sink", "new_machine"]

log = logging.getLogger("callgate.relay")

_UPSTREAM_FAILURES = (aiohttp.ClientError, TimeoutError, SSEDecodeError, InvalidChunk)
_DONE = Forward(SSEEvent(DONE, "[DONE]"))
_MESSAGES = {
    TurnStatus.UPSTREAM_ERROR: ("upstream failed during the stream: {error}", "upstream_error"),
    TurnStatus.UPSTREAM_INCOMPLETE: ("the upstream's stream ended before the reply was complete", "upstream_error"),
    TurnStatus.SHUT_DOWN: ("callgate is shutting down; the reply was cut", "server_error"),
    TurnStatus.ERROR: ("callgate failed during the stream", "server_error"),
}


def new_machine(s: Services) -> ReplyMachine:
    """A reply's state machine under ``routing:``."""
    r = s.config.routing
    return ReplyMachine(stall_ms=r.stall_ms or 0, continue_on_stall=r.on_stall == "continue", max_continuations=r.max_attempts)


class Reply:
    """See the module docstring. ``started``: ``perf_counter()`` when the request was
    read (times in the outcome are ms from then). ``gone``: what the turn records when
    the other side goes away; ``cancelled_by``: set before cancelling the reply's task
    (a front door: ``BARGED_IN`` or ``CLIENT_GONE``)."""

    def __init__(
        self, s: Services, profile: Profile, call: Call, turn: Turn, started: float, race: Race, machine: ReplyMachine,
        sink: Sink, *, gone: str = "the client closed the connection",
    ) -> None:
        self.s, self.call, self.turn, self.race, self.machine, self.sink = s, call, turn, race, machine, sink
        self.profile = profile.name
        self.inspector = ReplyInspector(profile.settings)  # until an attempt is adopted
        self.segments: list[ReplyInspector] = []
        self.current: Attempt | None = None
        self.events: list[ControlEvent] = []  # the control events of its commands
        self.transferred = False  # a transfer was acted on: a continuation may not transfer again
        self.started = started
        self.ttft_ms: float | None = None
        self.upstream_first = 0.0  # perf_counter() at the upstream's first byte
        self.client_first = False  # the client got its first byte
        self.chunks = labelled(CHUNKS, profile.name)
        self.relayed = 0  # SSE events read from the adopted attempt, not yet counted in the metric
        self.gone = gone
        self.cancelled_by = ReplyEvent.CLIENT_GONE
        self.heard: str | None = None  # what the caller heard, when the platform said (a front door's barge-in)
        self.span = race.span  # the turn's span (a no-op when traces are off)
        self.gaps = SpeechGaps()  # dead air: the longest silence between two pieces of speech sent
        r = s.config.routing
        self.stall_s = r.stall_ms / 1000 if r.stall_ms else None
        race.bind(profile.settings, s.registry.hangup_policy(call))

    # -- the walk ------------------------------------------------------------------------

    async def run(self, first: asyncio.Future[Attempt]) -> None:
        """The reply from the race's winner to its end (see the module docstring).
        Raises the race's :class:`~proxy.errors.UpstreamError` when nothing was sent
        (the runtime gets it as the answer), and :class:`asyncio.CancelledError`."""
        try:
            await self._walk(first)
        except ConnectionError:
            self._end(ReplyEvent.CLIENT_GONE, error=self.gone)
        except asyncio.CancelledError:
            first.cancel()
            if not (self.s.drain.expired and self.machine.streaming):
                self._end(ReplyEvent.DRAIN_EXPIRED if self.s.drain.expired else self.cancelled_by, error=self._cut_why())
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # callgate's own cancel, answered here
            await self._finally(self._end(ReplyEvent.DRAIN_EXPIRED, error=self._cut_why()))
        except UpstreamError:
            raise
        except Exception as e:
            log.exception("relay failed mid-reply call_id=%s", self.call.call_id)
            await self._finally(self._end(ReplyEvent.CALLGATE_FAILED, error=f"{type(e).__name__}: {e}"))

    async def _walk(self, first: asyncio.Future[Attempt]) -> None:
        try:
            attempt = await first
        except UpstreamError as e:
            self._end(ReplyEvent.GAVE_UP, failure=e.failure, error=str(e))
            raise
        await self._adopt(attempt, first=True)
        if attempt.whole is not None:
            return await self._whole(attempt)
        while True:
            event, failure, error = await self._stream(attempt)
            actions = self._end(event, failure=failure, error=error)
            if ReplyAction.CONTINUE not in actions:
                await self._finally(actions)
                return
            nxt = await self._continue(attempt)
            if nxt is None:
                return
            attempt = nxt

    async def _whole(self, attempt: Attempt) -> None:
        assert attempt.whole is not None
        out, cmds = self.inspector.inspect_completion(attempt.whole, attempt.whole_json)
        self.commands(cmds)
        await self.sink.whole(attempt, out)
        self._end(ReplyEvent.FINISHED)
        self.sent()

    async def _adopt(self, attempt: Attempt, *, first: bool = False) -> None:
        """``attempt`` won: it is read on from here; what it held goes out."""
        held = attempt.take_held()
        self.current, self.inspector = attempt, attempt.inspector or self.inspector
        self.segments.append(self.inspector)
        if attempt.first_byte_at is not None:
            self.first_byte(attempt.first_byte_at)
        if attempt.first_token_ms is not None:
            self._on(ReplyEvent.SPOKE)
        if first:
            await self.sink.open(attempt)
        if held:
            await self._emit(held)

    async def _stream(self, attempt: Attempt) -> tuple[ReplyEvent, str | None, str | None]:
        """The adopted attempt read to its end; how it ended: ``(event, failure, error)``."""
        try:
            await self._read_all(attempt)
        except Stalled:
            attempt.error = "stalled"
            return ReplyEvent.STALLED, UpstreamFailure.STALLED, f"the upstream's speech went silent for {self.s.config.routing.stall_ms} ms"
        except _UPSTREAM_FAILURES as e:
            attempt.error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            if isinstance(e, TimeoutError):
                return ReplyEvent.BROKE, UpstreamFailure.TIMEOUT, f"upstream sent nothing for {attempt.entry.timeout_s} s"
            return ReplyEvent.BROKE, UpstreamFailure.STREAM_ERROR, attempt.error
        ins = self.inspector
        if ins.saw_done or ins.saw_finish:
            tail = ins.close()
            if not ins.saw_done:  # finished, but without the last line: the runtime gets it
                self.machine.note("the upstream sent no [DONE]")
                tail.append(_DONE)
            if tail:
                await self._emit(tail)
            await self.sink.close()
            if ins.upstream_error is not None:
                self._on(ReplyEvent.ERROR_SEEN)
                return ReplyEvent.FINISHED, UpstreamFailure.STREAM_ERROR, json_codec.dumps(ins.upstream_error).decode()
            return ReplyEvent.FINISHED, None, None
        attempt.error = "the stream ended with no finish_reason and no [DONE]"
        return ReplyEvent.CUT, UpstreamFailure.INCOMPLETE, "the upstream's stream ended with no finish_reason and no [DONE]"

    async def _read_all(self, attempt: Attempt) -> None:
        """Upstream reads in, outputs out, one send per read: taken in the connection's
        callback once speech began and while the sink can write at once (:mod:`.pump`),
        else here."""
        assert attempt.resp is not None
        pump = Pump(attempt.resp, self._forward, stall_s=self.stall_s, spoke=self._spoke, read_timeout_s=attempt.entry.timeout_s)
        try:
            while data := await pump.read():
                items, bad = self._take(attempt, data)
                if items:
                    await self._emit(items)
                if bad is not None:
                    raise bad
        finally:
            pump.stop()
            self.chunks.inc(self.relayed)  # counted once per attempt, not per read
            self.relayed = 0
        items = [o for e in attempt.decoder.close() for o in self.inspector.feed(e)]
        if items:
            await self._emit(items)

    def _spoke(self) -> bool:
        return self.machine.spoke

    def _forward(self, data: bytes) -> bool:
        """One read of the adopted attempt taken whole in the connection's callback;
        ``False`` (nothing done) before speech began or while the sink cannot write at
        once: the task takes it."""
        attempt = self.current
        if attempt is None or not self.machine.spoke or not self.sink.ready():
            return False
        items, bad = self._take(attempt, data)
        if items:
            self.sink.send_now(self._prepare(items))
            if not self.client_first:
                self.sent()
        if bad is not None:
            raise bad
        return True

    def _take(self, attempt: Attempt, data: bytes) -> tuple[list[Output], InvalidChunk | None]:
        """One read decoded and inspected: its outputs, and the bad chunk that ended
        it (what came before a bad chunk still goes out before the error does)."""
        if self.ttft_ms is None:
            attempt.first_byte()
            self.first_byte(attempt.first_byte_at)
        events = attempt.decoder.feed(data)
        self.relayed += len(events)
        if len(events) == 1:
            items = self.inspector.feed(events[0])
        else:
            items = []
            for event in events:
                try:
                    items += self.inspector.feed(event)
                except InvalidChunk as e:
                    return items, e
        if not self.machine.spoke and attempt.speakable():
            attempt.spoke()
            self.race.spoke(attempt)
            self._on(ReplyEvent.SPOKE)
        return items, None

    def _prepare(self, items: list[Output]) -> list[Output]:
        """Outputs of the adopted attempt on their way to the sink: commands acted on,
        the time speech went out (dead air), a continuation's chunks made the first
        attempt's."""
        spoke = found = False
        for o in items:
            kind = type(o)
            spoke = spoke or kind is Speech
            found = found or kind is CommandFound
        if spoke:
            self.gaps.piece(time.monotonic())  # one read goes out at once: one time for all its speech
        if found:
            self.commands(commands_of(items))
        if self.current is not None and self.current.continuation:
            items = continued(items, self.segments[0].chunk_id)
        return items

    async def _emit(self, items: list[Output]) -> None:
        """Outputs of the adopted attempt to the sink (:meth:`_prepare`)."""
        await self.sink.send(self._prepare(items))
        if not self.client_first:
            self.sent()

    async def _continue(self, stalled: Attempt) -> Attempt | None:
        """The next upstream carries on after what was heard; ``None`` when none could
        (the runtime got the error event)."""
        UPSTREAM_STALLS.inc()
        log.warning("upstream %s stalled mid-speech call_id=%s: continuing", stalled.name, self.call.call_id)
        self.span.event(TurnEvent.STALL, {"callgate.upstream": stalled.name})
        self.span.event(TurnEvent.CONTINUATION, {"callgate.heard_chars": len(self.spoken_text)})
        try:
            nxt = await self.race.continuation(stalled, self.spoken_text, self.transferred)
        except UpstreamError as e:
            await self._finally(self._end(ReplyEvent.GAVE_UP, failure=e.failure, error=str(e)))
            return None
        await self._adopt(nxt)
        return nxt

    async def _finally(self, actions: tuple[ReplyAction, ...]) -> None:
        """The last things the machine asked for: an error event, or a finish, then ``[DONE]``."""
        if ReplyAction.SEND_ERROR in actions:
            message, kind = _MESSAGES[self.machine.status or TurnStatus.ERROR]
            body = openai_error_body(message.format(error=self.machine.error), type=kind, code=ERROR_CODES[self.machine.status or TurnStatus.ERROR])
            await self._last(Rewrite(body))
        elif ReplyAction.SEND_FINISH in actions:
            UPSTREAM_STALLS.inc()
            self.machine.note(f"the upstream stalled after a command was acted on; the reply was ended ({self.current and self.current.error})")
            await self._last(None if self.inspector.saw_finish else finish(self.segments[0].chunk_id))

    async def _last(self, item: Output | None) -> None:
        with contextlib.suppress(ConnectionError):
            tail = self.inspector.close()
            if tail:
                await self._emit(tail)
            await self.sink.send([item, _DONE] if item is not None else [_DONE])
            await self.sink.close()

    # -- the machine -----------------------------------------------------------------------

    def _on(self, event: ReplyEvent) -> None:
        self.race.carry_out(self.machine.on(ReplyInput(event)), self.current)

    def _end(self, event: ReplyEvent, *, failure: str | None = None, error: str | None = None) -> tuple[ReplyAction, ...]:
        """Feed an event that may end the reply; the pool's part carried out."""
        if event in (ReplyEvent.STALLED, ReplyEvent.BROKE, ReplyEvent.CUT) and self.inspector.tool_calls:
            self._on(ReplyEvent.TOOL_CALL_BEGAN)
        actions = self.machine.on(ReplyInput(event, failure=failure, error=error))
        self.race.carry_out(actions, self.current)
        if self.machine.ended and self.machine.status in (TurnStatus.UPSTREAM_ERROR, TurnStatus.UPSTREAM_INCOMPLETE) and event is not ReplyEvent.GAVE_UP:
            log.warning("upstream failed mid-stream call_id=%s error=%s", self.call.call_id, error)
        return actions

    def _cut_why(self) -> str:
        if self.s.drain.expired:
            return f"callgate shut down: the drain ({self.s.config.server.drain_s} s) was over"
        return "the caller spoke again" if self.cancelled_by is ReplyEvent.BARGED_IN else self.gone

    # -- commands, texts, timings ------------------------------------------------------------

    def commands(self, cmds: list[AnyCommand]) -> None:
        """Hand the reply's commands to the registry (they become control events)."""
        if not cmds:
            return
        for cmd in cmds:
            if cmd.function == HANGUP and self.machine.state is ReplyState.STREAMING:
                self._on(ReplyEvent.HANGUP_FOUND)
            if cmd.function == TRANSFER and isinstance(cmd, Command):
                self.transferred = True
        events = self.s.registry.add_commands(self.call, self.turn, cmds, self.spoken_text)
        self.events += events
        for e in events:
            self.span.control_event(
                e.type, event_id=e.id, function=getattr(e, "function", None) or e.type, source=e.source,
                code=getattr(e, "code", None), args=getattr(e, "attrs", None),
            )

    @property
    def spoken_text(self) -> str:
        """What the runtime received as content, every adopted attempt's."""
        return "".join(seg.spoken_text for seg in self.segments) if len(self.segments) > 1 else self.inspector.spoken_text

    @property
    def hangup(self) -> HangupEvent | None:
        """The hangup acted on in this reply."""
        return next((e for e in self.events if isinstance(e, HangupEvent)), None)

    @property
    def transfer(self) -> TransferEvent | None:
        """The transfer acted on in this reply."""
        return next((e for e in self.events if isinstance(e, TransferEvent)), None)

    def first_byte(self, at: float | None = None) -> None:
        """The upstream's first byte came (``at``: its ``perf_counter()``): the time to it is measured."""
        if self.ttft_ms is None:
            self.upstream_first = at or time.perf_counter()
            self.ttft_ms = round((self.upstream_first - self.started) * 1000, 3)
            labelled(UPSTREAM_TTFB, self.profile).observe(self.upstream_first - self.started)

    def sent(self) -> None:
        """The client got bytes: the first time, what callgate added is measured."""
        if not self.client_first:
            self.client_first = True
            labelled(ADDED_TTFB, self.profile).observe(time.perf_counter() - self.upstream_first)

    def outcome(self) -> TurnOutcome:
        """The turn's outcome, as the machine decided it (:func:`~.record.turn_outcome`);
        a reply that escaped its walk unended is callgate's failure."""
        if not self.machine.ended:
            self._end(ReplyEvent.CALLGATE_FAILED, error=self.machine.error or "callgate failed mid-reply")
        outcome = turn_outcome(self)
        self.span.content(user_text=self.turn.user_text, speech=outcome.spoken_text, tool_calls=outcome.tool_calls)
        self.span.end(outcome.status, ttft_ms=outcome.ttft_ms, speech_gap_max_ms=outcome.speech_gap_max_ms, error=self.machine.failure)
        return outcome
