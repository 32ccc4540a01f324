"""Moving a database of the layout before schema version 1 (one JSON record per call)
into the current tables. Run once, by the SQLite engine's migration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .db import Conn
from .records import dumps, loads

__all__ = ["copy_record", "copy_v0"]


def _ts(value: Any, default: float) -> float:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            pass
    return default


def copy_v0(c: Conn) -> None:
    """``calls_v0``/``jobs_v0``/``deliveries_v0`` into the current tables, then drop them."""
    for status, started, ended, updated, text in c.all("SELECT status, started_at, ended_at, updated_at, record FROM calls_v0"):
        _copy_call(c, status, started, ended, updated, loads(text, {}))
    c.execute(
        "INSERT INTO jobs (id, call_id, step, kind, after, status, attempts, next_at, last_error, response_code, "
        "duration_ms, output, idempotency_key, created_at, updated_at) SELECT id, call_id, step, kind, after, "
        "CASE status WHEN 'running' THEN 'pending' ELSE status END, attempts, next_at, last_error, response_code, "
        "duration_ms, output, idempotency_key, created_at, updated_at FROM jobs_v0"
    )
    for event_id, call_id, seq, payload, status, attempts, error, created, updated in c.all(
        "SELECT event_id, call_id, seq, payload, status, attempts, last_error, created_at, updated_at FROM deliveries_v0"
    ):
        kind = loads(payload, {}).get("type", "")
        c.execute(
            "INSERT INTO deliveries (event_id, call_key, seq, type, payload, status, attempts, next_at, last_error, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (event_id, call_id, seq, kind, payload, status, attempts, updated, error, created, updated),
        )
    for table in ("calls_v0", "jobs_v0", "deliveries_v0"):
        c.execute(f"DROP TABLE {table}")


def copy_record(c: Conn, record: dict[str, Any], now: float) -> None:
    """One call record (the API's JSON) into the tables, as it is; a record with a
    transcript but no turns gets a turn per exchange."""
    if not record.get("turns") and record.get("transcript"):
        record = {**record, "turns": _turns_of(record["transcript"])}
    started = _ts(record.get("started_at"), now)
    ended = _ts(record.get("ended_at"), now) if record.get("ended_at") else None
    _copy_call(c, record.get("status") or "ended", started, ended, ended or now, record)


def _copy_call(c: Conn, status: str, started: float, ended: float | None, updated: float, record: dict[str, Any]) -> None:
    key = record.get("id")
    if not key:
        return
    events = record.get("events") or []
    hangup = next((e for e in events if e.get("type") == "hangup"), None)
    c.execute(
        "INSERT INTO calls (id, call_id, generation, status, anonymous, started_at, last_activity, ended_at, end_reason, "
        "end_source, hangup_at, hangup_source, last_seq, turns, state, metadata, updated_at) "
        "VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (key, record.get("call_id") or key, status, int(bool(record.get("anonymous"))), started, updated, ended, record.get("end_reason"),
         record.get("end_source"), updated if hangup else None, hangup.get("source") if hangup else None,
         max([e.get("seq", 0) for e in events] or [0]), len(record.get("turns") or []),
         dumps(record.get("state") or {}), dumps(record.get("metadata") or {}), updated),
    )
    _copy_turns(c, key, started, record.get("turns") or [])
    for e in events:
        c.execute(
            "INSERT INTO events (call_key, seq, id, type, created_at, payload) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (key, e.get("seq", 0), e.get("id"), e.get("type"), _ts(e.get("created_at"), updated), dumps(e)),
        )


def _copy_turns(c: Conn, key: str, started: float, turns: list[dict[str, Any]]) -> None:
    for i, t in enumerate(turns, 1):
        c.execute(
            "INSERT INTO turns (call_key, idx, request_id, instance, started_at, stream, status, user_text, raw_text, "
            "spoken_text, commands, tool_calls, ttft_ms, duration_ms, error) "
            "VALUES (?, ?, ?, 'v0', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (key, i, t.get("request_id") or f"{key}:{i}", _ts(t.get("started_at"), started), int(bool(t.get("stream"))),
             "interrupted" if t.get("status") == "in_progress" else t.get("status", "ok"), t.get("user_text", ""),
             t.get("raw_text", ""), t.get("spoken_text", ""), dumps(t.get("commands") or []), dumps(t.get("tool_calls") or []),
             t.get("ttft_ms"), t.get("duration_ms"), t.get("error")),
        )


def _turns_of(transcript: list[dict[str, Any]]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for line in transcript:
        if line.get("role") == "user" or not turns or turns[-1]["spoken_text"]:
            turns.append({"user_text": "", "spoken_text": "", "status": "ok"})
        turns[-1]["user_text" if line.get("role") == "user" else "spoken_text"] = line.get("text", "")
    return turns
