"""Schema v3: every status column is CHECKed against its enum's values, counters
against going negative; ``jobs.call_id`` is ``jobs.call_key``, as in every other
table (it always held the record key); the events (and their deliveries) of a later
call under a reused id carry the runtime's ``call_id`` and a ``generation`` field,
not the record key.

PostgreSQL adds the constraints and renames the column in place. SQLite cannot add a
CHECK to a table: each table is made anew with them, its rows copied, the old one
dropped, and its indexes made again (the procedure of SQLite's "ALTER TABLE" page).
The value lists are written out here, as of v3; a later change to an enum is a
migration of its own (``tests/test_migrations.py`` holds the schema equal to the
enums).
"""

from __future__ import annotations

from ..db import Conn
from ..records import dumps, loads
from .ddl import columns, statements

__all__ = ["DESCRIPTION", "VERSION", "apply"]

VERSION = 3
DESCRIPTION = "status CHECK constraints; jobs.call_key; events of a reused call id carry the runtime's call_id"

_CALL = "status IN ('active', 'ended')"
_TURN = "status IN ('in_progress', 'ok', 'upstream_error', 'upstream_incomplete', 'client_disconnected', 'interrupted', 'error')"
_EVENT = "type IN ('hangup', 'transfer', 'command.rejected', 'call.ended')"
_JOB = "status IN ('pending', 'running', 'done', 'failed', 'skipped', 'blocked')"
_DELIVERY = "status IN ('pending', 'done', 'failed')"

_CHECKS = {
    "calls": {"calls_status": _CALL, "calls_generation": "generation >= 1", "calls_counts": "turns >= 0 AND last_seq >= 0"},
    "turns": {"turns_status": _TURN},
    "events": {"events_type": _EVENT},
    "deliveries": {"deliveries_status": _DELIVERY, "deliveries_type": _EVENT, "deliveries_attempts": "attempts >= 0"},
    "jobs": {"jobs_status": _JOB, "jobs_attempts": "attempts >= 0"},
}

# SQLite: the tables as v3 has them (v1's columns and the checks above).
_TABLES = """
CREATE TABLE calls_v3 (
    id TEXT PRIMARY KEY, call_id TEXT NOT NULL, generation INTEGER NOT NULL DEFAULT 1, status TEXT NOT NULL,
    anonymous INTEGER NOT NULL DEFAULT 0, owner TEXT, profile TEXT, started_at REAL NOT NULL,
    last_activity REAL NOT NULL, ended_at REAL, end_reason TEXT, end_source TEXT, hangup_at REAL,
    hangup_source TEXT, last_seq INTEGER NOT NULL DEFAULT 0, turns INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT '{{}}', metadata TEXT NOT NULL DEFAULT '{{}}', updated_at REAL NOT NULL,
    {calls}
);
CREATE TABLE turns_v3 (
    call_key TEXT NOT NULL, idx INTEGER NOT NULL, request_id TEXT NOT NULL UNIQUE, instance TEXT NOT NULL,
    started_at REAL NOT NULL, stream INTEGER NOT NULL, status TEXT NOT NULL, user_text TEXT NOT NULL DEFAULT '',
    raw_text TEXT NOT NULL DEFAULT '', spoken_text TEXT NOT NULL DEFAULT '', commands TEXT NOT NULL DEFAULT '[]',
    tool_calls TEXT NOT NULL DEFAULT '[]', ttft_ms REAL, duration_ms REAL, error TEXT, finished_at REAL,
    PRIMARY KEY (call_key, idx),
    {turns}
);
CREATE TABLE events_v3 (
    call_key TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
    created_at REAL NOT NULL, payload TEXT NOT NULL, PRIMARY KEY (call_key, seq),
    {events}
);
CREATE TABLE deliveries_v3 (
    event_id TEXT PRIMARY KEY, call_key TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,
    payload TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL,
    last_error TEXT, response_code INTEGER, locked_by TEXT, locked_until REAL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    {deliveries}
);
CREATE TABLE jobs_v3 (
    id INTEGER PRIMARY KEY, call_key TEXT NOT NULL, step TEXT NOT NULL, kind TEXT NOT NULL,
    after TEXT NOT NULL DEFAULT '[]', status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL, last_error TEXT, response_code INTEGER, duration_ms REAL, output TEXT,
    idempotency_key TEXT NOT NULL, locked_by TEXT, locked_until REAL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL, UNIQUE (call_key, step),
    {jobs}
)
"""

