"""The SQLite engine: one writer thread that owns the write connection, reader threads.

Writes (:meth:`SqliteStore.post`, :meth:`SqliteStore.submit`, :meth:`SqliteStore.write`)
are queued to the writer thread, which commits them in groups (:mod:`.batch`): posted
writes wait up to ``group_commit_ms`` for company, an awaited one goes at once with
whatever was queued before it; up to ``batch`` operations run in one transaction. A
failing operation is undone alone (the batch is run again, each operation in a
transaction of its own), and the futures resolve after the commit, in submission
order (the store is FIFO). The event loop never waits for SQLite; a caller that needs
the write done (ending a call: nothing is sent before it is written) awaits its future.
Reads run on a small pool of threads with connections of their own (WAL lets them
read while the writer writes).

WAL mode, ``synchronous=NORMAL`` (survives a process crash, ``kill -9``; a power
loss may take the last transactions). The WAL is kept small: SQLite's automatic
checkpoint runs in the writer thread, ``journal_size_limit`` truncates the file
after checkpoints, and a ``TRUNCATE`` checkpoint runs between batches whenever the
WAL file passes ``wal_max_bytes``.

Several processes may serve one database file at once (``shared``: a restart's
new server beside the old one, ``serve --workers N``), all on one machine (``local``):
each write transaction is ``BEGIN IMMEDIATE`` (one writer at a time across
processes, the others wait up to ``busy_timeout``), claims are leases as on
PostgreSQL, and a commit's wake-ups reach the other processes through
:mod:`.wakeup`. The CLI's read-only commands open the file read-only
(``readonly``), with no pragma that writes and no checkpoint, so they leave it as
it was. :meth:`SqliteStore.migrate` holds an exclusive lock on ``<path>.lock``
while it migrates (processes starting together migrate once) and copies the file
to ``<path>.bak-v<N>`` before it applies a migration (:mod:`proxy.storage.migrations`).

Writes are FIFO within a process, so the ``order_key`` of :class:`~proxy.storage.Store`
needs nothing more here: every write commits after the ones queued before it (a
call is served by one process at a time).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import fcntl
import functools
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import StoreUnavailable
from . import migrations
from .batch import WriteQueue, run_batch, settle
from .db import Conn
from .diagnose import file_identity, moved
from .diagnose import unavailable as _unavailable
from .wakeup import Wakeups

__all__ = ["SqliteStore"]

log = logging.getLogger("callgate.storage")

Op = Callable[..., Any]


class SqliteStore:
    """One SQLite database file; see the module docstring.

    ``path``: the file (its folder is made, unless ``readonly``); ``wal_max_bytes``:
    the WAL size past which it is truncated (bytes); ``batch``: the most operations
    per commit; ``group_commit_ms``: how long posted writes wait for more to share
    their commit (ms; 0: none); ``readonly``: open the file read-only (the CLI's
    reading commands).
    The schema is neither made nor checked here: :meth:`migrate` or :meth:`check`.
    """

    dialect = "sqlite"
    shared = True  # several processes may serve it at once
    local = True  # all of them on this machine: a process's liveness is its pid
    def __init__(
        self,
        path: str | Path,
        *,
        wal_max_bytes: int = 16 << 20,
        batch: int = 256,
        readers: int = 2,
        max_queue: int = 2000,
        group_commit_ms: float = 20.0,
        readonly: bool = False,
    ) -> None:
        self.path, self.readonly = str(path), readonly
        self.wal_max_bytes, self.batch = wal_max_bytes, batch
        try:
            if not readonly:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            if not readonly and os.path.exists(self.path) and not os.access(self.path, os.W_OK):
                # SQLite would open it read-only, silently, and fail at the first write
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), self.path)
            self._write_conn = self._connect()
        except (OSError, sqlite3.Error) as e:
            raise _unavailable(self.path, e, readonly) from None
        self._identity = file_identity(self.path)  # for ping: the file is still the one opened
        self._queue = WriteQueue(group_commit_ms / 1000)
        self._writer: threading.Thread | None = None
        self._local = threading.local()
        self._readers = concurrent.futures.ThreadPoolExecutor(readers, thread_name_prefix="callgate-sqlite-read")
        self._reader_conns: list[sqlite3.Connection] = []
        self.commits, self.max_queue = 0, max_queue
        self.on_notify: Callable[[str], None] | None = None  # what other processes' commits wake
        self._wakeups = None if readonly else Wakeups(self.path)
        self._room: asyncio.Event | None = None  # set when a full queue has room again
        self._room_loop: asyncio.AbstractEventLoop | None = None

    # -- connections ----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            uri = Path(self.path).resolve().as_uri() + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=10000")
        else:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute(f"PRAGMA journal_size_limit={self.wal_max_bytes}")
        conn.row_factory = sqlite3.Row
        return conn

    # -- the schema -----------------------------------------------------------------------

    def migrate(self) -> tuple[int, int]:
        """Apply the pending migrations (after copying the file to
        ``<path>.bak-v<N>``); ``(version before, after)``. Raises
        :class:`~proxy.errors.SchemaTooNew`."""
        try:
            lock = open(self.path + ".lock", "w")  # noqa: SIM115 - closed below
        except OSError as e:
            raise _unavailable(self.path, e) from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when closed, or when the process dies
            try:
                return migrations.migrate(self.run_sync, self.path, self._backup)
            except sqlite3.OperationalError as e:  # the first write: a file or folder it may not write
                raise _unavailable(self.path, e) from None

    def check(self) -> int:
        """The schema version, when it is this callgate's
        (:func:`proxy.storage.migrations.check`)."""
        return int(self.run_sync(migrations.check, self.path))

    def _backup(self, version: int) -> None:
        target = f"{self.path}.bak-v{version}"
        with contextlib.closing(sqlite3.connect(target)) as copy:
            self._write_conn.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        log.info("%s: copied to %s before migrating", self.path, target)

    # -- the writer -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the writer thread; listen for the other processes' wake-ups."""
        if self._wakeups is not None and self._writer is None:
            self._wakeups.listen(asyncio.get_running_loop(), self._woken)
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="callgate-sqlite-write", daemon=True)
            self._writer.start()

    def _woken(self, payload: str) -> None:
        if self.on_notify is not None:
            self.on_notify(payload)

    async def room(self) -> None:
        """Wait while ``max_queue`` writes are queued (backpressure: new turns wait for
        the writer rather than memory holding an unbounded backlog)."""
        if len(self._queue) < self.max_queue:
            return
        if self._room is None:
            self._room, self._room_loop = asyncio.Event(), asyncio.get_running_loop()
        while len(self._queue) >= self.max_queue:
            self._room.clear()
            await self._room.wait()

    def post(self, op: Op, *args: Any, order_key: str | None = None) -> None:
        """Queue a write nobody waits for: no future, no wake-up of the event loop
        (the hot path: a turn's rows). A failure is logged by the writer."""
        if self._writer is None:
            raise RuntimeError("the store is not started")
        self._queue.put((op, args, None, None), urgent=False)

    def submit(self, op: Op, *args: Any, order_key: str | None = None, **kw: Any) -> asyncio.Future[Any]:
        """Queue a write; the future resolves after its commit. Nobody needs to await
        it: a failure is logged. It shares a group commit (waits up to
        ``group_commit_ms``) like :meth:`post`: its future is for callbacks (followers,
        the delivery), not for a request waiting on it."""
        fut = self._enqueue(functools.partial(op, **kw) if kw else op, args, urgent=False)
        fut.add_done_callback(_log_failure)
        return fut

    async def write(self, op: Op, *args: Any, order_key: str | None = None, **kw: Any) -> Any:
        """Run a write and wait for its commit; returns what ``op`` returned."""
        return await self._enqueue(functools.partial(op, **kw) if kw else op, args, urgent=True)

    async def settled(self, order_key: str | None = None) -> None:
        """Returns once every write queued before it has committed (or failed)."""
        with contextlib.suppress(Exception):
            await self._enqueue(_barrier, (), urgent=True)

    def _enqueue(self, op: Op, args: tuple[Any, ...], *, urgent: bool) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if self._writer is None:
            fut.set_exception(RuntimeError("the store is not started"))
        else:
            self._queue.put((op, args, fut, loop), urgent=urgent)
        return fut

    def _write_loop(self) -> None:
        conn = Conn(self._write_conn, "sqlite")
        while True:
            group = self._queue.take(self.batch)
            stop = None in group
            items = [item for item in group[: group.index(None)] if item is not None] if stop else group
            if items:
                results, commits = run_batch(self._write_conn, conn, items)  # type: ignore[arg-type]
                self.commits += commits
                self._wake(conn)
                settle(items, results)  # type: ignore[arg-type]
                self._trim_wal()
            if self._room is not None and self._room_loop is not None and len(self._queue) < self.max_queue // 2:
                self._room_loop.call_soon_threadsafe(self._room.set)
            if stop:
                return

    def _wake(self, conn: Conn) -> None:
        """Send the wake-ups of what was just committed (or tried: a wake-up is a hint)."""
        if conn.notes:
            if self._wakeups is not None:
                self._wakeups.send(conn.notes)
            conn.notes.clear()

    def _trim_wal(self) -> None:
        try:
            size = os.path.getsize(self.path + "-wal")
        except OSError:
            return
        if size > self.wal_max_bytes:
            with contextlib.suppress(sqlite3.Error):
                self._write_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- reads ------------------------------------------------------------------------------

    async def read(self, op: Op, *args: Any, **kw: Any) -> Any:
        """Run ``op`` on a reader thread; returns what it returned."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read, functools.partial(op, **kw) if kw else op, args)

    def _read(self, op: Op, args: tuple[Any, ...]) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            self._reader_conns.append(conn)
        conn.execute("BEGIN")
        try:
            return op(Conn(conn, "sqlite"), *args)
        finally:
            conn.execute("COMMIT")

    async def ping(self) -> None:
        """The database answers: its file is still the one opened (not removed or
        replaced) and its schema version reads; else :class:`StoreUnavailable` naming why."""
        problem = moved(self.path, self._identity)
        if problem is None:
            try:
                await self.read(migrations.version_of)
            except sqlite3.Error as e:
                problem = f"the database does not answer (storage.path={self.path}): {e}"
        if problem is not None:
            raise StoreUnavailable(problem)

    # -- for the CLI, and tests -----------------------------------------------------------------

    def run_sync(self, op: Op, *args: Any, **kw: Any) -> Any:
        """Run ``op`` in one transaction on this thread (the CLI; never on the event loop)."""
        raw = self._write_conn
        raw.execute("BEGIN" if self.readonly else "BEGIN IMMEDIATE")
        conn = Conn(raw, "sqlite")
        try:
            result = op(conn, *args, **kw)
        except BaseException:
            raw.execute("ROLLBACK")
            raise
        raw.execute("COMMIT")
        self._wake(conn)
        return result

    def wal_bytes(self) -> int:
        """The WAL file's size now (bytes)."""
        try:
            return os.path.getsize(self.path + "-wal")
        except OSError:
            return 0

    async def close(self) -> None:
        """Finish the queued writes, stop the threads, truncate the WAL (not when
        ``readonly``), close; the blocking parts off the event loop."""
        if self._writer is not None:
            self._queue.put(None, urgent=True)
            await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
            self._writer = None
        if self._wakeups is not None:  # its reader is the loop's: removed on the loop
            self._wakeups.close()
            self._wakeups = None
        await asyncio.to_thread(self.close_sync)  # the WAL checkpoint

    def close_sync(self) -> None:
        """Stop the reader threads and close every connection (the writer thread
        must have stopped: :meth:`close`)."""
        self._readers.shutdown(wait=True)
        for conn in self._reader_conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        if not self.readonly:
            with contextlib.suppress(sqlite3.Error):
                self._write_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._write_conn.close()
        if self._wakeups is not None:
            self._wakeups.close()
            self._wakeups = None


def _barrier(c: Conn) -> None:
    """A write that does nothing: when it commits, every write queued before it has."""


def _log_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("a database write failed: %s: %s", type(fut.exception()).__name__, fut.exception())
