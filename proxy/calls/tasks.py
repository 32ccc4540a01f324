"""The call domain's background work (ends in progress), kept until done so that
none is lost to the garbage collector, drained on stop, and its failures logged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["Background"]

log = logging.getLogger("callgate.calls")


class Background:
    """Tasks the call domain started and nobody awaits."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, kept until done."""
        task = asyncio.get_running_loop().create_task(coro)
        self.keep(task)
        return task

    def keep(self, fut: asyncio.Future[Any]) -> None:
        """Keep a future already under way (a task, usually) until done, as :meth:`spawn` does."""
        self._tasks.add(fut)
        fut.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call lifecycle task failed: %r", task.exception())

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for what is running."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
