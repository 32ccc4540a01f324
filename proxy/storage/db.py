"""One connection, either engine: the small surface the operations use.

:class:`Conn` wraps a ``sqlite3`` or ``psycopg`` (sync) connection. SQL is written
once with ``?`` placeholders; for PostgreSQL they become ``%s``. ``for_update`` and
``skip_locked`` are the row-locking clauses PostgreSQL needs and SQLite (one writer at
a time) does not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["Conn", "Row"]

Row = Sequence[Any]

_QMARK = re.compile(r"\?")


class Conn:
    """``dialect``: ``"sqlite"`` or ``"postgres"``."""

    __slots__ = ("raw", "dialect", "for_update", "skip_locked")

    def __init__(self, raw: Any, dialect: str) -> None:
        self.raw = raw
        self.dialect = dialect
        pg = dialect == "postgres"
        self.for_update = " FOR UPDATE" if pg else ""
        self.skip_locked = " FOR UPDATE SKIP LOCKED" if pg else ""

    def _sql(self, sql: str) -> str:
        return _QMARK.sub("%s", sql) if self.dialect == "postgres" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; returns the cursor (``rowcount``, ``fetchall``)."""
        return self.raw.execute(self._sql(sql), tuple(params))

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(self.execute(sql, params).fetchall())

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return self.execute(sql, params).fetchone()

    def value(self, sql: str, params: Sequence[Any] = (), default: Any = None) -> Any:
        row = self.one(sql, params)
        return row[0] if row is not None else default

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in rows]
        if not rows:
            return
        if self.dialect == "postgres":
            with self.raw.cursor() as cur:
                cur.executemany(self._sql(sql), rows)
        else:
            self.raw.executemany(sql, rows)

    def notify(self, payload: str) -> None:
        """Wake the other instances on commit (PostgreSQL ``NOTIFY callgate``); nothing
        on SQLite, which one process uses."""
        if self.dialect == "postgres":
            self.execute("SELECT pg_notify('callgate', ?)", (payload,))

    def marks(self, n: int) -> str:
        """``?, ?, ?`` for an ``IN (...)`` of ``n`` values."""
        return ", ".join("?" * n)
