"""The first layout (before schema v1: one JSON record per call in ``calls.record``)
moved into v1's tables, and one call record (the API's JSON) stored as rows: what
``callgate end-function test`` runs the steps against."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..db import Conn
from ..records import dumps, loads
from .ddl import columns, indexes

__all__ = ["copy_record", "copy_v0", "is_first_layout", "set_aside"]

_OLD_TABLES = ("calls", "jobs", "deliveries")


def _ts(value: Any, default: float) -> float:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            pass
    return default


def is_first_layout(c: Conn) -> bool:
    """Whether the database holds the first layout (a ``calls`` table with ``record``)."""
    return "record" in columns(c, "calls")


def set_aside(c: Conn) -> None:
    """Rename the first layout's tables to ``*_v0`` and drop their indexes (v1 uses
    some of the same names)."""
    for table in _OLD_TABLES:
        for index in indexes(c, table):
            c.execute(f"DROP INDEX {index}")
        c.execute(f"ALTER TABLE {table} RENAME TO {table}_v0")


def copy_v0(c: Conn) -> None:
    """``calls_v0``/``jobs_v0``/``deliveries_v0`` into v1's tables, then drop them."""
    for r in c.all("SELECT status, started_at, ended_at, updated_at, record FROM calls_v0"):
        _copy_call(c, r["status"], r["started_at"], r["ended_at"], r["updated_at"], loads(r["record"], {}))
    c.execute(
        "INSERT INTO jobs (id, call_id, step, kind, after, status, attempts, next_at, last_error, response_code, "
        "duration_ms, output, idempotency_key, created_at, updated_at) SELECT id, call_id, step, kind, after, "
        "CASE status WHEN 'running' THEN 'pending' ELSE status END, attempts, next_at, last_error, response_code, "
        "duration_ms, output, idempotency_key, created_at, updated_at FROM jobs_v0"
    )
    if c.dialect == "postgres":  # ids were copied: the identity goes on after them
        c.execute("SELECT setval(pg_get_serial_sequence('jobs', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM jobs")
    for r in c.all("SELECT event_id, call_id, seq, payload, status, attempts, last_error, created_at, updated_at FROM deliveries_v0"):
        c.execute(
            "INSERT INTO deliveries (event_id, call_key, seq, type, payload, status, attempts, next_at, last_error, "
            "created_at, updated_at) VALUES (:event_id, :call_id, :seq, :type, :payload, :status, :attempts, "
            ":updated_at, :last_error, :created_at, :updated_at) ON CONFLICT DO NOTHING",
            {**r, "type": loads(r["payload"], {}).get("type", "")},
        )
    for table in _OLD_TABLES:
        c.execute(f"DROP TABLE {table}_v0")


def copy_record(c: Conn, record: dict[str, Any], now: float) -> str | None:
    """One call record (the API's JSON) into the tables as it is; a record with a
    transcript but no turns gets a turn per exchange. Returns its record key
    (``key``, else ``id``), ``None`` for a record without one."""
    if not record.get("turns") and record.get("transcript"):
        record = {**record, "turns": _turns_of(record["transcript"])}
    started = _ts(record.get("started_at"), now)
    ended = _ts(record.get("ended_at"), now) if record.get("ended_at") else None
    return _copy_call(c, record.get("status") or "ended", started, ended, ended or now, record)


def _copy_call(c: Conn, status: str, started: float, ended: float | None, updated: float, record: dict[str, Any]) -> str | None:
    key = record.get("key") or record.get("id")
    if not key:
        return None
    events = record.get("events") or []
    hangup = next((e for e in events if e.get("type") == "hangup"), None)
    c.execute(
        "INSERT INTO calls (id, call_id, generation, status, anonymous, started_at, last_activity, ended_at, end_reason, "
        "end_source, hangup_at, hangup_source, last_seq, turns, state, metadata, updated_at) VALUES (:key, :call_id, "
        ":generation, :status, :anonymous, :started, :updated, :ended, :end_reason, :end_source, :hangup_at, "
        ":hangup_source, :last_seq, :turns, :state, :metadata, :updated) ON CONFLICT DO NOTHING",
        {
            "key": key, "call_id": record.get("call_id") or key, "generation": int(record.get("generation") or 1),
            "status": status, "anonymous": int(bool(record.get("anonymous"))), "started": started, "updated": updated,
            "ended": ended, "end_reason": record.get("end_reason"), "end_source": record.get("end_source"),
            "hangup_at": updated if hangup else None, "hangup_source": hangup.get("source") if hangup else None,
            "last_seq": max([e.get("seq", 0) for e in events] or [0]), "turns": len(record.get("turns") or []),
            "state": dumps(record.get("state") or {}), "metadata": dumps(record.get("metadata") or {}),
        },
    )
    _copy_turns(c, key, started, record.get("turns") or [])
    c.many(
        "INSERT INTO events (call_key, seq, id, type, created_at, payload) VALUES (:key, :seq, :id, :type, :at, :payload) "
        "ON CONFLICT DO NOTHING",
        ({"key": key, "seq": e.get("seq", 0), "id": e.get("id"), "type": e.get("type"),
          "at": _ts(e.get("created_at"), updated), "payload": dumps(e)} for e in events),
    )
    return str(key)


def _copy_turns(c: Conn, key: str, started: float, turns: list[dict[str, Any]]) -> None:
    c.many(
        "INSERT INTO turns (call_key, idx, request_id, instance, started_at, stream, status, user_text, raw_text, "
        "spoken_text, commands, tool_calls, ttft_ms, duration_ms, error) VALUES (:key, :idx, :request_id, 'v0', "
        ":started_at, :stream, :status, :user_text, :raw_text, :spoken_text, :commands, :tool_calls, :ttft_ms, "
        ":duration_ms, :error) ON CONFLICT DO NOTHING",
        (
            {
                "key": key, "idx": i, "request_id": t.get("request_id") or f"{key}:{i}",
                "started_at": _ts(t.get("started_at"), started), "stream": int(bool(t.get("stream"))),
                "status": "interrupted" if t.get("status") == "in_progress" else t.get("status", "ok"),
                "user_text": t.get("user_text", ""), "raw_text": t.get("raw_text", ""),
                "spoken_text": t.get("spoken_text", ""), "commands": dumps(t.get("commands") or []),
                "tool_calls": dumps(t.get("tool_calls") or []), "ttft_ms": t.get("ttft_ms"),
                "duration_ms": t.get("duration_ms"), "error": t.get("error"),
            }
            for i, t in enumerate(turns, 1)
        ),
    )


def _turns_of(transcript: list[dict[str, Any]]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for line in transcript:
        if line.get("role") == "user" or not turns or turns[-1]["spoken_text"]:
            turns.append({"user_text": "", "spoken_text": "", "status": "ok"})
        turns[-1]["user_text" if line.get("role") == "user" else "spoken_text"] = line.get("text", "")
    return turns
