"""The PostgreSQL engine: the shared store for several callgate processes.

The operations are the same SQL as SQLite's (:mod:`~proxy.storage.ops`); each runs in
a transaction of its own on a connection of a ``psycopg_pool.ConnectionPool``, in a
worker thread, so the event loop never waits on the database and the CLI uses the
very same code (``psycopg`` 3, sync API). PostgreSQL decides what must hold across
processes: ``FOR UPDATE SKIP LOCKED`` claims, row locks on the call row, unique
indexes, conditional updates.

The pool's threads run writes side by side, so writes given the same ``order_key``
(a call's) are chained here: each starts once the one before it has finished. A
write that stores events, ends a call, or queues jobs and deliveries
also ``NOTIFY``-s channel ``callgate`` (delivered on commit): one thread per process
``LISTEN``-s and hands each payload to ``on_notify`` (``events:<call>``,
``ended:<call>``, ``jobs``, ``deliveries``; ``reset:`` after the listening
connection was lost and made again). A notification is only a wake-up: every
reader also polls, so a lost one only delays.

Schema migrations (:meth:`PostgresStore.migrate`) run each step under
``pg_advisory_xact_lock``: N instances starting together migrate once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import StoreUnavailable
from ..metrics import STORAGE_WRITE, labelled
from . import migrations
from .db import Conn

__all__ = ["PostgresStore"]

log = logging.getLogger("callgate.storage")

Op = Callable[..., Any]

_MIGRATION_LOCK = 742_113_001  # pg_advisory_xact_lock key: "callgate schema"


class PostgresStore:
    """One PostgreSQL database at ``url`` (``postgresql://user@host:port/db``).

    ``pool_size``: connections (and worker threads); ``max_queue``: writes in
    flight past which new turns wait (backpressure).
    """

    dialect = "postgres"
    shared = True
    local = False  # its instances may be on other machines

    def __init__(self, url: str, *, pool_size: int = 8, max_queue: int = 2000) -> None:
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        self.url = url
        self.path = _without_password(url)
        self.pool_size = pool_size
        self.max_queue = max_queue
        self.pool = ConnectionPool(
            url, min_size=pool_size, max_size=pool_size, open=True, name="callgate", kwargs={"row_factory": dict_row}
        )
        self.pool.wait(timeout=30)  # every connection made before the first request needs one
        self._workers = concurrent.futures.ThreadPoolExecutor(pool_size, thread_name_prefix="callgate-pg")
        self._tails: dict[str, asyncio.Future[Any]] = {}  # order_key -> its last write
        self._inflight = 0
        self._room = asyncio.Event()
        self.on_notify: Callable[[str], None] | None = None
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _run(self, op: Op, args: tuple[Any, ...]) -> Any:
        with self.pool.connection() as conn, conn.transaction():
            return op(Conn(conn, "postgres"), *args)

    # -- the schema ------------------------------------------------------------------------------

    def migrate(self) -> tuple[int, int]:
        """Apply the pending migrations, each step under the advisory lock;
        ``(version before, after)``. Raises :class:`~proxy.errors.SchemaTooNew`."""
        return migrations.migrate(self._locked, self.path)

    def check(self) -> int:
        """The schema version, when it is this callgate's
        (:func:`proxy.storage.migrations.check`)."""
        return int(self.run_sync(migrations.check, self.path))

    def _locked(self, op: Op) -> Any:
        def run(c: Conn) -> Any:
            c.execute("SELECT pg_advisory_xact_lock(:key)", {"key": _MIGRATION_LOCK})
            return op(c)

        return self._run(run, ())

    def _timed(self, op: Op, args: tuple[Any, ...]) -> Any:
        """A write: the transaction's time, connection checkout to commit, is measured."""
        began = time.perf_counter()
        result = self._run(op, args)
        labelled(STORAGE_WRITE, "postgres").observe(time.perf_counter() - began)
        return result

    # -- the async interface -------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening for other instances' notifications."""
        self._loop = asyncio.get_running_loop()
        if self._listener is None:
            self._listener = threading.Thread(target=self._listen, name="callgate-pg-listen", daemon=True)
            self._listener.start()

    async def room(self) -> None:
        """Wait until fewer than ``max_queue`` operations are in flight."""
        while self._inflight >= self.max_queue:
            self._room.clear()
            await self._room.wait()

    def _call(self, op: Op, args: tuple[Any, ...], kw: dict[str, Any], *, write: bool = True) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        self._inflight += 1
        run = self._timed if write else self._run
        fut = loop.run_in_executor(self._workers, run, functools.partial(op, **kw) if kw else op, args)

        def done(_: asyncio.Future[Any]) -> None:
            self._inflight -= 1
            if self._inflight < self.max_queue // 2:
                self._room.set()

        fut.add_done_callback(done)
        return fut

    def post(self, op: Op, *args: Any, order_key: str | None = None) -> None:
        """Queue a write nobody waits for; a failure is logged."""
        self.submit(op, *args, order_key=order_key)

    def submit(self, op: Op, *args: Any, order_key: str | None = None, **kw: Any) -> asyncio.Future[Any]:
        """Queue a write (after the earlier ones of ``order_key``); the future
        resolves after its commit. A failure is logged."""
        fut = self._ordered(op, args, kw, order_key)
        fut.add_done_callback(_log_failure)
        return fut

    async def write(self, op: Op, *args: Any, order_key: str | None = None, **kw: Any) -> Any:
        """Run a write (after the earlier ones of ``order_key``) and wait for its commit."""
        return await self._ordered(op, args, kw, order_key)

    async def settled(self, order_key: str | None = None) -> None:
        """Returns once the writes queued for ``order_key`` (every key's, with
        ``None``) have committed or failed."""
        tails = list(self._tails.values()) if order_key is None else [t for t in [self._tails.get(order_key)] if t]
        if tails:
            await asyncio.wait([asyncio.shield(t) for t in tails])

    async def read(self, op: Op, *args: Any, **kw: Any) -> Any:
        """A read on a pooled connection, in a worker thread."""
        return await self._call(op, args, kw, write=False)

    def run_sync(self, op: Op, *args: Any, **kw: Any) -> Any:
        """``op`` in one transaction on this thread (the CLI; never on the event loop)."""
        return self._run(functools.partial(op, **kw) if kw else op, args)

    def _ordered(self, op: Op, args: tuple[Any, ...], kw: dict[str, Any], key: str | None) -> asyncio.Future[Any]:
        """The write, started now or chained after the last one of ``key``."""
        prev = self._tails.get(key) if key is not None else None
        if prev is None or prev.done():
            fut = self._call(op, args, kw)
        else:
            fut = asyncio.ensure_future(self._after(prev, op, args, kw))
        if key is not None:
            self._tails[key] = fut
            fut.add_done_callback(lambda f: self._tails.pop(key, None) if self._tails.get(key) is f else None)
        return fut

    async def _after(self, prev: asyncio.Future[Any], op: Op, args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
        with contextlib.suppress(Exception):
            await asyncio.shield(prev)
        return await self._call(op, args, kw)

    # -- notifications ---------------------------------------------------------------------------

    def _listen(self) -> None:
        import psycopg

        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute("LISTEN callgate")
                    if not first:
                        self._deliver("reset:")  # what was said while away is lost: caches start over
                    first = False
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._deliver(note.payload)
            except Exception as e:  # the database went away: reconnect (readers poll meanwhile)
                if not self._stop.is_set():
                    log.warning("LISTEN connection lost (%s); reconnecting", e)
                    self._stop.wait(1.0)

    def _deliver(self, payload: str) -> None:
        if self.on_notify is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._loop.call_soon_threadsafe(self.on_notify, payload)

    async def ping(self, timeout_s: float = 2.0) -> None:
        """The database answers ``SELECT 1`` on a pooled connection within ``timeout_s``
        (s); else :class:`~proxy.errors.StoreUnavailable` naming the error."""
        try:
            await asyncio.get_running_loop().run_in_executor(self._workers, self._ping, timeout_s)
        except Exception as e:  # psycopg's and the pool's errors
            raise StoreUnavailable(f"the database does not answer ({self.path}): {type(e).__name__}: {e}") from None

    def _ping(self, timeout_s: float) -> None:
        with self.pool.connection(timeout=timeout_s) as conn:
            conn.execute("SELECT 1")

    # -- closing -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop listening, then close the pool (off the event loop)."""
        await asyncio.get_running_loop().run_in_executor(None, self.close_sync)

    def close_sync(self) -> None:
        """Stop listening, the worker threads and the pool."""
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
            self._listener = None
        self._workers.shutdown(wait=True)
        self.pool.close()


def _without_password(url: str) -> str:
    """``url`` with its password (if any) as ``***``, for messages and logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _log_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("a database write failed: %s: %s", type(fut.exception()).__name__, fut.exception())
