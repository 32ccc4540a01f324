"""The drain on SIGTERM: replies in flight get ``server.drain_s`` to finish.

:meth:`Drain.quiesce` closes the listening socket first (no new connection here; a
server that took the socket over keeps accepting from it) and turns keep-alive off:
a request still arriving on an open connection is served, with ``Connection:
close``, so the runtime's next request opens a new connection instead of racing a
close (:meth:`on_prepare`). It waits for every reply in flight; when the socket was
handed to a new server (a restart), also for each idle keep-alive connection to
carry its next request (answered here, then closed) or to end, up to the same
``drain_s``: closing it under a runtime sending its next turn would lose the turn.
Then the idle connections left close. One still open at the deadline is cancelled with :attr:`Drain.expired` set:
the stream writes an SSE error event with ``code: "server_shutting_down"`` and
``[DONE]`` and records its turn ``interrupted`` (not ``client_disconnected``: callgate
closed it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

__all__ = ["Drain"]

log = logging.getLogger("callgate")

_AFTER_CUT_S = 5.0  # for the cut replies to write their error event and record their turn
_LINGER_POLL_S = 0.05  # how often the idle connections are counted while lingering (s)


class Drain:
    """The replies in flight (their handler tasks) and whether the drain ran out."""

    def __init__(self) -> None:
        self.active: set[asyncio.Task[object]] = set()
        self.expired = False
        self.closing = False  # keep-alive off: every response says Connection: close
        self.runner: web.BaseRunner | None = None  # its sites are where this server listens
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

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """``on_response_prepare``: once closing, no response keeps its connection."""
        if self.closing:  # the headers are made before this hook: say it as well as do it
            response.force_close()
            response.headers["Connection"] = "close"

    async def quiesce(self, drain_s: float, *, linger: bool = False) -> int:
        """Stop listening, turn keep-alive off, and :meth:`wait` (``linger``: the
        socket went to a new server; wait for the idle connections too). Returns how
        many replies were cut."""
        self.closing = True
        if self.runner is not None:
            for site in list(self.runner.sites):
                with contextlib.suppress(Exception):
                    await site.stop()
        return await self.wait(drain_s, linger=linger)

    def _idle_connections(self) -> int:
        server = self.runner.server if self.runner is not None else None
        return sum(1 for conn in (server.connections if server is not None else []) if not getattr(conn, "_request_in_progress", False))

    async def _settle(self, linger: bool) -> None:
        while True:
            await self._idle.wait()
            if not linger or not self._idle_connections():
                return
            await asyncio.sleep(_LINGER_POLL_S)

    async def wait(self, drain_s: float, *, linger: bool = False) -> int:
        """Wait up to ``drain_s`` (s) for the replies in flight (``linger``: and the
        idle connections); cut the replies still open. Returns how many were cut."""
        if self.active or linger:
            log.info("draining %d replies in flight (up to %s s)", len(self.active), drain_s)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_s):  # never wait_for: on 3.11 it can swallow a cancel
                await self._settle(linger)
        cut = len(self.active)
        if cut:
            self.expired = True
            log.warning("drain over after %s s: ending %d replies still open with server_shutting_down", drain_s, cut)
            for task in list(self.active):
                task.cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_AFTER_CUT_S):
                    await self._idle.wait()
        return cut
