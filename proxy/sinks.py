"""Control-event sinks: where control events go besides the per-call SSE stream.

:class:`WebhookSink` POSTs each event (the JSON of its pydantic model) to
``control.webhook.url``, in order per call, retrying with backoff; an event that
cannot be delivered is logged and noted in the call record's
``delivery_failures``.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp

from .calls import Call
from .config import ControlWebhookConfig
from .events import ControlEvent
from .storage import Storage
from .webhook import post_json

log = logging.getLogger("callgate.sinks")


class WebhookSink:
    """Call it with ``(call, event)``; delivery happens in background tasks."""

    def __init__(self, cfg: ControlWebhookConfig, session: aiohttp.ClientSession, storage: Storage | None = None) -> None:
        assert cfg.url
        self.cfg = cfg
        self.url = cfg.url
        self.session = session
        self.storage = storage
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, call: Call, event: ControlEvent) -> None:
        payload = event.model_dump(mode="json")
        if self.storage is not None:
            self.storage.add_delivery(payload)
        self._schedule(call.id, event.id, payload, call)

    def resume(self) -> None:
        """Send what a previous process left pending; record the stale as failed."""
        if self.storage is None:
            return
        now = time.time()
        for payload, created_at in self.storage.pending_deliveries():
            if now - created_at > self.cfg.max_age_s:
                reason = f"stale: not delivered within {self.cfg.max_age_s} s (callgate was down)"
                self.storage.finish_delivery(payload["id"], "failed", 0, reason)
                log.error("control event dropped as stale call_id=%s event=%s type=%s", payload["call_id"], payload["id"], payload["type"])
            else:
                self._schedule(payload["call_id"], payload["id"], payload, None)

    def _schedule(self, call_id: str, event_id: str, payload: dict, call: Call | None) -> None:
        prev = self._tails.get(call_id)
        task = asyncio.get_running_loop().create_task(self._deliver(call_id, event_id, payload, call, prev))
        self._tails[call_id] = task
        self._tasks.add(task)
        task.add_done_callback(lambda t, cid=call_id: self._done(cid, t))

    def _done(self, call_id: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._tails.get(call_id) is task:
            del self._tails[call_id]

    async def _deliver(
        self, call_id: str, event_id: str, payload: dict, call: Call | None, prev: asyncio.Task[None] | None
    ) -> None:
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
            self.storage.finish_delivery(event_id, "done" if result.ok else "failed", result.attempts, result.error)
        if not result.ok:
            log.error(
                "control event not delivered call_id=%s event=%s type=%s attempts=%d error=%s",
                call_id, event_id, payload.get("type"), result.attempts, result.error,
            )
            if call is not None:
                call.delivery_failures.append(
                    {"event_id": event_id, "sink": "webhook", "attempts": result.attempts, "error": result.error}
                )

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for deliveries in flight (shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
