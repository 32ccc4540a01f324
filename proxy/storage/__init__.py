"""Durable storage: calls, turns, control events, deliveries, end-function jobs.

The database is the source of truth for every call; memory is a cache of it. One
interface, :class:`Store`, with one engine per module; every operation is written
once, as SQL in :mod:`~proxy.storage.ops` (one module per aggregate), and runs in
a transaction the engine opens:

==============  =====================================================================
``statuses``    every stored status as an enum (the schema CHECKs the same values)
``records``     typed records: rows read by column name, values written, the call record
``db``          the connection surface the operations use (named parameters, rows by name)
``ops``         every operation: ``calls``, ``reads``, ``queue`` (jobs and deliveries),
                ``instances``, ``sip`` (the OpenAI SIP door)
``migrations``  the numbered schema migrations and their runner
``schema``      what the tables hold
``sqlite``      the embedded engine: a writer thread, reader threads, WAL
``batch``       SQLite's group commit: the writer's queue and one batch's transaction
``wakeup``      SQLite's wake-ups between processes (PostgreSQL has NOTIFY)
``diagnose``    why a SQLite file cannot be opened: the path and the OS error, in one line
``postgres``    the shared engine: a connection pool in worker threads, LISTEN/NOTIFY
``claims``      the loop of a worker on claimed rows (jobs, deliveries)
``views``       what the operator page reads (calls list filters, a change fingerprint)
==============  =====================================================================

Records go in and out as typed values and JSON-ready data; storage knows nothing of
HTTP, steps or pydantic models.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from .records import (
    CallRecord,
    CallStart,
    CommandRecord,
    Delivery,
    Job,
    NewEvent,
    TurnOutcome,
    TurnRecord,
    TurnStart,
    end_function_summary,
)
from .sqlite import SqliteStore
from .statuses import TERMINAL, CallStatus, DeliveryStatus, EventType, JobStatus, TurnStatus

__all__ = [
    "TERMINAL",
    "CallRecord",
    "CallStart",
    "CallStatus",
    "CommandRecord",
    "Delivery",
    "DeliveryStatus",
    "EventType",
    "Job",
    "JobStatus",
    "NewEvent",
    "OpenMode",
    "SqliteStore",
    "Store",
    "TurnOutcome",
    "TurnRecord",
    "TurnStart",
    "TurnStatus",
    "end_function_summary",
    "open_store",
]


class Store(Protocol):
    """What an engine offers. ``op`` is a function of :mod:`~proxy.storage.ops` (or
    any ``op(conn, *args)``); it runs in a transaction of its own (or a savepoint of
    a batch).

    ``order_key``: writes given the same key (a call's record key) commit in the
    order they were queued, whatever the engine; :meth:`settled` waits for them.
    ``shared``: several processes may use the database at once; ``local``: all of
    them on this machine (SQLite), so a process that is gone is known by its pid.
    """

    dialect: str
    shared: bool
    local: bool
    path: str  # where it is (a file, or the URL without its password)
    on_notify: Callable[[str], None] | None  # what other instances' commits wake

    async def start(self) -> None:
        """Start the engine's threads (writes before this fail)."""
        ...

    async def room(self) -> None:
        """Returns when the engine can take more writes (backpressure)."""
        ...

    def post(self, op: Callable[..., Any], *args: Any, order_key: str | None = None) -> None:
        """Queue a write nobody waits for; failures are logged."""
        ...

    def submit(self, op: Callable[..., Any], *args: Any, order_key: str | None = None, **kw: Any) -> asyncio.Future[Any]:
        """Queue a write; the future resolves after the commit (failures are logged)."""
        ...

    async def write(self, op: Callable[..., Any], *args: Any, order_key: str | None = None, **kw: Any) -> Any:
        """A write, awaited until committed."""
        ...

    async def settled(self, order_key: str | None = None) -> None:
        """Returns once the writes queued before it for ``order_key`` (every write,
        with ``None``) have committed or failed."""
        ...

    async def read(self, op: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """A read, off the event loop."""
        ...

    def run_sync(self, op: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """On the calling thread (the CLI)."""
        ...

    def migrate(self) -> tuple[int, int]:
        """Apply the pending schema migrations: ``(version before, after)``."""
        ...

    async def ping(self) -> None:
        """The database answers (``GET /readyz``); else
        :class:`~proxy.errors.StoreUnavailable` naming why."""
        ...

    def check(self) -> int:
        """The schema version, if it is this callgate's (else a ``StorageError``)."""
        ...

    async def close(self) -> None:
        """Finish what is queued and close."""
        ...

    def close_sync(self) -> None:
        """Close, on the calling thread (the CLI)."""
        ...


class OpenMode(StrEnum):
    """What a command does with the database it opens."""

    SERVE = "serve"  # callgate serve: pending migrations
    MIGRATE = "migrate"  # callgate migrate: the same, and nothing else
    WRITE = "write"  # a CLI command that writes: the schema must be this callgate's
    READ = "read"  # a CLI command that only reads: the same, and SQLite opens read-only


def open_store(
    path: str | Path,
    *,
    url: str | None = None,
    mode: OpenMode = OpenMode.SERVE,
    wal_max_bytes: int = 16 << 20,
    pool_size: int = 8,
    group_commit_ms: float = 20.0,
) -> Store:
    """The engine for ``storage.url`` (PostgreSQL) when set, else ``storage.path``
    (SQLite), opened for ``mode``. Raises :class:`~proxy.errors.StoreUnavailable`,
    :class:`~proxy.errors.SchemaTooOld` (``WRITE``, ``READ``),
    :class:`~proxy.errors.SchemaTooNew`, and the driver's error when the database
    cannot be reached."""
    store: Any
    if url:
        from .postgres import PostgresStore

        store = PostgresStore(url, pool_size=pool_size)
    else:
        if mode is OpenMode.WRITE:  # checked before a connection that may write opens it
            probe = SqliteStore(path, readonly=True)
            try:
                probe.check()
            finally:
                probe.close_sync()
        store = SqliteStore(
            path, wal_max_bytes=wal_max_bytes, group_commit_ms=group_commit_ms, readonly=mode is OpenMode.READ
        )
    try:
        if mode in (OpenMode.SERVE, OpenMode.MIGRATE):
            store.migrate()  # under a lock: processes starting together migrate once
        else:
            store.check()
    except BaseException:
        store.close_sync()
        raise
    result: Store = store
    return result
