"""Durable storage: call records and end-function jobs in one SQLite database (WAL).

Tables:

* ``calls``: one row per call: ``id``, ``status`` (``active`` | ``ended``),
  ``end_reason``, ``started_at``/``ended_at``/``updated_at`` (Unix seconds), and
  ``record``, the call record as JSON (what ``GET /v1/calls/{id}`` answers).
* ``deliveries``: one row per control event for ``control.webhook``: ``status``
  (``pending`` | ``done`` | ``failed``), ``attempts``, ``last_error``, ``payload``.
* ``jobs``: one row per end-function step of an ended call: ``status``
  (``pending`` | ``running`` | ``done`` | ``failed`` | ``skipped`` | ``blocked``),
  ``attempts``, ``next_at`` (Unix s), ``last_error``, ``response_code``,
  ``duration_ms``, ``output`` (JSON), ``idempotency_key`` (``{call_id}:{step}``).

Ending a call is one transaction (the record and every job), written before any
step runs, so a crash at any moment leaves either nothing to do or jobs to resume.
``synchronous=NORMAL`` in WAL mode survives a process crash (``kill -9``); only a
power loss may take the last transactions.

All methods are synchronous and quick (indexed, one statement or transaction); the
server calls them on its event loop. The WAL is checkpointed by a background thread
with its own connection (:meth:`Storage.start_checkpointer`), never inside a commit:
SQLite's automatic checkpoint writes back and fsyncs the database in whichever
commit crosses 1,000 pages, which put milliseconds on an unlucky request.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from ..core import json_codec

__all__ = ["TERMINAL", "DeliveryStatus", "Job", "JobStatus", "Storage", "end_function_summary"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY,
    call_id TEXT,
    generation INTEGER NOT NULL DEFAULT 1,
    status TEXT NOT NULL,
    end_reason TEXT,
    started_at REAL NOT NULL,
    ended_at REAL,
    updated_at REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_by_start ON calls (started_at);
CREATE INDEX IF NOT EXISTS calls_by_status ON calls (status, started_at);
CREATE INDEX IF NOT EXISTS calls_by_call_id ON calls (call_id, generation);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL,
    step TEXT NOT NULL,
    kind TEXT NOT NULL,
    after TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    last_error TEXT,
    response_code INTEGER,
    duration_ms REAL,
    output TEXT,
    idempotency_key TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (call_id, step)
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (status, next_at);
CREATE TABLE IF NOT EXISTS deliveries (
    event_id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (status, call_id, seq);
CREATE INDEX IF NOT EXISTS jobs_by_call ON jobs (call_id);
"""



class JobStatus(StrEnum):
    """Where an end-function step stands."""

    PENDING = "pending"  # waiting for its time, or for the steps it comes after
    RUNNING = "running"  # a try is under way (left so by a process that died: resumed)
    DONE = "done"
    FAILED = "failed"  # out of tries: a dead letter, with its last error
    SKIPPED = "skipped"  # its `when:` did not hold
    BLOCKED = "blocked"  # a step it comes after failed


