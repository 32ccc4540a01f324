"""Control-event sinks: where control events go besides the per-call SSE stream.

:class:`WebhookSink` POSTs each event (the JSON of its pydantic model) to
``control.webhook.url``, in order per call, retrying with backoff; an event that
cannot be delivered is logged and noted in the call record's
``delivery_failures``.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from .calls import Call
from .config import ControlWebhookConfig
from .events import ControlEvent
from .webhook import post_json

log = logging.getLogger("callgate.sinks")


class WebhookSink:
    """Call it with ``(call, event)``; delivery happens in background tasks."""

    def __init__(self, cfg: ControlWebhookConfig, session: aiohttp.ClientSession) -> None:
        assert cfg.url
        self.cfg = cfg
        self.url = cfg.url
        self.session = session
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, call: Call, event: ControlEvent) -> None:
        prev = self._tails.get(call.id)
        task = asyncio.get_running_loop().create_task(self._deliver(call, event, prev))
        self._tails[call.id] = task
        self._tasks.add(task)
        task.add_done_callback(lambda t, cid=call.id: self._done(cid, t))

    def _done(self, call_id: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._tails.get(call_id) is task:
            del self._tails[call_id]

    async def _deliver(self, call: Call, event: ControlEvent, prev: asyncio.Task[None] | None) -> None:
        if prev is not None:
            await asyncio.gather(prev, return_exceptions=True)  # keep each call's events in order
        cfg = self.cfg
        result = await post_json(
            self.session,
            self.url,
            event.model_dump(mode="json"),
            headers=cfg.headers,
            timeout_s=cfg.timeout_s,
            attempts=cfg.attempts,
            backoff_s=cfg.backoff_s,
        )
        if not result.ok:
            log.error(
                "control event not delivered call_id=%s event=%s type=%s attempts=%d error=%s",
                call.id, event.id, event.type, result.attempts, result.error,
            )
            call.delivery_failures.append(
                {"event_id": event.id, "sink": "webhook", "attempts": result.attempts, "error": result.error}
            )

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for deliveries in flight (shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
