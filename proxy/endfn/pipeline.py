"""The end-function pipeline: durable, ordered, concurrent, retried, leased.

The database is the queue. Ending a call writes its ``call.ended`` event and one
``pending`` job per configured step in one transaction (see
:meth:`~proxy.calls.registry.CallRegistry.end`); nothing is sent before that. The
runner claims due jobs whose ``after`` steps are done, under a lease
(``end_function.lease_s``) that a heartbeat renews while the step runs: at most
``max_concurrent_per_step`` tries of one step at once in this process (so one slow
receiver cannot starve the others), ``concurrency`` in all. Per try: its ``when:``
is checked (``skipped`` if it does not hold), the step runs under its ``timeout_s``,
and the outcome is written, only while this process still holds the lease: ``done``
with its output (visible to later steps as ``conv.results``); ``pending`` again
after ``retry.backoff_s`` doubling up to ``max_backoff_s``, with jitter, while tries
are left and the failure may pass; else ``failed`` (a dead letter) with the last
error. Steps after a failed one are ``blocked``; ``jobs retry`` revives both.

A process that dies holding a lease leaves its job ``running``; when the lease runs
out (or the process is found dead), the sweep makes it ``pending`` again: delivery is
at least once, and each step's idempotency key (``{call_id}:{step}``) lets receivers
deduplicate. On shutdown running steps get ``shutdown_grace_s``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..config import EndFunctionConfig, Step
from ..core.backoff import delay_s
from ..metrics import STEP_TRIES
from ..storage import TERMINAL, Job, JobStatus, Store, ops
from ..storage.claims import claim_loop
from ..telemetry import NOOP, NOOP_STEP, StepSpan, Telemetry
from .conditions import unmet
from .conversation import Conversation
from .effects import Effects, current_step
from .steps import RUNNERS, StepResult

__all__ = ["Pipeline", "run_step"]

log = logging.getLogger("callgate.pipeline")


class Pipeline:
    """The runner of the database's jobs in this process; see the module docstring.
    ``me``: this process's instance id (the lease holder); ``concurrency``: tries at
    once over all steps; ``jitter``: a random number in [0, 1); ``telemetry``: each
    try is a span (``end_function {step}``, tied to its call by ``session.id``)."""

    def __init__(
        self,
        store: Store,
        cfg: EndFunctionConfig,
        effects: Effects,
        *,
        me: str = "pipeline",
        concurrency: int = 256,
        jitter: Callable[[], float] = random.random,
        telemetry: Telemetry = NOOP,
    ) -> None:
        self.store = store
        self.telemetry = telemetry
        self.cfg = cfg
        self.steps = {s.name: s for s in cfg.steps}
        self._awaited = {name for s in cfg.steps for name in s.after}  # steps others come after
        self._saturated = False  # the last claim was cut short by the concurrency limits
        self.effects = effects
        self.me = me
        self.concurrency = concurrency
        self._jitter = jitter
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()  # replaced after each set: one per change
        self._running: dict[int, asyncio.Task[None]] = {}
        self._per_step: dict[str, int] = {}
        self._stopping = False
        self._records: OrderedDict[str, dict[str, Any]] = OrderedDict()  # ended calls' records, read once

    @property
    def step_specs(self) -> list[tuple[str, str, list[str]]]:
        """``(name, kind, after)`` of every configured step: the jobs of an ended call."""
        return [(s.name, s.kind, list(s.after)) for s in self.steps.values()]

    def configure(self, cfg: EndFunctionConfig) -> None:
        """Run ``cfg``'s steps from now on (a reload): a job claimed next takes its step from here."""
        self.cfg = cfg
        self.steps = {s.name: s for s in cfg.steps}
        self._awaited = {name for s in cfg.steps for name in s.after}

    def kick(self) -> None:
        """Look for due jobs now (a call ended, ``jobs retry`` ran)."""
        self._wake.set()

    # -- running -------------------------------------------------------------------------

    async def run(self) -> None:
        """The runner loop; cancel it or call :meth:`stop` to end it."""
        await claim_loop(
            self._dispatch, self._wait_s, self._heartbeat, self._wake, "end-function steps", log, lambda: not self._stopping
        )

    async def stop(self, grace_s: float) -> None:
        """Take no more jobs; give running ones ``grace_s`` seconds, cancel the rest
        (their leases run out and another start takes them up)."""
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
        """Wait until every job of the call with record key ``call_id`` is finished;
        returns them. Raises ``TimeoutError`` after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._changed
            jobs = await self.store.read(ops.jobs_for_call, call_id)
            if jobs and all(j.status in TERMINAL for j in jobs):
                return jobs
            try:
                async with asyncio.timeout(min(max(deadline - loop.time(), 0), self.cfg.poll_s)):
                    await changed.wait()
            except TimeoutError:
                if loop.time() >= deadline:
                    raise

    def _notify(self) -> None:
        """A job changed state: wake :meth:`wait_call` and the runner."""
        self._changed.set()
        self._changed = asyncio.Event()
        self._wake.set()

    async def _wait_s(self) -> float:
        """Until the next retry falls due, at most ``poll_s``."""
        now = time.time()
        nxt = await self.store.read(ops.next_due, "jobs", now)
        return self.cfg.poll_s if nxt is None else max(0.0, min(self.cfg.poll_s, nxt - now))

    async def _heartbeat(self) -> None:
        """Renew the leases of the steps running here, three times per lease."""
        while True:
            await asyncio.sleep(self.cfg.lease_s / 3)
            if self._running:
                await self.store.write(ops.extend_leases, "jobs", self.me, list(self._running), time.time() + self.cfg.lease_s)

    async def _dispatch(self) -> None:
        free_all = self.concurrency - len(self._running)
        if self._stopping or free_all <= 0 or not self.steps:
            return
        limit = self.cfg.max_concurrent_per_step
        free = {name: limit - self._per_step.get(name, 0) for name in self.steps}
        claimed, blocked = await self.store.write(ops.claim_jobs, self.me, time.time(), self.cfg.lease_s, free, free_all)
        self._saturated = len(claimed) >= free_all or any(
            self._per_step.get(j.step, 0) + sum(1 for c in claimed if c.step == j.step) >= limit for j in claimed
        )
        for job in blocked:
            log.error("end-function step blocked call_id=%s step=%s", job.call_key, job.step)
        if blocked:
            self._notify()
        for job in claimed:
            task = asyncio.get_running_loop().create_task(self._execute(job))
            self._running[job.id] = task
            self._per_step[job.step] = self._per_step.get(job.step, 0) + 1
            task.add_done_callback(functools.partial(self._finished, job))

    def _finished(self, job: Job, task: asyncio.Task[None] | None = None) -> None:
        self._running.pop(job.id, None)
        self._per_step[job.step] -= 1

    async def _execute(self, job: Job) -> None:
        try:
            await self._try(job)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("end-function step crashed call_id=%s step=%s", job.call_key, job.step)
        finally:
            self._changed.set()
            self._changed = asyncio.Event()
            if self._saturated or job.step in self._awaited:
                self._wake.set()  # capacity came free, or steps after this one may be due

    async def _record(self, key: str) -> dict[str, Any]:
        """The ended call's record (it no longer changes): read once for its steps."""
        record = self._records.get(key)
        if record is None:
            record = await self.store.read(ops.call_record, key, full=False) or {"id": key, "key": key}
            self._records[key] = record
            while len(self._records) > 512:
                self._records.popitem(last=False)
        return record

    async def _finish(self, job: Job, status: JobStatus, span: StepSpan, **kw: Any) -> None:
        held = await self.store.write(ops.finish_job, job.id, self.me, status, time.time(), **kw)
        outcome = "retry" if status == JobStatus.PENDING else str(status)
        STEP_TRIES.labels(job.step, outcome).inc()
        span.end(outcome, error=kw.get("error"), response_code=kw.get("response_code"))
        if not held:
            log.warning("lost the lease of end-function step call_id=%s step=%s; its result was not written", job.call_key, job.step)

    async def _try(self, job: Job) -> None:
        step = self.steps.get(job.step)
        if step is None:
            await self._finish(job, JobStatus.FAILED, NOOP_STEP, error="step is no longer configured")
            return
        current_step.set(job.step)
        record = await self._record(job.call_key)
        results = {}
        if step.after:  # the outputs of the steps it comes after (and any other done by now)
            jobs = await self.store.read(ops.jobs_for_call, job.call_key)
            results = {j.step: j.output for j in jobs if j.status == JobStatus.DONE}
        conv = Conversation.from_record(record, results, step=job.step, idempotency_key=job.idempotency_key, sandbox=self.effects.sandbox)
        span = self.telemetry.step(conv.id, conv.generation, job.call_key, job.step, str(step.kind), job.attempts, job.idempotency_key)
        skip = unmet(step.when, conv.context())
        if skip is not None:
            await self._finish(job, JobStatus.SKIPPED, span, error=f"when: {skip}")
            return
        started = time.perf_counter()
        result = await run_step(step, conv, self.effects)
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        if result.ok:
            await self._finish(job, JobStatus.DONE, span, response_code=result.response_code, duration_ms=duration_ms, output=result.output)
            return
        if result.retryable and job.attempts < step.retry.attempts:
            delay = delay_s(job.attempts, step.retry.backoff_s, step.retry.max_backoff_s, self._jitter())
            await self._finish(
                job, JobStatus.PENDING, span, error=result.error, response_code=result.response_code,
                duration_ms=duration_ms, next_at=time.time() + delay,
            )
            log.warning("end-function step failed, retry in %.2fs call_id=%s step=%s attempt=%d error=%s",
                        delay, job.call_key, job.step, job.attempts, result.error)
            return
        await self._finish(job, JobStatus.FAILED, span, error=result.error, response_code=result.response_code, duration_ms=duration_ms)
        log.error("end-function step failed for good call_id=%s step=%s attempts=%d error=%s",
                  job.call_key, job.step, job.attempts, result.error)


async def run_step(step: Step, conv: Conversation, effects: Effects) -> StepResult:
    """One try of one step under its timeout; never raises but for cancellation."""
    try:
        async with asyncio.timeout(step.timeout_s):  # never wait_for: on 3.11 it can swallow a cancel
            return await RUNNERS[step.kind](step, conv, effects)
    except TimeoutError:
        return StepResult(ok=False, error=f"timed out after {step.timeout_s} s")
    except asyncio.CancelledError:
        raise
    except Exception as e:  # the user's code and the network may raise anything
        return StepResult(ok=False, error=f"{type(e).__name__}: {e}"[:1000])
