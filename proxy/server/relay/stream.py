"""The reply to the runtime over HTTP: the SSE encoder stage, or one whole body.

:class:`Sink` is where a reply goes (:class:`~.reply.Reply` writes to one);
:class:`HttpSink` is the sink of ``POST /v1/chat/completions``: the
adopted attempt's head becomes the response's (hop-by-hop headers dropped; ``Cache-
Control: no-cache``, ``X-Accel-Buffering: no``), the reply's outputs are encoded as
Server-Sent Events (:func:`proxy.core.outputs.encode`: chunks without commands go
out as the bytes that came in), one write per upstream read, made at once from the
upstream connection's callback (:meth:`HttpSink.send_now`, :func:`.pump.write_now`)
unless a write is still waiting for a slow runtime. A whole reply is one body. Every
reply carries the call's id in ``X-Call-Id`` (the runtime's, or the one callgate gave
a request without one).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from aiohttp import web

from ...core.outputs import Output, encode
from .attempt import Attempt
from .pump import write_now
from .upstream import downstream_headers

__all__ = ["HttpSink", "Sink"]


class Sink(Protocol):
    """Where a reply goes: the runtime's HTTP response, or a front door's platform."""

    async def open(self, attempt: Attempt) -> None:
        """The reply adopted its first attempt (its response's head is known)."""

    async def send(self, items: list[Output]) -> None:
        """Send ``items``; raises :class:`ConnectionError` when the other side is gone."""

    def ready(self) -> bool:
        """Whether :meth:`send_now` may be used now (nothing is waiting to be written)."""

    def send_now(self, items: list[Output]) -> None:
        """Send ``items`` without awaiting (when :meth:`ready`); a write that must wait for
        the other side finishes on its own, before the next :meth:`send`; raises
        :class:`ConnectionError` when the other side is gone."""

    async def whole(self, attempt: Attempt, body: bytes) -> None:
        """A non-streamed reply's inspected body."""

    async def close(self) -> None:
        """The reply is over (the HTTP response's end)."""


class HttpSink:
    """See the module docstring; :attr:`response` is what the handler returns."""

    def __init__(self, request: web.Request, call_id: str) -> None:
        self.request, self.call_id = request, call_id
        self.response: web.StreamResponse | None = None
        self._pending: asyncio.Task[None] | None = None  # a write waiting for the runtime to read

    async def open(self, attempt: Attempt) -> None:
        """A streamed reply's head: the upstream's status and headers, prepared."""
        resp = attempt.resp
        if resp is None or attempt.whole is not None:
            return
        headers = downstream_headers(resp.headers)
        headers["Cache-Control"] = "no-cache"
        headers["X-Accel-Buffering"] = "no"
        headers["X-Call-Id"] = self.call_id
        self.response = web.StreamResponse(status=resp.status, headers=headers)
        await self.response.prepare(self.request)

    async def send(self, items: list[Output]) -> None:
        """The outputs as SSE bytes; :class:`ConnectionError` when the runtime is gone
        (aiohttp's ``ClientConnectionResetError`` is one)."""
        await self._written()
        data = encode(items)
        if data and self.response is not None:
            await self.response.write(data)

    def ready(self) -> bool:
        """Whether :meth:`send_now` may write: no earlier write is still waiting."""
        return self._pending is None

    def send_now(self, items: list[Output]) -> None:
        """The outputs as SSE bytes, written without awaiting: into the transport at
        once, or (a slow runtime) finished by a task the next :meth:`send` awaits.
        :class:`ConnectionError` as :meth:`send`."""
        data = encode(items)
        if data and self.response is not None:
            self._pending = write_now(self.response.write(data), _retrieve)

    async def _written(self) -> None:
        """The write :meth:`send_now` left waiting, done (its error raised here)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending

    async def whole(self, attempt: Attempt, body: bytes) -> None:
        """A non-streamed reply: the inspected body with the upstream's status and headers."""
        assert attempt.resp is not None
        headers = downstream_headers(attempt.resp.headers)
        headers["X-Call-Id"] = self.call_id
        self.response = web.Response(body=body, status=attempt.resp.status, headers=headers)

    async def close(self) -> None:
        """The stream's end."""
        await self._written()
        if self.response is not None and not isinstance(self.response, web.Response):
            await self.response.write_eof()


def _retrieve(task: asyncio.Task[None]) -> None:
    """A waiting write's failure is read by :meth:`HttpSink.send`; a reply that ended
    without another send leaves no warning."""
    if not task.cancelled():
        task.exception()
