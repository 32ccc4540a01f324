"""The PostgreSQL engine: the shared store for several callgate processes.

The operations are the same SQL as SQLite's (:mod:`~proxy.storage.ops`); each runs in
a transaction of its own on a connection of a ``psycopg_pool.ConnectionPool``, in a
worker thread, so the event loop never waits on the database and the CLI uses the
very same code (``psycopg`` 3, sync API). PostgreSQL decides what must hold across
processes: ``FOR UPDATE SKIP LOCKED`` claims, row locks on the call row, unique
indexes, conditional updates.

Writes of one call are ordered by the caller (the registry chains them); the engine
is not FIFO. A write that stores events, ends a call, or queues jobs and deliveries
also ``NOTIFY``-s channel ``callgate`` (delivered on commit): one thread per process
``LISTEN``-s and hands each payload to ``on_notify`` (``events:<call>``,
``ended:<call>``, ``jobs``, ``deliveries``; ``reset:`` after the listening
connection was lost and made again). A notification is only a wake-up: every
reader also polls, so a lost one only delays.

Schema migrations run at start under ``pg_advisory_xact_lock``: N instances starting
together migrate once.
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

from ..metrics import STORAGE_WRITE
from . import schema
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
    fifo = False
    shared = True

    def __init__(self, url: str, *, pool_size: int = 8, max_queue: int = 2000) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self.url = url
        self.path = url
        self.pool_size = pool_size
        self.max_queue = max_queue
        with psycopg.connect(url, autocommit=False) as conn:
            _migrate(conn)
        self.pool = ConnectionPool(url, min_size=pool_size, max_size=pool_size, open=True, name="callgate")
        self.pool.wait(timeout=30)  # every connection made before the first request needs one
        self._workers = concurrent.futures.ThreadPoolExecutor(pool_size, thread_name_prefix="callgate-pg")
        self._inflight = 0
        self._room = asyncio.Event()
        self.on_notify: Callable[[str], None] | None = None
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _run(self, op: Op, args: tuple[Any, ...]) -> Any:
        with self.pool.connection() as conn, conn.transaction():
            return op(Conn(conn, "postgres"), *args)

    def _timed(self, op: Op, args: tuple[Any, ...]) -> Any:
        """A write: the transaction's time, connection checkout to commit, is measured."""
        began = time.perf_counter()
        result = self._run(op, args)
        STORAGE_WRITE.labels("postgres").observe(time.perf_counter() - began)
        return result

    # -- the async interface -------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening for other instances' notifications."""
        self._loop = asyncio.get_running_loop()
        if self._listener is None:
            self._listener = threading.Thread(target=self._listen, name="callgate-pg-listen", daemon=True)
            self._listener.start()

    async def room(self) -> None:
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

    def post(self, op: Op, *args: Any) -> None:
        self.submit(op, *args)

    def submit(self, op: Op, *args: Any, **kw: Any) -> asyncio.Future[Any]:
        fut = self._call(op, args, kw)
        fut.add_done_callback(_log_failure)
        return fut

    async def write(self, op: Op, *args: Any, **kw: Any) -> Any:
        return await self._call(op, args, kw)

    async def read(self, op: Op, *args: Any, **kw: Any) -> Any:
        return await self._call(op, args, kw, write=False)

    def run_sync(self, op: Op, *args: Any, **kw: Any) -> Any:
        return self._run(functools.partial(op, **kw) if kw else op, args)

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

    # -- closing -------------------------------------------------------------------------------

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close_sync)

    def close_sync(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
            self._listener = None
        self._workers.shutdown(wait=True)
        self.pool.close()


def _migrate(conn: Any) -> None:
    """Apply the schema's migrations once, whoever starts first."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
        if version >= schema.VERSION:
            return
        for statement in schema.ddl("postgres"):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (schema.VERSION,))


def _log_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("a database write failed: %s: %s", type(fut.exception()).__name__, fut.exception())
