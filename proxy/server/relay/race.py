"""The attempts of one reply raced across the pool: fallback, hedging, continuations.

:meth:`Race.first` runs attempts in the profile's upstream order until one has
speakable output: a failure that is the upstream's (connect, timeout, 408/409/429/5xx,
a bad or empty stream) moves to the next upstream at once; with
``routing.first_token_ms`` an attempt still silent then gets a hedge (the next
upstream starts as well); the first to speak wins and the others are cancelled
(their connections closed, their commands never acted on). At most
``routing.max_attempts`` start. A request's own error (400, 401, 403, 404, 422) is
relayed at once. When all fail, the last error is raised. :meth:`Race.continuation`
does the same for a reply whose speech stalled, with the continuation request.

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

from ...config import PoolEntry
from ...core.analyzer import HangupPolicy
from ...core.inspector import InspectorSettings
from ...core.routing import AttemptOutcome, attempt_body, continuation_body, retry_after_s, retryable
from ...errors import UpstreamError, UpstreamsBusy, UpstreamStatus
from ...metrics import UPSTREAM_HEDGES
from ..services import Services
from .attempt import Attempt, retry_after_of
from .upstream import upstream_url
from ..pool import UpstreamPool

__all__ = ["Race"]

log = logging.getLogger("callgate.relay")


@dataclass(slots=True)
class _Round:
    """One race's progress: its request, the names in order, those tried, the
    attempts it may still start, the last failure."""

    raw: bytes
    names: list[str]
    continuation: bool
    budget: int
    tried: set[str] = field(default_factory=set)
    last: BaseException | None = None


class Race:
    """Every attempt of one reply (:attr:`attempts`, in start order); see the module docstring."""

    def __init__(self, s: Services, raw: bytes, headers: Any, stream: bool, upstreams: tuple[str, ...], started: float) -> None:
        self.s, self.raw, self.headers, self.stream, self.started = s, raw, headers, stream, started
        self.pool: UpstreamPool = s.pool
        self.names = self.pool.names_for(upstreams)
        self.attempts: list[Attempt] = []
        self.ready: asyncio.Future[tuple[InspectorSettings, HangupPolicy]] = asyncio.get_running_loop().create_future()
        self._tasks: dict[asyncio.Task[None], Attempt] = {}

    def bind(self, settings: InspectorSettings, policy: HangupPolicy) -> None:
        """The call is known: attempts may read (their inspectors need its hangup policy)."""
        if not self.ready.done():
            self.ready.set_result((settings, policy))

    async def first(self) -> Attempt:
        """The winning attempt of the reply (see the module docstring)."""
        return await self._race(self.raw, self.names, continuation=False)

    async def continuation(self, after: Attempt, heard: str) -> Attempt:
        """The attempt that continues a reply stalled at ``after``, the runtime having
        received ``heard``: upstreams from the one after ``after``'s, its own last."""
        i = self.names.index(after.name) if after.name in self.names else -1
        names = self.names[i + 1 :] + self.names[: i + 1]
        return await self._race(continuation_body(self.raw, heard, self.pool.routing.continue_prompt), names, continuation=True)

    async def _race(self, raw: bytes, names: list[str], continuation: bool) -> Attempt:
        try:
            return await self._run(_Round(raw, names, continuation, self.pool.routing.max_attempts))
        except BaseException:
            await self._cancel(AttemptOutcome.CANCELLED)
            raise

    async def _run(self, r: _Round) -> Attempt:
        routing = self.pool.routing
        hedge_s = routing.first_token_ms / 1000 if routing.first_token_ms else None
        while True:
            if r.budget > 0 and not self._tasks and not self._start(r):
                raise r.last or UpstreamsBusy("no upstream is left to try")
            ended = await self._wait(r, hedge_s)
            if ended is None:  # the hedge: nobody spoke within first_token_ms
                if self._start(r):
                    UPSTREAM_HEDGES.inc()
                continue
            winner = await self._settle(ended, r) if ended else None
            if winner is not None:
                return winner
            if not self._tasks and r.budget <= 0:
                raise r.last or UpstreamsBusy("no upstream is left to try")
            if ended and self._tasks and r.budget > 0:  # one failed while another runs: the next starts at once
                self._start(r)

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

    async def _settle(self, done: set[asyncio.Task[None]], r: _Round) -> Attempt | None:
        """The attempts that ended: one that succeeded wins (in start order; the rest
        are cancelled); failures are recorded in ``r.last``."""
        ended = sorted(done, key=lambda t: self.attempts.index(self._tasks[t]))
        for task in ended:
            if task.exception() is None:
                attempt = self._tasks.pop(task)
                if attempt.first_token_ms is not None:  # it spoke (one adopted at its head is judged later)
                    self.pool.health.succeeded(attempt.name)
                await self._cancel(AttemptOutcome.LOST)
                return attempt
        for task in ended:
            exc = task.exception()
            assert exc is not None
            r.last = self._failed(self._tasks.pop(task), exc)
        return None

    def _untried(self, names: list[str], tried: set[str]) -> bool:
        return any(n not in tried for n in names)

    def _start(self, r: _Round) -> bool:
        """Start the next attempt (it counts against ``r.budget``); false when none is left."""
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
        self._launch(entry, r.raw, r.continuation, commit)
        return True

    def _launch(self, entry: PoolEntry, raw: bytes, continuation: bool, commit: bool) -> None:
        body, model, added = attempt_body(raw, models=entry.models, drop=frozenset(entry.drop_fields), include_usage=entry.include_usage)
        attempt = Attempt(entry, body, model, added, self.started, continuation=continuation)
        self.attempts.append(attempt)
        self.pool.health.begin(entry.name, self.pool.clock())
        task = asyncio.ensure_future(attempt.run(self.s, self.headers, self.stream, self.ready, commit))
        self._tasks[task] = attempt

    def _failed(self, attempt: Attempt, e: BaseException) -> BaseException:
        """An attempt failed: recorded, its upstream's health told; raises at once
        when the failure is the request's own."""
        attempt.outcome = AttemptOutcome.FAILED
        attempt.error = f"{type(e).__name__}: {e}"
        self.let_go(attempt)
        url = upstream_url(attempt.entry.base_url, "/chat/completions").with_query(None)  # a query may hold a key
        if not isinstance(e, UpstreamError):
            raise e
        if isinstance(e, UpstreamStatus) and not retryable(e.status):
            log.warning("upstream %s answered the request's own error upstream_url=%s error=%s", attempt.name, url, attempt.error)
            if not self._tasks:  # relayed at once, unless another attempt may still answer
                raise e
            return e
        wait = retry_after_s(retry_after_of(e), time.time()) if isinstance(e, UpstreamStatus) and e.status == 429 else None
        state = self.pool.health.failed(attempt.name, self.pool.clock(), wait)
        log.warning("upstream %s failed an attempt (now %s) upstream_url=%s error=%s", attempt.name, state, url, attempt.error)
        return e

    async def _cancel(self, outcome: AttemptOutcome) -> None:
        """Cancel the attempts still running (their connections closed)."""
        running = dict(self._tasks)
        self._tasks.clear()
        for task, attempt in running.items():
            attempt.outcome = outcome
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        for attempt in running.values():
            self.let_go(attempt)

    def fault(self, attempt: Attempt) -> None:
        """An adopted attempt failed after its head (cut, stalled, broke): its upstream's health is told."""
        state = self.pool.health.failed(attempt.name, self.pool.clock())
        log.warning("upstream %s failed mid-reply (now %s): %s", attempt.name, state, attempt.error)

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

    async def cancel(self) -> None:
        """The reply is over: whatever still runs is cancelled, every attempt let go."""
        await self._cancel(AttemptOutcome.CANCELLED)
        for attempt in self.attempts:
            self.let_go(attempt, close=False)
