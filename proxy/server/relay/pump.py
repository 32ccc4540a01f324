"""The adopted attempt's reads, forwarded from the connection's data callback.

Reading an upstream stream the usual way (``await resp.content.readany()``) costs a
task wake-up per read: a future made and resolved, the reply's coroutine resumed
through every frame of its handler, then suspended again. A :class:`Pump` forwards
a read where it lands instead: it stands in for the connection's protocol
(:meth:`asyncio.BaseTransport.set_protocol`), hands every callback on to aiohttp's
own protocol (``llhttp`` still parses the response, aiohttp's stream reader still
holds the body and its flow control), and after each read takes what the reader
holds (``read_nowait``) and gives it to ``forward``, which decodes, inspects and
writes it in the same callback. The reply's task sleeps meanwhile in
:meth:`Pump.read`; it wakes only for what ``forward`` will not take (it returns
``False``: the sink cannot write now, so the task awaits it), the end of the
stream, an error (the reader's, or what ``forward`` raised, re-raised in the task),
or a timer:

* ``stall_s`` without a read once ``spoke()`` is true: :class:`Stalled`;
* ``read_timeout_s`` without a read: the upstream's ``sock_read`` timeout, raised as
  aiohttp raises it (its own timer, moved at every read, is off while pumping).

One timer serves both, moved lazily: a read only notes its time, the timer looks
at it when it fires. ``forward`` runs in the reply task's context (its log fields).
The connection's own protocol is put back when the body ends (before aiohttp's pool
can hand the connection to another request) and in :meth:`Pump.stop`. A response
whose connection is gone (the body was read whole) is read as before.

:func:`write_now` writes through an aiohttp coroutine without a task when it does
not suspend (it suspends only to wait for a slow client's buffer to drain), and
finishes it in a task of its own when it does.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler

__all__ = ["Pump", "Stalled", "write_now"]

class Stalled(Exception):
    """No read came for ``stall_s`` after speech began."""


class _Stand(asyncio.Protocol):
    """The connection's protocol while a pump reads it: every callback goes to
    aiohttp's protocol first, then the pump looks at what it read."""

    def __init__(self, inner: asyncio.BaseProtocol, pump: Pump) -> None:
        self.inner, self.pump = inner, pump

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)  # type: ignore[attr-defined]
        self.pump.after_read()

    def eof_received(self) -> bool | None:
        kept = self.inner.eof_received()  # type: ignore[attr-defined]
        self.pump.after_read()
        return kept

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)
        self.pump.after_read()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class Pump:
    """The reads of ``resp`` (see the module docstring). ``forward(data)``: take one
    read whole and return ``True``, or ``False`` (touching nothing) to hand it to the
    task; ``spoke()``: whether the stall timer applies; ``read_timeout_s``: the
    upstream's ``sock_read`` timeout (s)."""

    def __init__(
        self, resp: aiohttp.ClientResponse, forward: Callable[[bytes], bool], *, stall_s: float | None, spoke: Callable[[], bool],
        read_timeout_s: float,
    ) -> None:
        self.content = resp.content
        self.forward, self.stall_s, self.spoke, self.read_timeout_s = forward, stall_s, spoke, read_timeout_s
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()  # the last read (loop time, s)
        self._waiter: asyncio.Future[bytes] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._context = contextvars.copy_context()
        self._consumed = 0  # the reader's total_bytes read out of it (more came when it grows past this)
        conn = resp.connection
        self._transport = conn.transport if conn is not None else None
        self._inner: asyncio.BaseProtocol | None = None
        self._aiohttp_timeout: float | None = None
        self._proto: ResponseHandler | None = None
        if conn is not None and self._transport is not None and not self.content.is_eof():
            self._inner = self._transport.get_protocol()
            self._transport.set_protocol(_Stand(self._inner, self))
            self._proto = conn.protocol
            if self._proto is not None:  # the watchdog times reads from now: no timer moved per read
                self._aiohttp_timeout, self._proto.read_timeout = self._proto.read_timeout, None

    async def read(self) -> bytes:
        """The next bytes the task must handle (``b""``: the end of the body); raises
        what reading raised, what ``forward`` raised, :class:`Stalled`."""
        data = self._read_now()  # what came while the task was busy (raises the reader's error)
        if data or self.content.at_eof():
            self.last = self.loop.time()
            return data
        if self._inner is None:  # not pumped: the reader's own wait
            data = await self._plain()
            self._consumed = self.content.total_bytes
            return data
        self._waiter = self.loop.create_future()
        due = self._due()
        if self._timer is None or self._timer.when() > due:  # speech began since it was set: the stall timer is sooner
            if self._timer is not None:
                self._timer.cancel()
            self._arm(due)
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def _read_now(self) -> bytes:
        """What the reader holds (``read_nowait``, which reads what it held when called:
        what aiohttp parses into it meanwhile stays for the next call)."""
        content = self.content
        before = content.total_bytes
        data = content.read_nowait(-1)
        self._consumed = before if data else content.total_bytes
        return data

    async def _plain(self) -> bytes:
        if self.stall_s is None or not self.spoke():
            return await self.content.readany()
        try:
            async with asyncio.timeout(self.stall_s):
                return await self.content.readany()
        except TimeoutError:
            raise Stalled() from None

    def after_read(self) -> None:
        """In the connection's callback: aiohttp took a read (or the end, or an error)."""
        if self.content.is_eof():
            self._restore()  # before aiohttp's pool can lend the connection again
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # the task is busy: what came waits in the reader
        self._context.run(self._take, waiter)

    def _take(self, waiter: asyncio.Future[bytes]) -> None:
        content = self.content
        try:
            while content.total_bytes > self._consumed:  # aiohttp may parse more into the reader as it is read: to the last byte
                data = self._read_now()
                if not data:
                    break
                self.last = self.loop.time()
                if not self.forward(data):
                    waiter.set_result(data)
                    return
        except Exception as e:
            waiter.set_exception(e)
            return
        error = content.exception()
        if error is not None:
            waiter.set_exception(error)
        elif content.at_eof():
            waiter.set_result(b"")

    # -- the watchdog ----------------------------------------------------------------

    def _due(self) -> float:
        due = self.last + self.read_timeout_s
        if self.stall_s is not None and self.spoke():
            due = min(due, self.last + self.stall_s)
        return due

    def _arm(self, at: float) -> None:
        self._timer = self.loop.call_at(at, self._check)

    def _check(self) -> None:
        self._timer = None
        waiter = self._waiter
        if self._inner is None or waiter is None or waiter.done():
            return  # the task re-arms it when it waits again
        error = self.content.exception()
        if error is not None:
            waiter.set_exception(error)
            return
        now = self.loop.time()
        if self.stall_s is not None and self.spoke() and now - self.last >= self.stall_s:
            waiter.set_exception(Stalled())
        elif now - self.last >= self.read_timeout_s:  # as aiohttp's own read timeout says it
            waiter.set_exception(aiohttp.SocketTimeoutError("Timeout on reading data from socket"))
        else:
            self._arm(self._due())

    # -- the end ---------------------------------------------------------------------

    def _restore(self) -> None:
        transport, inner = self._transport, self._inner
        self._inner = None
        if transport is not None and inner is not None and isinstance(transport.get_protocol(), _Stand):
            transport.set_protocol(inner)
            if self._proto is not None:
                self._proto.read_timeout = self._aiohttp_timeout

    def stop(self) -> None:
        """The reply is done with this attempt: the connection's protocol is aiohttp's again."""
        self._restore()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def write_now(coro: Coroutine[Any, Any, None], done: Callable[[asyncio.Task[None]], None]) -> asyncio.Task[None] | None:
    """Run a write coroutine by hand: ``None`` when it finished without suspending
    (the common case: the bytes are in the transport); else the task that finishes
    it (``done`` is called when it ends). Raises what the coroutine raised."""
    try:
        waiting = coro.send(None)
    except StopIteration:
        return None
    task = asyncio.ensure_future(_finish(coro, waiting))
    task.add_done_callback(done)
    return task


async def _finish(coro: Coroutine[Any, Any, None], waiting: Any) -> None:
    """Resume ``coro`` each time what it waits for (``waiting``: what it yielded, as
    a task would have seen it) is done, to its end."""
    try:
        while True:
            if waiting is None:
                await asyncio.sleep(0)  # a bare yield
            else:
                await asyncio.wait([_as_future(waiting)])
            try:
                waiting = coro.send(None)
            except StopIteration:
                return
    except BaseException:
        coro.close()
        raise


def _as_future(waiting: Any) -> asyncio.Future[Any]:
    waiting._asyncio_future_blocking = False  # as a task does with what it was given
    fut: asyncio.Future[Any] = waiting
    return fut
