"""The attempts of one reply raced across the pool: fallback, hedging, continuations.

:meth:`Race.first` runs attempts in the profile's upstream order until one has
speakable output: a failure that is the upstream's (connect, timeout, 408/409/429/5xx,
a bad or empty stream) moves to the next upstream at once; with
``routing.first_token_ms`` an attempt still silent then gets a hedge (the next
upstream starts as well); the first to speak wins and the others lose (their
connections closed, their commands never acted on). At most
``routing.max_attempts`` start. A request's own error (400, 401, 403, 404, 422) is
relayed at once. When all fail, the last error is raised. :meth:`Race.continuation`
does the same for a reply whose speech stalled, with the continuation request.

The race tells the reply's state machine (:class:`~proxy.core.reply.ReplyMachine`)
what happens to each attempt (started, failed, won) and carries out what it
answers; the machine writes the outcomes. The pool's health is the race's to tell.
:meth:`Race.let_go` is the one place an attempt's connection is closed or released
and its upstream's in-flight count taken back.

An attempt that nothing could take over from (the last upstream left, none other
running, no hedge) is adopted as soon as its head came: a lone upstream's bytes
flow as they always did.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from multidict import CIMultiDict

from ...config import PoolEntry
from ...core.analyzer import HangupPolicy
from ...core.inspector import InspectorSettings
from ...core.reply import ReplyAction, ReplyEvent, ReplyInput, ReplyMachine
from ...core.routing import attempt_body, continuation_body, retry_after_s, retryable
from ...errors import UpstreamError, UpstreamsBusy, UpstreamStatus
from ...metrics import UPSTREAM_HEDGES
from ...telemetry import NOOP_TURN, TurnEvent, TurnSpan
from ..pool import UpstreamPool
from ..services import Services
from .attempt import Attempt, retry_after_of
from .upstream import safe_url

__all__ = ["Race"]

log = logging.getLogger("callgate.relay")


@dataclass(slots=True)
class _Round:
    """One race's progress: its request (bytes and parsed), the names in order, those
    tried, the attempts it may still start, the last failure."""

    raw: bytes
    body: dict[str, Any]
    names: list[str]
    continuation: bool
    budget: int
    transferred: bool = False
    tried: set[str] = field(default_factory=set)
    last: BaseException | None = None


class Race:
    """Every attempt of one reply (:attr:`attempts`, in start order, each at its
    machine index); see the module docstring. ``raw``/``body``: the request for the
    upstream as bytes and as parsed JSON (parsed once, for every attempt)."""

    def __init__(
        self, s: Services, machine: ReplyMachine, raw: bytes, body: dict[str, Any], headers: Any, stream: bool,
        upstreams: tuple[str, ...], started: float, span: TurnSpan = NOOP_TURN,
    ) -> None:
        self.s, self.machine, self.raw, self.body, self.headers, self.stream, self.started = s, machine, raw, body, headers, stream, started
        self.span = span  # the turn's: each attempt's span is its child
        self.pool: UpstreamPool = s.pool
        self.names = self.pool.names_for(upstreams)
        self.attempts: list[Attempt] = []
        self.ready: asyncio.Future[tuple[InspectorSettings, HangupPolicy]] = asyncio.get_running_loop().create_future()
        self._tasks: dict[asyncio.Task[None], Attempt] = {}
        self._first: _Round | None = None  # the first round, when begin() started it
        self._early: UpstreamsBusy | None = None  # begin() found no upstream to try

    def begin(self) -> None:
        """Start the first attempt now, from the caller's task: its request goes out a
        turn of the event loop sooner than from :meth:`first`'s task (which takes the
        race on from there). An upstream-less pool is :meth:`first`'s to raise."""
        r = self._first = _Round(self.raw, self.body, self.names, False, self.pool.routing.max_attempts)
        try:
            self._start(r)
        except UpstreamsBusy as e:
            self._early = e

    def start(self) -> asyncio.Future[Attempt]:
        """:meth:`begin`, then :meth:`first` in a task of its own: the reply's winner, to
        await once the call is known (one nobody awaits, the call's lookup having
        failed, leaves no warning)."""
        self.begin()
        first = asyncio.ensure_future(self.first())
        first.add_done_callback(_unawaited)
        return first

    def bind(self, settings: InspectorSettings, policy: HangupPolicy) -> None:
        """The call is known: attempts may read (their inspectors need its hangup policy)."""
        if not self.ready.done():
            self.ready.set_result((settings, policy))

    async def first(self) -> Attempt:
        """The winning attempt of the reply (see the module docstring)."""
        if self._early is not None:
            raise self._early
        return await self._run(self._first or _Round(self.raw, self.body, self.names, False, self.pool.routing.max_attempts))

    async def continuation(self, after: Attempt, heard: str, transferred: bool = False) -> Attempt:
        """The attempt that continues a reply stalled at ``after``, the runtime having
        received ``heard``: upstreams from the one after ``after``'s, its own last.
        ``transferred``: the reply acted on a transfer (the continuation may not again)."""
        i = self.names.index(after.name) if after.name in self.names else -1
        names = self.names[i + 1 :] + self.names[: i + 1]
        raw, body = continuation_body(self.body, heard, self.pool.routing.continue_prompt)
        return await self._run(_Round(raw, body, names, True, self.pool.routing.max_attempts, transferred))

    async def _run(self, r: _Round) -> Attempt:
        routing = self.pool.routing
        hedge_s = routing.first_token_ms / 1000 if routing.first_token_ms else None
        try:
            while True:
                if r.budget > 0 and not self._tasks and not self._start(r):
                    raise r.last or UpstreamsBusy("no upstream is left to try")
                ended = await self._wait(r, hedge_s)
                if ended is None:  # the hedge: nobody spoke within first_token_ms
                    if self._start(r, "hedge"):
                        UPSTREAM_HEDGES.inc()
                        self.span.event(TurnEvent.HEDGE, {"callgate.upstream": self.attempts[-1].name})
                    continue
                winner = self._settle(ended, r) if ended else None
                if winner is not None:
                    return winner
                if not self._tasks and r.budget <= 0:
                    raise r.last or UpstreamsBusy("no upstream is left to try")
                if ended and self._tasks and r.budget > 0:  # one failed while another runs: the next starts at once
                    self._start(r, "fallback")
        finally:
            await self._stop_tasks()

    async def _wait(self, r: _Round, hedge_s: float | None) -> set[asyncio.Task[None]] | None:
        """The attempts that ended (maybe none: the call became known), or ``None`` when
        the hedge is due. The hedge clock runs once the call is known: before, no
        attempt may read."""
        waiting: set[asyncio.Future[Any]] = set(self._tasks)
        if not self.ready.done():
            waiting.add(self.ready)
        may_hedge = r.budget > 0 and self._untried(r.names, r.tried) and self.ready.done()
        done, _ = await asyncio.wait(waiting, timeout=hedge_s if may_hedge else None, return_when=asyncio.FIRST_COMPLETED)
        return {t for t in self._tasks if t in done} if done else None

    def _settle(self, done: set[asyncio.Task[None]], r: _Round) -> Attempt | None:
        """The attempts that ended: one that succeeded wins (in start order; the others
        lose); failures are recorded in ``r.last``."""
        ended = sorted(done, key=lambda t: self._tasks[t].index)
        for task in ended:
            if task.exception() is None:
                attempt = self._tasks.pop(task)
                if attempt.first_token_ms is not None:  # it spoke (one adopted at its head is judged later)
                    self.pool.health.succeeded(attempt.name)
                self.carry_out(self.machine.on(ReplyInput(ReplyEvent.WON, attempt.index)))
                return attempt
        for task in ended:
            exc = task.exception()
            assert exc is not None
            r.last = self._failed(self._tasks.pop(task), exc)
        return None

    def _untried(self, names: list[str], tried: set[str]) -> bool:
        return any(n not in tried for n in names)

    def _start(self, r: _Round, reason: str | None = None) -> bool:
        """Start the next attempt (it counts against ``r.budget``; ``reason``: why, for its
        span: ``hedge``, else ``first`` or ``fallback``; a continuation's are
        ``continuation``); false when none is left."""
        reason = reason or ("fallback" if r.tried else "first")
        try:
            entry = self.pool.pick(r.names, r.tried)
        except UpstreamsBusy:
            if self._tasks or self.attempts:
                return False
            raise
        if entry is None:
            return False
        r.tried.add(entry.name)
        # nothing could take over from it: adopted at its head, as a lone upstream always was
        commit = not self._tasks and not (r.budget > 1 and self._untried(r.names, r.tried))
        r.budget -= 1
        if reason == "fallback" and r.tried - {entry.name}:
            self.span.event(TurnEvent.FALLBACK, {"callgate.upstream": entry.name})
        self._launch(entry, r, commit, "continuation" if r.continuation else reason)
        return True

    def _launch(self, entry: PoolEntry, r: _Round, commit: bool, reason: str) -> None:
        body, model, added = attempt_body(
            r.raw, r.body, models=entry.models, drop=frozenset(entry.drop_fields), include_usage=entry.include_usage
        )
        index = self.machine.start(continuation=r.continuation)
        attempt = Attempt(
            index, entry, body, model, added, self.started, continuation=r.continuation,
            max_held_bytes=self.s.config.limits.max_held_bytes, after_transfer=r.transferred,
        )
        assert index == len(self.attempts)
        attempt.span = self.span.attempt(entry.name, entry.base_url, model if isinstance(model, str) else None, number=index + 1, reason=reason)
        self.attempts.append(attempt)
        self.pool.health.begin(entry.name, self.pool.clock())
        trace = attempt.span.trace_headers()  # the provider's trace joins this attempt's (tracing on)
        headers = self.headers
        if trace:
            headers = CIMultiDict(self.headers)
            for name, value in trace.items():
                headers[name] = value  # replaces the runtime's own
        task = asyncio.ensure_future(attempt.run(self.s, headers, self.stream, self.ready, commit))
        self._tasks[task] = attempt

    def _failed(self, attempt: Attempt, e: BaseException) -> BaseException:
        """An attempt failed: its outcome written, its upstream's health told; raises
        at once when the failure is the request's own."""
        attempt.error = f"{type(e).__name__}: {e}"
        self.carry_out(self.machine.on(ReplyInput(ReplyEvent.ATTEMPT_FAILED, attempt.index)), attempt)
        if not isinstance(e, UpstreamError):
            raise e
        url = safe_url(attempt.entry)
        if isinstance(e, UpstreamStatus) and not retryable(e.status):
            log.warning("upstream %s answered the request's own error upstream_url=%s error=%s", attempt.name, url, attempt.error)
            if not self._tasks:  # relayed at once, unless another attempt may still answer
                raise e
            return e
        wait = retry_after_s(retry_after_of(e), time.time()) if isinstance(e, UpstreamStatus) and e.status == 429 else None
        state = self.pool.health.failed(attempt.name, self.pool.clock(), wait)
        log.warning("upstream %s failed an attempt (now %s) upstream_url=%s error=%s", attempt.name, state, url, attempt.error)
        return e

    async def _stop_tasks(self) -> None:
        """The race is over: attempts still reading are stopped (their outcomes are the
        machine's: lost to a winner, or cancelled with the reply)."""
        running = list(self._tasks)
        self._tasks.clear()
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    def carry_out(self, actions: tuple[ReplyAction, ...], attempt: Attempt | None = None) -> None:
        """What the machine asked about attempts: close ``attempt`` (``CLOSE``), close
        every attempt that no longer runs for the reply (``CLOSE_OTHERS``: the losers,
        or all at the reply's end), tell the pool of a fault (``FAULT``). Each attempt
        whose outcome the move wrote has its span ended with it."""
        for a in self.attempts:
            outcome = self.machine.outcome(a.index)
            if outcome is not None and not a.span_ended:
                a.end_span(outcome)
        for action in actions:
            if action is ReplyAction.CLOSE and attempt is not None:
                self.let_go(attempt)
            elif action is ReplyAction.CLOSE_OTHERS:
                for other in self.attempts:
                    if other is not attempt and other.index != self.machine.current and not other.let_go:
                        self.let_go(other)
            elif action is ReplyAction.FAULT and attempt is not None:
                state = self.pool.health.failed(attempt.name, self.pool.clock())
                log.warning("upstream %s failed mid-reply (now %s) upstream_url=%s error=%s", attempt.name, state, safe_url(attempt.entry), attempt.error)

    def spoke(self, attempt: Attempt) -> None:
        """An attempt adopted at its head produced speakable output: its upstream answered."""
        self.pool.health.succeeded(attempt.name)

    def let_go(self, attempt: Attempt, *, close: bool = True) -> None:
        """An attempt is over: its connection closed (or, ``close`` false, released)
        and no longer in flight at its upstream (once)."""
        attempt.close() if close else attempt.release()
        if not attempt.let_go:
            attempt.let_go = True
            self.pool.health.end(attempt.name)

    async def stop(self) -> None:
        """The reply is over: every attempt let go (released: one read to its end goes back to the pool)."""
        await self._stop_tasks()
        for attempt in self.attempts:
            self.let_go(attempt, close=False)


def _unawaited(task: asyncio.Future[Attempt]) -> None:
    if not task.cancelled():
        task.exception()
