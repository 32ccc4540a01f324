"""Group commit for SQLite's writer thread: the queue of writes and one batch's transaction.

A write nobody waits for (``post``: a turn's rows) does not wake the writer thread:
the first one of a group does, and the writer then waits up to ``linger_s`` for
company before it takes everything queued (up to ``limit``) into one transaction.
A write someone waits for (``submit``, ``write``, ``settled``: an end, a control
event) wakes it at once, and takes the writes queued before it into the same commit.
The queue is FIFO, so the order of every call's writes (``order_key``) is kept.

Why: each commit costs the writer thread its ``BEGIN``, its ``COMMIT`` (the WAL
pages it writes) and the Python around them, all while it competes with the event
loop for the GIL; with writes one by one, that was most of the ~400-700 µs of
writer CPU per turn (``tests/bench/writes.py``). The price: a posted write reaches
the file up to ``linger_s`` later, so a ``kill -9`` may lose that much more of the
turns' rows (never an end: it is awaited, and nothing is sent before it is written).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from ..metrics import STORAGE_WRITE, labelled
from .db import Conn

__all__ = ["Item", "WriteQueue", "run_batch", "settle"]

log = logging.getLogger("callgate.storage")

# (op, args, future or None, its loop or None); None alone stops the writer
Item = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any] | None", "asyncio.AbstractEventLoop | None"]


class WriteQueue:
    """The writes waiting for the writer thread (see the module docstring).
    ``linger_s``: how long a group of posted writes waits for more (s; 0: none)."""

    def __init__(self, linger_s: float) -> None:
        self.linger_s = linger_s
        self._items: collections.deque[Item | None] = collections.deque()
        self._wake = threading.Event()  # a group began, or someone waits
        self._urgent = threading.Event()  # someone waits: no lingering
        self._armed = False  # the writer was woken for the group being gathered

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Item | None, *, urgent: bool) -> None:
        """Queue ``item`` (``None``: stop, after what is queued); ``urgent`` when a
        caller awaits it. From any thread (the event loop's, usually)."""
        self._items.append(item)
        if urgent:
            self._urgent.set()
            self._wake.set()
        elif not self._armed:
            self._armed = True
            self._wake.set()

    def take(self, limit: int) -> list[Item | None]:
        """In the writer thread: wait for a group, then up to ``limit`` items in
        order (possibly none: a spurious wake-up)."""
        self._wake.wait()
        self._wake.clear()
        if self.linger_s > 0 and not self._urgent.is_set():
            self._urgent.wait(self.linger_s)
        self._urgent.clear()
        self._armed = False
        out: list[Item | None] = []
        while self._items and len(out) < limit:
            out.append(self._items.popleft())
        if self._items:  # a backlog is a group already: the next one without lingering
            self._urgent.set()
            self._wake.set()
        return out


class OpFailed(Exception):
    """An operation of a batch raised (its exception is the cause)."""


def transaction(raw: sqlite3.Connection, conn: Conn, items: list[Item]) -> list[tuple[bool, Any]]:
    """``items`` in one ``BEGIN IMMEDIATE`` ... ``COMMIT``; each op's result. Raises
    :class:`OpFailed` (rolled back) when an op raised, the driver's error when the
    commit failed."""
    began = time.perf_counter()
    raw.execute("BEGIN IMMEDIATE")
    try:
        results = []
        for op, args, _, _ in items:
            try:
                results.append((True, op(conn, *args)))
            except Exception as e:
                raise OpFailed() from e
        raw.execute("COMMIT")
        labelled(STORAGE_WRITE, "sqlite").observe(time.perf_counter() - began)
        return results
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            raw.execute("ROLLBACK")
        raise


def _alone(raw: sqlite3.Connection, conn: Conn, item: Item) -> tuple[bool, Any]:
    try:
        return transaction(raw, conn, [item])[0]
    except OpFailed as e:
        return False, e.__cause__
    except Exception as e:  # the commit itself failed (disk full, ...)
        return False, e


def run_batch(raw: sqlite3.Connection, conn: Conn, items: list[Item]) -> tuple[list[tuple[bool, Any]], int]:
    """The batch in one transaction; when an operation fails, the batch again with
    each operation in a transaction of its own, so that only that one is undone.
    Returns each item's ``(ok, result or exception)`` and the number of commits made;
    :func:`settle` hands them out."""
    commits = 1
    try:
        results = transaction(raw, conn, items)
    except OpFailed:
        results = [_alone(raw, conn, item) for item in items]
        commits = len(items)
    except Exception as e:  # the commit itself failed (disk full, ...): nothing was written
        results = [(False, e)] * len(items)
        commits = 0
    return results, commits


def settle(items: list[Item], results: list[tuple[bool, Any]]) -> None:
    """Resolve the items' futures (one wake-up of each event loop per batch); log a
    failed ``post`` (nobody waits for it)."""
    by_loop: dict[Any, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
    for (ok, value), (op, _, fut, loop) in zip(results, items):
        if fut is not None:
            by_loop.setdefault(loop, []).append((fut, ok, value))
        elif not ok:
            log.error("a database write failed: %s: %s: %s", getattr(op, "__name__", op), type(value).__name__, value)
    for loop, done in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_settle_all, done)


def _settle_all(done: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in done:
        if fut.done():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)
