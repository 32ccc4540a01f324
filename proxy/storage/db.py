"""One connection, either engine: the small surface the operations use.

:class:`Conn` wraps a ``sqlite3`` or ``psycopg`` (sync) connection whose rows are
mappings (``sqlite3.Row``; psycopg's ``dict_row``): operations read columns by
name. SQL is written once with named parameters, ``:name``, as SQLite takes them;
for PostgreSQL :func:`pyformat` makes them ``%(name)s`` and doubles every literal
``%`` (psycopg reads ``%`` as a placeholder anywhere in a query, inside string
literals too), with quoted strings and ``::`` casts left alone.

A list of values goes in as one parameter: ``WHERE id {c.any("ids")}`` with
``{"ids": c.array(values)}`` (``IN (SELECT value FROM json_each(:ids))`` on SQLite,
``= ANY(%(ids)s)`` on PostgreSQL).

``for_update`` and ``skip_locked`` are the row-locking clauses PostgreSQL needs and
SQLite (one writer at a time) does not.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..core import json_codec

__all__ = ["Conn", "Params", "Row", "pyformat"]

Row = Mapping[str, Any]
Params = Mapping[str, Any]

# A quoted string or identifier, a :: cast, a :name parameter, or a %.
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|::|:([A-Za-z_]\w*)|%")


@functools.lru_cache(maxsize=1024)
def pyformat(sql: str) -> str:
    """``sql`` with ``:name`` parameters as psycopg's ``%(name)s`` and every literal
    ``%`` doubled (in quoted strings too); casts (``::text``) stay as written."""

    def sub(m: re.Match[str]) -> str:
        text = m.group(0)
        if m.group(1) is not None:
            return f"%({m.group(1)})s"
        if text == "%":
            return "%%"
        return text.replace("%", "%%") if text[0] in "'\"" else text

    return _TOKEN.sub(sub, sql)


class Conn:
    """``dialect``: ``"sqlite"`` or ``"postgres"``; ``raw``: the driver's connection,
    its rows mappings."""

    __slots__ = ("raw", "dialect", "for_update", "skip_locked", "notes", "_pg")

    def __init__(self, raw: Any, dialect: str) -> None:
        self.raw = raw
        self.dialect = dialect
        self._pg = dialect == "postgres"
        self.for_update = " FOR UPDATE" if self._pg else ""
        self.skip_locked = " FOR UPDATE SKIP LOCKED" if self._pg else ""
        self.notes: list[str] = []  # SQLite: the wake-ups to send once the transaction commits

    def execute(self, sql: str, params: Params | None = None) -> Any:
        """Run one statement; returns the cursor (``rowcount``, ``fetchall``)."""
        if self._pg:  # without parameters psycopg reads no placeholders: the query goes as written
            return self.raw.execute(pyformat(sql), params) if params else self.raw.execute(sql)
        return self.raw.execute(sql, params or {})

    def all(self, sql: str, params: Params | None = None) -> list[Row]:
        """Every row, each a mapping of column name to value."""
        return list(self.execute(sql, params).fetchall())

    def one(self, sql: str, params: Params | None = None) -> Row | None:
        """The first row, or ``None``."""
        row: Row | None = self.execute(sql, params).fetchone()
        return row

    def value(self, sql: str, params: Params | None = None, default: Any = None) -> Any:
        """The first column of the first row, or ``default``."""
        row = self.one(sql, params)
        if row is None:
            return default
        return next(iter(row.values())) if self._pg else row[0]  # type: ignore[index]  # sqlite3.Row: by position too

    def many(self, sql: str, rows: Iterable[Params]) -> None:
        """One statement for each parameter mapping of ``rows``."""
        rows = list(rows)
        if not rows:
            return
        if self._pg:
            with self.raw.cursor() as cur:
                cur.executemany(pyformat(sql), rows)
        else:
            self.raw.executemany(sql, rows)

    def any(self, name: str) -> str:
        """``IN (...)`` of the list parameter ``name`` (give it :meth:`array`)."""
        return f"= ANY(:{name})" if self._pg else f"IN (SELECT value FROM json_each(:{name}))"

    def none_of(self, name: str) -> str:
        """``NOT IN (...)`` of the list parameter ``name`` (give it :meth:`array`)."""
        return f"<> ALL(:{name})" if self._pg else f"NOT IN (SELECT value FROM json_each(:{name}))"

    def array(self, values: Sequence[Any]) -> Any:
        """``values`` as the parameter :meth:`any` and :meth:`none_of` read: a list
        (PostgreSQL), or its JSON text (SQLite's ``json_each``)."""
        return [str(v) if isinstance(v, str) else v for v in values] if self._pg else json_codec.dumps(list(values)).decode()

    def notify(self, payload: str) -> None:
        """Wake the other instances on commit: PostgreSQL ``NOTIFY callgate``; on SQLite
        the payload waits in :attr:`notes` for the store to send after the commit
        (:mod:`proxy.storage.wakeup`)."""
        if self._pg:
            self.execute("SELECT pg_notify('callgate', :payload)", {"payload": payload})
        else:
            self.notes.append(payload)
