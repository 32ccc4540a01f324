"""Control-event delivery to the call layer's webhook, durable.

Every control event is queued in the database in the transaction that stores it
(``deliveries``; see :func:`proxy.storage.ops.add_events`). :class:`EventDelivery`
claims due deliveries under a lease, each only when no earlier delivery of its call
is pending (each call's events go in order), and POSTs the event's JSON to
``control.webhook.url`` with ``Idempotency-Key`` (the event id). A delivery that
fails is tried again with doubling backoff (``backoff_s`` .. ``max_backoff_s``, with
jitter: :func:`~proxy.core.backoff.delay_s` of the tries claimed) for as long as the event is fresh (``max_age_s``); a refused one (a 4xx but
408/429) or one no longer fresh becomes a dead letter, ``failed`` with its reason,
listed and resent by ``callgate deliveries``. Nothing is dropped silently: a
crash leaves the row ``pending`` and another start (or instance) sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable

import aiohttp

from ..config import ControlWebhookConfig
from ..core.backoff import delay_s
from ..outbound import post_json
from ..metrics import DELIVERIES
from ..storage import Delivery, DeliveryStatus, Store, ops
from ..storage.claims import claim_loop

__all__ = ["EventDelivery"]

log = logging.getLogger("callgate.delivery")


class EventDelivery:
    """The delivery worker of this process; :meth:`run` until cancelled, :meth:`kick`
    when events were stored. ``me``: the lease holder's name."""

    def __init__(
        self,
        cfg: ControlWebhookConfig,
        session: aiohttp.ClientSession,
        store: Store,
        *,
        me: str = "delivery",
        lease_s: float = 30.0,
        poll_s: float = 1.0,
        concurrency: int = 64,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        assert cfg.url
        self.cfg = cfg
        self.url = cfg.url
        self.session = session
        self.store = store
        self.me = me
        self.lease_s = max(lease_s, cfg.timeout_s * 2)
        self.poll_s = poll_s
        self.concurrency = concurrency
        self._jitter = jitter
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}

    def kick(self, *_: object) -> None:
        """Look for due deliveries now."""
        self._wake.set()

    async def run(self) -> None:
        """The delivery loop, until cancelled (:func:`~proxy.storage.claims.claim_loop`)."""
        await claim_loop(self._dispatch, self._wait_s, self._heartbeat, self._wake, "control-event deliveries", log)

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the deliveries in flight (shutdown; tests)."""
        if self._running:
            await asyncio.wait(set(self._running.values()), timeout=timeout)

    async def settled(self, timeout: float = 10.0) -> None:
        """Wait until no delivery is pending: each is done or a dead letter (tests).
        ``TimeoutError`` after ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (await self.store.read(ops.count_deliveries)).get(DeliveryStatus.PENDING, 0):
            if loop.time() > deadline:
                raise TimeoutError("deliveries still pending")
            self.kick()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(self.poll_s, max(0.0, deadline - loop.time()))):
                    await self._changed()

    async def _changed(self) -> None:
        """Until a delivery in flight finishes, or the next one falls due."""
        await asyncio.sleep(0)
        if self._running:
            await asyncio.wait(set(self._running.values()))
        else:
            await asyncio.sleep(await self._wait_s())

    async def _wait_s(self) -> float:
        now = time.time()
        nxt = await self.store.read(ops.next_due, "deliveries", now)
        return self.poll_s if nxt is None else max(0.0, min(self.poll_s, nxt - now))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            if self._running:
                await self.store.write(ops.extend_leases, "deliveries", self.me, list(self._running), time.time() + self.lease_s)

    async def _dispatch(self) -> None:
        free = self.concurrency - len(self._running)
        if free <= 0:
            return
        claimed = await self.store.write(ops.claim_deliveries, self.me, time.time(), self.lease_s, free)
        for d in claimed:
            if d.event_id in self._running:
                continue
            task = asyncio.get_running_loop().create_task(self._deliver(d))
            self._running[d.event_id] = task
            task.add_done_callback(functools.partial(self._done_task, d.event_id))

    def _done_task(self, event_id: str, task: asyncio.Task[None]) -> None:
        self._done(event_id)

    def _done(self, event_id: str) -> None:
        self._running.pop(event_id, None)
        self._wake.set()  # the call's next event may be due now

    async def _deliver(self, d: Delivery) -> None:
        now = time.time()
        if now - d.created_at > self.cfg.max_age_s:
            await self._finish(d, DeliveryStatus.FAILED, error=self._stale(d.last_error))
            return
        cfg = self.cfg
        result = await post_json(
            self.session, self.url, d.payload, headers={"Idempotency-Key": d.event_id, **cfg.headers}, timeout_s=cfg.timeout_s
        )
        if result.ok:
            await self._finish(d, DeliveryStatus.DONE, code=result.status)
            return
        delay = delay_s(d.attempts, cfg.backoff_s, cfg.max_backoff_s, self._jitter())
        if not result.retryable:
            await self._finish(d, DeliveryStatus.FAILED, error=f"refused: {result.error}", code=result.status)
        elif time.time() + delay - d.created_at > cfg.max_age_s:
            await self._finish(d, DeliveryStatus.FAILED, error=self._stale(result.error), code=result.status)
        else:
            await self._finish(d, DeliveryStatus.PENDING, error=result.error, code=result.status, next_at=time.time() + delay)
            return
        log.error(
            "control event not delivered (dead letter) call_id=%s event=%s type=%s attempts=%d error=%s",
            d.call_key, d.event_id, d.type, d.attempts, result.error,
        )

    def _stale(self, error: str | None) -> str:
        return f"stale: not delivered within {self.cfg.max_age_s} s" + (f"; last error: {error}" if error else "")

    async def _finish(self, d: Delivery, status: DeliveryStatus, *, error: str | None = None, code: int | None = None, next_at: float | None = None) -> None:
        held = await self.store.write(ops.finish_delivery, d.event_id, self.me, status, time.time(), error=error, response_code=code, next_at=next_at)
        DELIVERIES.labels("retry" if status == DeliveryStatus.PENDING else str(status)).inc()
        if not held:
            log.warning("lost the lease of a control-event delivery event=%s; its result was not written", d.event_id)
