"""Schema v1: calls, turns, events, deliveries, jobs and instances as tables of their
own, with leases; a database of the first layout (one JSON record per call,
``calls.record``) is moved into them. The statements are v1's as released
(callgate 0.1.0), kept as they were: later versions change them by migrations."""

from __future__ import annotations

from ..db import Conn
from . import legacy
from .ddl import statements

__all__ = ["DESCRIPTION", "VERSION", "apply"]

VERSION = 1
DESCRIPTION = "calls, turns, events, deliveries, jobs and instances as separate tables, with leases"

_V1 = """
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
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at {real} NOT NULL,
    heartbeat_at {real} NOT NULL
);
"""


def apply(c: Conn) -> None:
    """Create v1's tables; move a first-layout database's rows into them."""
    first_layout = legacy.is_first_layout(c)
    if first_layout:
        legacy.set_aside(c)
    for statement in statements(_V1, c.dialect):
        c.execute(statement)
    if first_layout:
        legacy.copy_v0(c)
