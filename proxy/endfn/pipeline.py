"""The end-function pipeline: durable, ordered, concurrent, retried.

The database is the queue. Ending a call writes the call record and one ``pending``
job per configured step in one transaction (:meth:`Pipeline.end_call`); nothing is
sent before that. The runner loop takes due jobs whose ``after`` steps are done and
runs them concurrently: at most ``max_concurrent_per_step`` tries of one step at once
(so one slow receiver cannot starve the other steps), ``concurrency`` in all. Per try: the job is marked
``running`` (attempt counted), its ``when:`` is checked (``skipped`` if it does not
hold), the step runs under its ``timeout_s``, and the outcome is written: ``done``
with its output (visible to later steps as ``conv.results``); ``pending`` again after
``retry.backoff_s`` doubling up to ``max_backoff_s``, with jitter, while tries are
left and the failure may pass; else ``failed`` (dead letter) with the last error.
Steps after a failed one are ``blocked``; ``jobs retry`` revives both.

At start, jobs left ``running`` by a process that died go back to ``pending``:
delivery is at least once, and each step's idempotency key (``{call_id}:{step}``)
lets receivers deduplicate. On shutdown running steps get ``shutdown_grace_s``; the
rest stay for the next start.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from ..config import EndFunctionConfig, Step
from ..storage import TERMINAL, Job, JobStatus, Storage
from .conditions import unmet
from .conversation import Conversation
from .effects import Effects, current_step
from .steps import RUNNERS, StepResult

__all__ = ["Pipeline", "run_step"]

log = logging.getLogger("callgate.pipeline")


class Pipeline:
    """The runner of one database's jobs; see the module docstring. ``concurrency``:
    tries at once over all steps; ``jitter``: a random number in [0, 1)."""

    def __init__(
        self,
        storage: Storage,
        cfg: EndFunctionConfig,
        effects: Effects,
        *,
        concurrency: int = 256,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.storage = storage
        self.cfg = cfg
        self.steps = {s.name: s for s in cfg.steps}
        self.effects = effects
        self.concurrency = concurrency
        self._jitter = jitter
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()  # replaced after each set: one per change
        self._running: dict[int, asyncio.Task[None]] = {}
        self._per_step: dict[str, int] = {}
        self._stopping = False

    # -- producing ---------------------------------------------------------------------

    def end_call(self, record: dict[str, Any]) -> bool:
        """Persist an ended call and its steps (one SQLite transaction) and wake the
        runner. ``False`` when the database already had the call as ended."""
        created = self.storage.end_call(record, [(s.name, s.kind, list(s.after)) for s in self.steps.values()])
        if created and self.steps:
            self._wake.set()
        return created

    def kick(self) -> None:
        """Look for due jobs now (after ``jobs retry`` from the API, say)."""
        self._wake.set()

    # -- running -------------------------------------------------------------------------

    async def run(self) -> None:
        """The runner loop; cancel it or call :meth:`stop` to end it."""
        revived = self.storage.reset_running()
        if revived:
            log.warning("resuming %d end-function step(s) interrupted by the last stop", revived)
        while not self._stopping:
            self._dispatch()
            try:
                await asyncio.wait_for(self._wake.wait(), self._wait_s())
            except TimeoutError:
                pass
            self._wake.clear()

    async def stop(self, grace_s: float) -> None:
        """Take no more jobs; give running ones ``grace_s`` seconds, cancel the rest
        (they stay ``running`` in the database and resume at the next start)."""
        self._stopping = True
        self._wake.set()
        tasks = list(self._running.values())
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=grace_s)
            for t in pending:
                t.cancel()
            if pending:
                log.warning("%d end-function step(s) left for the next start", len(pending))
                await asyncio.wait(pending, timeout=1)

    async def wait_call(self, call_id: str, timeout: float = 10.0) -> list[Job]:
        """Wait until every job of ``call_id`` is finished; returns them. Raises
        ``TimeoutError`` after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._changed
            jobs = self.storage.jobs_for_call(call_id)
            if jobs and all(j.status in TERMINAL for j in jobs):
                return jobs
            await asyncio.wait_for(changed.wait(), max(deadline - loop.time(), 0))

    def _notify(self) -> None:
        """A job changed state: wake :meth:`wait_call` and the runner."""
        self._changed.set()
        self._changed = asyncio.Event()
        self._wake.set()

    def _wait_s(self) -> float:
        """Until the next retry falls due, at most ``poll_s`` (jobs that wait for
        their dependencies are woken by those finishing)."""
        now = time.time()
        nxt = self.storage.next_due(now)
        return self.cfg.poll_s if nxt is None else min(self.cfg.poll_s, nxt - now)

    def _dispatch(self) -> None:
        if self._stopping:
            return
        free = self.concurrency - len(self._running)
        if free <= 0:
            return
        statuses: dict[str, dict[str, Job]] = {}
        per_step_limit = self.cfg.max_concurrent_per_step
        for job in self.storage.due_jobs(time.time(), limit=free + 4 * per_step_limit * max(len(self.steps), 1)):
            if free <= 0:
                break
            if job.id in self._running or self._per_step.get(job.step, 0) >= per_step_limit:
                continue
            if job.after:
                if job.call_id not in statuses:
                    statuses[job.call_id] = {j.step: j for j in self.storage.jobs_for_call(job.call_id)}
                deps = [statuses[job.call_id].get(name) for name in job.after]
                bad = [d for d in deps if d is not None and d.status in (JobStatus.FAILED, JobStatus.BLOCKED)]
                if bad:
                    self.storage.finish_job(job.id, JobStatus.BLOCKED, error=f"after: step {bad[0].step!r} {bad[0].status}")
                    self._notify()
                    log.error("end-function step blocked call_id=%s step=%s by=%s", job.call_id, job.step, bad[0].step)
                    continue
                if not all(d is not None and d.status in (JobStatus.DONE, JobStatus.SKIPPED) for d in deps):
                    continue  # waits for its dependencies; their end wakes the loop
            task = asyncio.get_running_loop().create_task(self._execute(job))
            self._running[job.id] = task
            self._per_step[job.step] = self._per_step.get(job.step, 0) + 1
            task.add_done_callback(lambda t, j=job: self._finished(j))
            free -= 1

    def _finished(self, job: Job) -> None:
        self._running.pop(job.id, None)
        self._per_step[job.step] -= 1

    async def _execute(self, job: Job) -> None:
        try:
            await self._try(job)
        finally:
            self._notify()

    async def _try(self, job: Job) -> None:
        step = self.steps.get(job.step)
        if step is None:
            self.storage.finish_job(job.id, JobStatus.FAILED, error="step is no longer configured")
            return
        current_step.set(job.step)
        attempt = self.storage.start_job(job.id)
        record = self.storage.call_record(job.call_id) or {"id": job.call_id}
        results = {j.step: j.output for j in self.storage.jobs_for_call(job.call_id) if j.status == JobStatus.DONE}
        conv = Conversation.from_record(
            record, results, step=job.step, idempotency_key=job.idempotency_key, sandbox=self.effects.sandbox
        )
        skip = unmet(step.when, conv.context())
        if skip is not None:
            self.storage.finish_job(job.id, JobStatus.SKIPPED, error=f"when: {skip}")
            return
        started = time.perf_counter()
        result = await run_step(step, conv, self.effects)
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        if result.ok:
            self.storage.finish_job(job.id, JobStatus.DONE, response_code=result.response_code, duration_ms=duration_ms, output=result.output)
            return
        if result.retryable and attempt < step.retry.attempts:
            delay = min(step.retry.max_backoff_s, step.retry.backoff_s * 2 ** (attempt - 1))
            delay *= 0.5 + self._jitter() / 2
            self.storage.finish_job(
                job.id, JobStatus.PENDING, error=result.error, response_code=result.response_code,
                duration_ms=duration_ms, next_at=time.time() + delay,
            )
            log.warning("end-function step failed, retry in %.2fs call_id=%s step=%s attempt=%d error=%s",
                        delay, job.call_id, job.step, attempt, result.error)
            return
        self.storage.finish_job(job.id, JobStatus.FAILED, error=result.error, response_code=result.response_code, duration_ms=duration_ms)
        log.error("end-function step failed for good call_id=%s step=%s attempts=%d error=%s",
                  job.call_id, job.step, attempt, result.error)


async def run_step(step: Step, conv: Conversation, effects: Effects) -> StepResult:
    """One try of one step under its timeout; never raises but for cancellation."""
    try:
        return await asyncio.wait_for(RUNNERS[step.kind](step, conv, effects), step.timeout_s)
    except TimeoutError:
        return StepResult(ok=False, error=f"timed out after {step.timeout_s} s")
    except asyncio.CancelledError:
        raise
    except Exception as e:  # the user's code and the network may raise anything
        return StepResult(ok=False, error=f"{type(e).__name__}: {e}"[:1000])