class DeliveryStatus(StrEnum):
    """Where a control event's webhook delivery stands."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


TERMINAL = (JobStatus.DONE, JobStatus.FAILED, JobStatus.SKIPPED, JobStatus.BLOCKED)


@dataclass(slots=True)
class Job:
    id: int
    call_id: str
    step: str
    kind: str
    after: list[str]
    status: JobStatus
    attempts: int
    next_at: float
    last_error: str | None
    response_code: int | None
    duration_ms: float | None
    output: Any
    idempotency_key: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "call_id": self.call_id,
            "step": self.step,
            "kind": self.kind,
            "after": self.after,
            "status": str(self.status),
            "attempts": self.attempts,
            "next_at": self.next_at,
            "last_error": self.last_error,
            "response_code": self.response_code,
            "duration_ms": self.duration_ms,
            "output": self.output,
            "idempotency_key": self.idempotency_key,
        }


_JOB_COLUMNS = "id, call_id, step, kind, after, status, attempts, next_at, last_error, response_code, duration_ms, output, idempotency_key"


def _job(row: Sequence[Any]) -> Job:
    return Job(
        id=row[0],
        call_id=row[1],
        step=row[2],
        kind=row[3],
        after=json.loads(row[4]),
        status=JobStatus(row[5]),
        attempts=row[6],
        next_at=row[7],
        last_error=row[8],
        response_code=row[9],
        duration_ms=row[10],
        output=json.loads(row[11]) if row[11] is not None else None,
        idempotency_key=row[12],
    )


def _dumps(value: Any) -> str:
    return json_codec.dumps(value).decode()


class Storage:
    """One SQLite database. ``path`` ``":memory:"`` works for tests of this class only
    (each connection has its own memory)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self._migrate()
        self.db.executescript(SCHEMA)
        self._checkpointer: threading.Thread | None = None
        self._stop = threading.Event()

    def _migrate(self) -> None:
        """Bring a database written by an earlier version up to the schema."""
        columns = [r[1] for r in self.db.execute("PRAGMA table_info(calls)")]
        if columns and "call_id" not in columns:  # before calls had generations
            self.db.execute("ALTER TABLE calls ADD COLUMN call_id TEXT")
            self.db.execute("ALTER TABLE calls ADD COLUMN generation INTEGER NOT NULL DEFAULT 1")
            self.db.execute("UPDATE calls SET call_id = id")

    def start_checkpointer(self, interval_s: float = 1.0) -> None:
        """Checkpoint the WAL every ``interval_s`` seconds from a thread of its own,
        and no longer inside commits."""
        if self.path == ":memory:" or self._checkpointer is not None:
            return
        self.db.execute("PRAGMA wal_autocheckpoint=0")

        def run() -> None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=5000")
            try:
                while not self._stop.wait(interval_s):
                    try:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    except sqlite3.Error:
                        pass  # busy now; the next round catches up
            finally:
                conn.close()

        self._checkpointer = threading.Thread(target=run, name="callgate-wal-checkpoint", daemon=True)
        self._checkpointer.start()

    def close(self) -> None:
        if self._checkpointer is not None:
            self._stop.set()
            self._checkpointer.join(timeout=5)
            try:
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
        self.db.close()

    # -- calls -----------------------------------------------------------------------

    def save_call(self, record: dict[str, Any], *, status: str = "active") -> None:
        """Insert or replace an active call's record (an ended call is never reopened)."""
        now = time.time()
        self.db.execute(
            "INSERT INTO calls (id, call_id, generation, status, end_reason, started_at, ended_at, updated_at, record) "
            "VALUES (?, ?, ?, ?, NULL, ?, NULL, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at "
            "WHERE calls.status = 'active'",
            (record["id"], _call_id(record), record.get("generation", 1), status, _ts(record.get("started_at"), now), now, _dumps(record)),
        )

    def latest_key(self, call_id: str) -> str | None:
        """The record key of the newest call under the runtime's ``call_id``."""
        row = self.db.execute(
            "SELECT id FROM calls WHERE call_id = ? ORDER BY generation DESC LIMIT 1", (call_id,)
        ).fetchone()
        return row[0] if row else None

    def end_call(self, record: dict[str, Any], steps: Iterable[tuple[str, str, list[str]]]) -> bool:
        """In one transaction: mark the call ended with its final record and add one
        pending job per ``(step, kind, after)``. ``False`` (and nothing written) when
        the call had already ended."""
        now = time.time()
        call_id = record["id"]
        with self._tx():
            row = self.db.execute("SELECT status FROM calls WHERE id = ?", (call_id,)).fetchone()
            if row is not None and row[0] == "ended":
                return False
            self.db.execute(
                "INSERT INTO calls (id, call_id, generation, status, end_reason, started_at, ended_at, updated_at, record) "
                "VALUES (?, ?, ?, 'ended', ?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET status = 'ended', end_reason = excluded.end_reason, "
                "ended_at = excluded.ended_at, updated_at = excluded.updated_at, record = excluded.record",
                (
                    call_id, _call_id(record), record.get("generation", 1), record.get("end_reason"),
                    _ts(record.get("started_at"), now), _ts(record.get("ended_at"), now), now, _dumps(record),
                ),
            )
            self.db.executemany(
                "INSERT OR IGNORE INTO jobs (call_id, step, kind, after, status, next_at, idempotency_key, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
                [(call_id, name, kind, json.dumps(after), now, f"{call_id}:{name}", now, now) for name, kind, after in steps],
            )
        return True

    def call_record(self, call_id: str) -> dict[str, Any] | None:
        """The stored call record with its ``status``, or ``None``."""
        row = self.db.execute("SELECT record, status FROM calls WHERE id = ?", (call_id,)).fetchone()
        if row is None:
            return None
        record = json.loads(row[0])
        record["status"] = row[1]
        return record

    def get_call(self, call_id: str) -> dict[str, Any] | None:
        """The call record as the API shows it: with its steps under ``end_function``
        and its control-event deliveries, or ``None``."""
        record = self.call_record(call_id)
        if record is None:
            return None
        jobs = self.jobs_for_call(call_id)
        if jobs or record["status"] == "ended":
            record["end_function"] = end_function_summary(jobs)
        deliveries = self.deliveries(call_id)
        if deliveries:
            record["control_deliveries"] = deliveries
        return record

    def list_calls(self, *, since: float | None = None, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first: ``{"id", "status", "end_reason", "started_at", "ended_at", "jobs": {status: n}}``."""
        sql = "SELECT id, status, end_reason, started_at, ended_at FROM calls"
        where, args = [], []
        if since is not None:
            where.append("started_at >= ?")
            args.append(since)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC LIMIT ?"
        args.append(limit)
        rows = self.db.execute(sql, args).fetchall()
        out = [{"id": r[0], "status": r[1], "end_reason": r[2], "started_at": r[3], "ended_at": r[4], "jobs": {}} for r in rows]
        if out:
            marks = ",".join("?" * len(out))
            for call_id, st, n in self.db.execute(
                f"SELECT call_id, status, COUNT(*) FROM jobs WHERE call_id IN ({marks}) GROUP BY call_id, status",
                [c["id"] for c in out],
            ):
                next(c for c in out if c["id"] == call_id)["jobs"][st] = n
        return out

    # -- jobs ------------------------------------------------------------------------

    def jobs_for_call(self, call_id: str) -> list[Job]:
        return [_job(r) for r in self.db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE call_id = ? ORDER BY id", (call_id,))]

    def job(self, job_id: int) -> Job | None:
        row = self.db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def due_jobs(self, now: float, limit: int = 500) -> list[Job]:
        """Pending jobs whose time has come, oldest first."""
        return [
            _job(r)
            for r in self.db.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status = 'pending' AND next_at <= ? ORDER BY next_at, id LIMIT ?",
                (now, limit),
            )
        ]

    def next_due(self, after: float) -> float | None:
        """When the next pending job falls due later than ``after`` (Unix s), or ``None``."""
        row = self.db.execute("SELECT MIN(next_at) FROM jobs WHERE status = 'pending' AND next_at > ?", (after,)).fetchone()
        return row[0] if row else None

    def list_jobs(self, *, status: str | None = None, limit: int = 200) -> list[Job]:
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs"
        args: list[Any] = []
        if status:
            sql += " WHERE status = ?"
            args.append(status)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [_job(r) for r in self.db.execute(sql, args)]

    def start_job(self, job_id: int) -> int:
        """Mark running and count the attempt; returns the attempt number (1, 2, ...)."""
        now = time.time()
        self.db.execute(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, updated_at = ? WHERE id = ?", (now, job_id)
        )
        return self.db.execute("SELECT attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]

    def finish_job(
        self,
        job_id: int,
        status: str,
        *,
        error: str | None = None,
        response_code: int | None = None,
        duration_ms: float | None = None,
        output: Any = None,
        next_at: float | None = None,
    ) -> None:
        """Record an outcome: a terminal status, or ``pending`` again with ``next_at``."""
        now = time.time()
        self.db.execute(
            "UPDATE jobs SET status = ?, last_error = ?, response_code = ?, duration_ms = ?, output = ?, "
            "next_at = COALESCE(?, next_at), updated_at = ? WHERE id = ?",
            (status, error, response_code, duration_ms, None if output is None else _dumps(output), next_at, now, job_id),
        )

    def reset_running(self) -> int:
        """Jobs a previous process was running when it died go back to pending
        (delivery is at least once). Returns how many."""
        return self.db.execute("UPDATE jobs SET status = 'pending', next_at = ? WHERE status = 'running'", (time.time(),)).rowcount

    def retry(self, job_ids: Iterable[int] | None = None) -> int:
        """Back to pending with attempts reset: the given jobs (any finished status),
        or with ``None`` every failed job; the steps blocked behind them come too.
        Returns how many jobs were reset."""
        now = time.time()
        with self._tx():
            if job_ids is None:
                ids = [r[0] for r in self.db.execute("SELECT id FROM jobs WHERE status = 'failed'")]
            else:
                wanted = list(job_ids)
                ids = [
                    r[0]
                    for r in self.db.execute(
                        f"SELECT id FROM jobs WHERE status IN {tuple(map(str, TERMINAL))} AND id IN ({','.join('?' * len(wanted))})",
                        wanted,
                    )
                ] if wanted else []
            if not ids:
                return 0
            marks = ",".join("?" * len(ids))
            blocked = [
                r[0]
                for r in self.db.execute(
                    f"SELECT id FROM jobs WHERE status = 'blocked' AND call_id IN (SELECT call_id FROM jobs WHERE id IN ({marks}))",
                    ids,
                )
            ]
            self.db.executemany(
                "UPDATE jobs SET status = 'pending', attempts = 0, next_at = ?, last_error = NULL, updated_at = ? WHERE id = ?",
                [(now, now, i) for i in [*ids, *blocked]],
            )
        return len(ids) + len(blocked)

    # -- control-event deliveries ------------------------------------------------------

    def add_delivery(self, event: dict[str, Any]) -> None:
        """Record a control event to deliver (before the first try)."""
        now = time.time()
        self.db.execute(
            "INSERT OR IGNORE INTO deliveries (event_id, call_id, seq, payload, status, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, 'pending', ?, ?)",
            (event["id"], event["call_id"], event["seq"], _dumps(event), now, now),
        )

    def finish_delivery(self, event_id: str, status: str, attempts: int, error: str | None = None) -> None:
        self.db.execute(
            "UPDATE deliveries SET status = ?, attempts = attempts + ?, last_error = ?, updated_at = ? WHERE event_id = ?",
            (status, attempts, error, time.time(), event_id),
        )

    def pending_deliveries(self) -> list[tuple[dict[str, Any], float]]:
        """``(event, created_at)`` of every undelivered event, per call in order."""
        rows = self.db.execute(
            "SELECT payload, created_at FROM deliveries WHERE status = 'pending' ORDER BY call_id, seq"
        ).fetchall()
        return [(json.loads(r[0]), r[1]) for r in rows]

    def deliveries(self, call_id: str) -> list[dict[str, Any]]:
        return [
            {"event_id": r[0], "seq": r[1], "status": r[2], "attempts": r[3], "last_error": r[4]}
            for r in self.db.execute(
                "SELECT event_id, seq, status, attempts, last_error FROM deliveries WHERE call_id = ? ORDER BY seq", (call_id,)
            )
        ]

    def _tx(self) -> _Transaction:
        return _Transaction(self.db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _call_id(record: dict[str, Any]) -> str:
    """The runtime's call id of a record (its key, for records without one)."""
    return record.get("call_id") or record["id"]


def _ts(value: Any, default: float) -> float:
    """ISO 8601 text or a number to Unix seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        from datetime import datetime

        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            pass
    return default


def end_function_summary(jobs: list[Job]) -> dict[str, Any]:
    """``{"status": "done"|"running"|"pending"|"failed", "steps": [job dicts]}`` for a record."""
    statuses = {j.status for j in jobs}
    if JobStatus.RUNNING in statuses:
        overall = JobStatus.RUNNING
    elif JobStatus.PENDING in statuses:
        overall = JobStatus.PENDING
    elif statuses & {JobStatus.FAILED, JobStatus.BLOCKED}:
        overall = JobStatus.FAILED
    else:
        overall = JobStatus.DONE
    return {"status": str(overall), "steps": [j.to_dict() for j in jobs]}
