"""The drain on SIGTERM: replies in flight get ``server.drain_s`` to finish.

The listening socket closes first (no new connection), idle keep-alive connections
close, then :meth:`Drain.wait` (an ``on_shutdown`` hook) waits for every reply in
flight. One still open at the deadline is cancelled with :attr:`Drain.expired` set:
the stream writes an SSE error event with ``code: "server_shutting_down"`` and
``[DONE]`` and records its turn ``interrupted`` (not ``client_disconnected``: callgate
closed it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

__all__ = ["Drain"]

log = logging.getLogger("callgate")

_AFTER_CUT_S = 5.0  # for the cut replies to write their error event and record their turn


class Drain:
    """The replies in flight (their handler tasks) and whether the drain ran out."""

    def __init__(self) -> None:
        self.active: set[asyncio.Task[object]] = set()
        self.expired = False
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        """The current task serves a reply until :meth:`leave`."""
        task = asyncio.current_task()
        if task is not None:
            self.active.add(task)
            self._idle.clear()

    def leave(self) -> None:
        """The current task's reply is over."""
        task = asyncio.current_task()
        self.active.discard(task)
        if not self.active:
            self._idle.set()

    async def wait(self, drain_s: float) -> int:
        """Wait up to ``drain_s`` (s) for the replies in flight; cut those still open.
        Returns how many were cut."""
        if self.active:
            log.info("draining %d replies in flight (up to %s s)", len(self.active), drain_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), drain_s)
        cut = len(self.active)
        if cut:
            self.expired = True
            log.warning("drain over after %s s: ending %d replies still open with server_shutting_down", drain_s, cut)
            for task in list(self.active):
                task.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), _AFTER_CUT_S)
        return cut
