"""Schema migrations: numbered steps, applied in order by one runner on both engines.

Each step is a module ``vNNN_<what>.py`` with ``VERSION``, ``DESCRIPTION`` and
``apply(conn)``; it runs in a transaction of its own, which also records its
version in ``schema_version`` (one row per version applied; the highest is the
database's version). A database without ``schema_version`` is at version 0: empty,
or in the first layout (one JSON record per call), which step 1 moves forward.

Who migrates: ``callgate serve`` at start and ``callgate migrate``, never a
read-only command (:func:`check`). Each step applied is logged (``schema v1 -> v2:
...``). The SQLite engine copies the file to ``<path>.bak-v<N>`` before the first
step; PostgreSQL runs each step under an advisory lock, so instances starting
together migrate once. A database whose version is newer than :data:`LATEST`
refuses to open (:class:`~proxy.errors.SchemaTooNew`), naming both versions.

The steps: ``v001_tables`` (the tables, from the first layout), ``v002_update_indexes``,
``v003_checks_and_call_key``, ``v004_turn_reasoning``, ``v005_turn_attempts``,
``v006_turn_statuses_and_heard``, ``v007_turn_speech_gap``, ``v008_openai_sip``; ``ddl`` holds the DDL they share, ``legacy`` the first
layout's reading.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ...errors import SchemaTooNew, SchemaTooOld
from ..db import Conn
from . import (
    v001_tables, v002_update_indexes, v003_checks_and_call_key, v004_turn_reasoning, v005_turn_attempts,
    v006_turn_statuses_and_heard, v007_turn_speech_gap, v008_openai_sip,
)
from .ddl import tables

__all__ = ["LATEST", "MIGRATIONS", "Migration", "check", "has_data", "migrate", "version_of"]

log = logging.getLogger("callgate.storage")

T = TypeVar("T")
Transaction = Callable[[Callable[[Conn], T]], T]


@dataclass(frozen=True)
class Migration:
    """One numbered step: ``apply`` moves a database from ``version - 1`` to ``version``."""

    version: int
    description: str
    apply: Callable[[Conn], None]


MIGRATIONS = tuple(
    Migration(m.VERSION, m.DESCRIPTION, m.apply) for m in (
        v001_tables, v002_update_indexes, v003_checks_and_call_key, v004_turn_reasoning, v005_turn_attempts,
        v006_turn_statuses_and_heard, v007_turn_speech_gap, v008_openai_sip,
    )
)
LATEST = MIGRATIONS[-1].version
assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1)), "migrations are numbered 1, 2, 3, ..."


def version_of(c: Conn) -> int:
    """The database's schema version (0: no ``schema_version`` table)."""
    if "schema_version" not in tables(c):
        return 0
    return int(c.value("SELECT MAX(version) FROM schema_version") or 0)


def has_data(c: Conn) -> bool:
    """Whether the database holds any table (so that a migration could lose something)."""
    return bool(tables(c) - {"schema_version"})


def _too_new(version: int, where: str) -> SchemaTooNew:
    return SchemaTooNew(
        f"{where} has schema v{version}, newer than this callgate's v{LATEST}: run the callgate that wrote it "
        "(or a later one)"
    )


def check(c: Conn, where: str) -> int:
    """The version of a database a command uses without migrating it: :data:`LATEST`,
    else :class:`~proxy.errors.SchemaTooOld` or :class:`~proxy.errors.SchemaTooNew`
    naming both versions."""
    version = version_of(c)
    if version > LATEST:
        raise _too_new(version, where)
    if version < LATEST:
        raise SchemaTooOld(
            f"{where} has schema v{version}; this callgate uses v{LATEST}: stop the older servers, then run "
            "`callgate migrate` (or start `callgate serve`, which migrates)"
        )
    return version


def migrate(transaction: Transaction[Any], where: str, backup: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Apply the pending steps, each in ``transaction(fn)`` (which runs ``fn(conn)``
    in one transaction and returns its result). ``backup(version)`` is called once
    before the first step of a database that holds anything. Returns ``(version
    before, version after)``; :class:`~proxy.errors.SchemaTooNew` for a newer one."""
    start: int = transaction(version_of)
    if start > LATEST:
        raise _too_new(start, where)
    if start == LATEST:
        return start, start
    if backup is not None and transaction(has_data):
        backup(start)
    for m in MIGRATIONS[start:]:
        if transaction(functools.partial(_step, m=m)):
            log.info("%s: schema v%d -> v%d: %s", where, m.version - 1, m.version, m.description)
    return start, LATEST


def _step(c: Conn, m: Migration) -> bool:
    """Apply ``m`` unless the database is past it already (another instance was
    first); whether it was applied."""
    if version_of(c) >= m.version:
        return False
    c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    m.apply(c)
    c.execute("INSERT INTO schema_version (version) VALUES (:version)", {"version": m.version})
    return True
