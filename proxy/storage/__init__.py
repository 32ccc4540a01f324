"""Durable storage: calls, turns, control events, deliveries, end-function jobs.

The database is the source of truth for every call; memory is a cache of it. One
interface, :class:`Store`, with one engine per module; every operation is written
once, as SQL in :mod:`~proxy.storage.ops`, and runs in a transaction the engine
opens:

=============  =====================================================================
``schema``     the tables and their versioned migrations
``ops``        every operation (both engines)
``records``    statuses, jobs, deliveries, the assembled call record
``db``         the connection surface the operations use (placeholders, locking)
``sqlite``     the embedded engine: a writer thread, reader threads, WAL
``postgres``   the shared engine: a connection pool in worker threads, LISTEN/NOTIFY
``legacy``     moving a database of the first layout into the current one
``claims``     the loop of a worker on claimed rows (jobs, deliveries)
``views``      what the operator page reads (calls list filters, a change fingerprint)
=============  =====================================================================

May import: ``proxy.core``, ``proxy.errors``. Records go in and out as plain
JSON-ready data; storage knows nothing of HTTP, steps or pydantic models.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from .records import (
    TERMINAL,
    CallRow,
    Delivery,
    DeliveryStatus,
    Job,
    JobStatus,
    end_function_summary,
)
from .sqlite import SqliteStore, StoreLocked

__all__ = [
    "TERMINAL",
    "CallRow",
    "Delivery",
    "DeliveryStatus",
    "Job",
    "JobStatus",
    "SqliteStore",
    "Store",
    "StoreLocked",
    "end_function_summary",
    "open_store",
]


class Store(Protocol):
    """What an engine offers. ``op`` is a function of :mod:`~proxy.storage.ops` (or
    any ``op(conn, *args)``); it runs in a transaction of its own (or a savepoint of
    a batch).

    ``fifo``: writes take effect in the order they were submitted (otherwise the
    caller orders the writes of one call itself). ``shared``: several processes may
    use the database at once.
    """

    dialect: str
    fifo: bool
    shared: bool
    path: str  # where it is (a file, or the URL)
    on_notify: Callable[[str], None] | None  # what other instances' commits wake

    async def start(self) -> None: ...

    async def room(self) -> None:
        """Returns when the engine can take more writes (backpressure)."""
        ...

    def post(self, op: Callable[..., Any], *args: Any) -> None:
        """Queue a write nobody waits for (``fifo`` engines); failures are logged."""
        ...

    def submit(self, op: Callable[..., Any], *args: Any, **kw: Any) -> asyncio.Future[Any]:
        """Queue a write; the future resolves after the commit (failures are logged)."""
        ...

    async def write(self, op: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """A write, awaited until committed."""
        ...

    async def read(self, op: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """A read, off the event loop."""
        ...

    def run_sync(self, op: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """On the calling thread (the CLI)."""
        ...

    async def close(self) -> None: ...

    def close_sync(self) -> None: ...


def open_store(path: str | Path, *, url: str | None = None, wal_max_bytes: int = 16 << 20, pool_size: int = 8) -> Store:
    """The engine for ``storage.url`` (PostgreSQL) when set, else ``storage.path``
    (SQLite). Raises the driver's error when PostgreSQL cannot be reached."""
    if url:
        from .postgres import PostgresStore

        return PostgresStore(url, pool_size=pool_size)
    return SqliteStore(path, wal_max_bytes=wal_max_bytes)
