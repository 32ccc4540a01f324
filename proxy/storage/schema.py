"""The database schema, per engine, and its versioned migrations.

Tables (the same columns on SQLite and PostgreSQL; times are Unix seconds, JSON is
text):

* ``calls``: one row per call: ``id`` (the record key), ``call_id`` (the runtime's
  id) and ``generation``, ``status`` (``active`` | ``ended``), who owns it, when it
  started, was last active and ended, why, the accepted hangup (``hangup_at``,
  ``hangup_source``), ``last_seq`` (the events are numbered from here), ``turns``,
  ``state`` and ``metadata``.
* ``turns``: one row per chat completion request, written when it begins
  (``in_progress``) and when it ends; ``instance`` is the process that serves it.
* ``events``: the control events, numbered per call; a partial unique index allows
  one ``hangup`` and one ``call.ended`` per call.
* ``deliveries``: one row per control event for the call layer's webhook.
* ``jobs``: one row per end-function step of an ended call.
* ``instances``: the processes using the database and their heartbeats.
* ``schema_version``: the migrations applied.

Jobs and deliveries carry a lease (``locked_by``, ``locked_until``): a worker claims
a row, a heartbeat extends the lease, and a result is written only by the holder.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "VERSION", "ddl"]

_CALLS = """
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 1,
    status TEXT NOT NULL,
    anonymous INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    profile TEXT,
    started_at {real} NOT NULL,
    last_activity {real} NOT NULL,
    ended_at {real},
    end_reason TEXT,
    end_source TEXT,
    hangup_at {real},
    hangup_source TEXT,
    last_seq INTEGER NOT NULL DEFAULT 0,
    turns INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT '{{}}',
    metadata TEXT NOT NULL DEFAULT '{{}}',
    updated_at {real} NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS calls_generation ON calls (call_id, generation);
CREATE INDEX IF NOT EXISTS calls_by_start ON calls (started_at);
CREATE INDEX IF NOT EXISTS calls_active ON calls (last_activity) WHERE status = 'active';
CREATE INDEX IF NOT EXISTS calls_ended ON calls (ended_at) WHERE status = 'ended';
CREATE TABLE IF NOT EXISTS turns (
    call_key TEXT NOT NULL,
    idx INTEGER NOT NULL,
    request_id TEXT NOT NULL UNIQUE,
    instance TEXT NOT NULL,
    started_at {real} NOT NULL,
    stream INTEGER NOT NULL,
    status TEXT NOT NULL,
    user_text TEXT NOT NULL DEFAULT '',
    raw_text TEXT NOT NULL DEFAULT '',
    spoken_text TEXT NOT NULL DEFAULT '',
    commands TEXT NOT NULL DEFAULT '[]',
    tool_calls TEXT NOT NULL DEFAULT '[]',
    ttft_ms {real},
    duration_ms {real},
    error TEXT,
    finished_at {real},
    PRIMARY KEY (call_key, idx)
);
CREATE INDEX IF NOT EXISTS turns_open ON turns (instance) WHERE status = 'in_progress';
CREATE TABLE IF NOT EXISTS events (
    call_key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    created_at {real} NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (call_key, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS events_one_hangup ON events (call_key) WHERE type = 'hangup';
CREATE UNIQUE INDEX IF NOT EXISTS events_one_end ON events (call_key) WHERE type = 'call.ended';
CREATE TABLE IF NOT EXISTS deliveries (
    event_id TEXT PRIMARY KEY,
    call_key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at {real} NOT NULL,
    last_error TEXT,
    response_code INTEGER,
    locked_by TEXT,
    locked_until {real},
    created_at {real} NOT NULL,
    updated_at {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_by_call ON deliveries (call_key, seq);
CREATE INDEX IF NOT EXISTS deliveries_failed ON deliveries (updated_at) WHERE status = 'failed';
CREATE INDEX IF NOT EXISTS deliveries_by_update ON deliveries (updated_at);
CREATE TABLE IF NOT EXISTS jobs (
    id {serial},
    call_id TEXT NOT NULL,
    step TEXT NOT NULL,
    kind TEXT NOT NULL,
    after TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at {real} NOT NULL,
    last_error TEXT,
    response_code INTEGER,
    duration_ms {real},
    output TEXT,
    idempotency_key TEXT NOT NULL,
    locked_by TEXT,
    locked_until {real},
    created_at {real} NOT NULL,
    updated_at {real} NOT NULL,
    UNIQUE (call_id, step)
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (next_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS jobs_running ON jobs (locked_until) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS jobs_by_call ON jobs (call_id);
CREATE INDEX IF NOT EXISTS jobs_by_update ON jobs (updated_at);
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at {real} NOT NULL,
    heartbeat_at {real} NOT NULL
);
"""

_TYPES = {
    "sqlite": {"real": "REAL", "serial": "INTEGER PRIMARY KEY"},
    "postgres": {"real": "DOUBLE PRECISION", "serial": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"},
}


def ddl(dialect: str) -> list[str]:
    """The statements of the current version for ``dialect``; every one is ``IF NOT
    EXISTS``, so running them on an older version adds what it lacks."""
    text = _CALLS.format(**_TYPES[dialect])
    return [s.strip() for s in text.split(";") if s.strip()]


# version -> what it does; the statements come from ddl() (v1) and the engine's
# own code for data moved from an earlier layout.
MIGRATIONS = {
    1: "calls, turns, events, deliveries, jobs and instances as separate tables, with leases",
    2: "jobs and deliveries indexed by updated_at: the operator page sees every move cheaply",
}
VERSION = max(MIGRATIONS)
