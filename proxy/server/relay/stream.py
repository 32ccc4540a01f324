"""The reply to the runtime over HTTP: the SSE encoder stage, or one whole body.

:class:`HttpSink` is the :class:`~.reply.Sink` of ``POST /v1/chat/completions``: the
adopted attempt's head becomes the response's (hop-by-hop headers dropped; ``Cache-
Control: no-cache``, ``X-Accel-Buffering: no``), the reply's outputs are encoded as
Server-Sent Events (:func:`proxy.core.outputs.encode`: chunks without commands go
out as the bytes that came in), one write per upstream read. A whole reply is one
body. Every reply carries the call's id in ``X-Call-Id`` (the runtime's, or the one
callgate gave a request without one).
"""

from __future__ import annotations

from aiohttp import web

from ...core.outputs import Output, encode
from .attempt import Attempt
from .upstream import downstream_headers

__all__ = ["HttpSink"]


class HttpSink:
    """See the module docstring; :attr:`response` is what the handler returns."""

    def __init__(self, request: web.Request, call_id: str) -> None:
        self.request, self.call_id = request, call_id
        self.response: web.StreamResponse | None = None

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
        data = encode(items)
        if data and self.response is not None:
            await self.response.write(data)

    async def whole(self, attempt: Attempt, body: bytes) -> None:
        """A non-streamed reply: the inspected body with the upstream's status and headers."""
        assert attempt.resp is not None
        headers = downstream_headers(attempt.resp.headers)
        headers["X-Call-Id"] = self.call_id
        self.response = web.Response(body=body, status=attempt.resp.status, headers=headers)

    async def close(self) -> None:
        """The stream's end."""
        if self.response is not None and not isinstance(self.response, web.Response):
            await self.response.write_eof()
