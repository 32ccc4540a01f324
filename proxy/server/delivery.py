"""Control-event delivery to the call layer's webhook, besides the per-call SSE stream.

:class:`EventDelivery` is a registry sink: it POSTs each control event (the JSON of
its pydantic model) to ``control.webhook.url``, in order per call, with an
``Idempotency-Key`` (the event id), retrying with backoff. Each delivery is
recorded in the database before the first try and marked done or failed after; an
event that cannot be delivered is logged and reported to ``on_failure`` (the
registry notes it in the call record's ``delivery_failures``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from ..calls.events import ControlEvent
from ..calls.model import Call
from ..config import ControlWebhookConfig
from ..outbound import post_json
from ..storage import DeliveryStatus, Storage

__all__ = ["EventDelivery"]

log = logging.getLogger("callgate.delivery")


class EventDelivery:
    """Call it with ``(call, event)``; delivery happens in background tasks."""

    def __init__(
        self,
        cfg: ControlWebhookConfig,
        session: aiohttp.ClientSession,
        storage: Storage | None = None,
        on_failure: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        assert cfg.url
        self.cfg = cfg
        self.url = cfg.url
        self.session = session
        self.storage = storage
        self.on_failure = on_failure
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, call: Call, event: ControlEvent) -> None:
        payload = event.model_dump(mode="json")
        if self.storage is not None:
            self.storage.add_delivery(payload)
        self._schedule(call.id, event.id, payload)

    def resume(self) -> None:
        """Send what a previous process left pending; record the stale as failed."""
        if self.storage is None:
            return
        now = time.time()
        for payload, created_at in self.storage.pending_deliveries():
            if now - created_at > self.cfg.max_age_s:
                reason = f"stale: not delivered within {self.cfg.max_age_s} s (callgate was down)"
                self.storage.finish_delivery(payload["id"], DeliveryStatus.FAILED, 0, reason)
                log.error("control event dropped as stale call_id=%s event=%s type=%s", payload["call_id"], payload["id"], payload["type"])
            else:
                self._schedule(payload["call_id"], payload["id"], payload)

    def _schedule(self, call_id: str, event_id: str, payload: dict[str, Any]) -> None:
        prev = self._tails.get(call_id)
        task = asyncio.get_running_loop().create_task(self._deliver(call_id, event_id, payload, prev))
        self._tails[call_id] = task
        self._tasks.add(task)
        task.add_done_callback(lambda t, cid=call_id: self._done(cid, t))

    def _done(self, call_id: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._tails.get(call_id) is task:
            del self._tails[call_id]

    async def _deliver(self, call_id: str, event_id: str, payload: dict[str, Any], prev: asyncio.Task[None] | None) -> None:
        if prev is not None:
            await asyncio.gather(prev, return_exceptions=True)  # keep each call's events in order
        cfg = self.cfg
        result = await post_json(
            self.session,
            self.url,
            payload,
            headers={"Idempotency-Key": event_id, **cfg.headers},
            timeout_s=cfg.timeout_s,
            attempts=cfg.attempts,
            backoff_s=cfg.backoff_s,
        )
        if self.storage is not None:
            status = DeliveryStatus.DONE if result.ok else DeliveryStatus.FAILED
            self.storage.finish_delivery(event_id, status, result.attempts, result.error)
        if not result.ok:
            log.error(
                "control event not delivered call_id=%s event=%s type=%s attempts=%d error=%s",
                call_id, event_id, payload.get("type"), result.attempts, result.error,
            )
            if self.on_failure is not None:
                self.on_failure(call_id, {"event_id": event_id, "sink": "webhook", "attempts": result.attempts, "error": result.error})

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for deliveries in flight (shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