_INDEXES = """
CREATE UNIQUE INDEX calls_generation ON calls (call_id, generation);
CREATE INDEX calls_by_start ON calls (started_at);
CREATE INDEX calls_active ON calls (last_activity) WHERE status = 'active';
CREATE INDEX calls_ended ON calls (ended_at) WHERE status = 'ended';
CREATE INDEX turns_open ON turns (instance) WHERE status = 'in_progress';
CREATE UNIQUE INDEX events_one_hangup ON events (call_key) WHERE type = 'hangup';
CREATE UNIQUE INDEX events_one_end ON events (call_key) WHERE type = 'call.ended';
CREATE INDEX deliveries_due ON deliveries (next_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_call ON deliveries (call_key, seq);
CREATE INDEX deliveries_failed ON deliveries (updated_at) WHERE status = 'failed';
CREATE INDEX deliveries_by_update ON deliveries (updated_at);
CREATE INDEX jobs_due ON jobs (next_at) WHERE status = 'pending';
CREATE INDEX jobs_running ON jobs (locked_until) WHERE status = 'running';
CREATE INDEX jobs_by_call ON jobs (call_key);
CREATE INDEX jobs_by_update ON jobs (updated_at)
"""


def apply(c: Conn) -> None:
    """Constraints and the column's name, then the events' ``call_id``."""
    if c.dialect == "postgres":
        c.execute("ALTER TABLE jobs RENAME COLUMN call_id TO call_key")
        for table, checks in _CHECKS.items():
            for name, check in checks.items():
                c.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({check})")
    else:
        _rebuild_sqlite(c)
    _runtime_call_ids(c)


def _rebuild_sqlite(c: Conn) -> None:
    checks = {t: ",\n    ".join(f"CONSTRAINT {n} CHECK ({v})" for n, v in cs.items()) for t, cs in _CHECKS.items()}
    for statement in _TABLES.format(**checks).split(";"):
        c.execute(statement)
    for table in _CHECKS:
        old = columns(c, table)
        new = ["call_key" if (table, col) == ("jobs", "call_id") else col for col in old]
        c.execute(f"INSERT INTO {table}_v3 ({', '.join(new)}) SELECT {', '.join(old)} FROM {table}")
        c.execute(f"DROP TABLE {table}")
        c.execute(f"ALTER TABLE {table}_v3 RENAME TO {table}")
    for statement in statements(_INDEXES, "sqlite"):
        c.execute(statement)


def _runtime_call_ids(c: Conn) -> None:
    """Events (and deliveries) of calls past their id's first generation named the
    record key as ``call_id``: they name the runtime's id, and their generation."""
    rows = c.all(
        "SELECT e.call_key AS key, e.seq AS seq, e.payload AS payload, k.call_id AS call_id, k.generation AS generation "
        "FROM events e JOIN calls k ON k.id = e.call_key WHERE k.generation > 1"
    )
    for r in rows:
        payload = {**loads(r["payload"], {}), "call_id": r["call_id"], "generation": r["generation"]}
        params = {"key": r["key"], "seq": r["seq"], "payload": dumps(payload)}
        c.execute("UPDATE events SET payload = :payload WHERE call_key = :key AND seq = :seq", params)
        c.execute("UPDATE deliveries SET payload = :payload WHERE call_key = :key AND seq = :seq", params)
