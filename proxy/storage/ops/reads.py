"""Reading calls: the call record, its events, what happened lately, lists, gauges."""

from __future__ import annotations

from typing import Any

from ..db import Conn
from ..records import CallRecord, Delivery, Job, TurnRecord, call_json, loads
from ..statuses import CallStatus, DeliveryStatus, JobStatus, lit, one_of

__all__ = ["call_record", "events_after", "gauges", "list_calls", "read_call", "tail"]


def read_call(c: Conn, key: str) -> CallRecord | None:
    """The call whose record key is ``key``."""
    row = c.one(f"SELECT {CallRecord.COLUMNS} FROM calls WHERE id = :key", {"key": key})
    return CallRecord.from_row(row) if row else None


def events_after(c: Conn, key: str, seq: int, limit: int = 1000) -> list[dict[str, Any]]:
    """The call's events after ``seq``, in order, as stored (JSON)."""
    rows = c.all(
        "SELECT payload FROM events WHERE call_key = :key AND seq > :seq ORDER BY seq LIMIT :limit",
        {"key": key, "seq": seq, "limit": limit},
    )
    return [loads(r["payload"]) for r in rows]


def call_record(c: Conn, key: str, *, full: bool = True) -> dict[str, Any] | None:
    """The call record (:func:`~proxy.storage.records.call_json`) of the call with
    record key ``key``; with ``full``, its end-function steps and deliveries too."""
    call = read_call(c, key)
    if call is None:
        return None
    turns = [TurnRecord.from_row(r) for r in c.all(f"SELECT {TurnRecord.COLUMNS} FROM turns WHERE call_key = :key ORDER BY idx", {"key": key})]
    events = events_after(c, key, 0, 1_000_000)
    if not full:
        return call_json(call, turns, events)
    jobs = [Job.from_row(r) for r in c.all(f"SELECT {Job.COLUMNS} FROM jobs WHERE call_key = :key ORDER BY id", {"key": key})]
    deliveries = [
        Delivery.from_row(r)
        for r in c.all(f"SELECT {Delivery.COLUMNS} FROM deliveries WHERE call_key = :key ORDER BY seq", {"key": key})
    ]
    return call_json(call, turns, events, jobs, deliveries)


def tail(c: Conn, since: float, call_id: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """What happened at or after ``since`` (Unix s), oldest first: finished turns
    (``{"kind": "turn", "at", "call_id", "key", "idx", "status", "user_text",
    "spoken_text", "ttft_ms", "duration_ms"}``) and control events (``{"kind":
    "event", "at", "call_id", "key", "seq", "event"}``); ``call_id``: one call's
    (the runtime's id or a record key)."""
    one = " AND (k.call_id = :call OR k.id = :call)" if call_id is not None else ""
    p = {"since": since, "call": call_id, "limit": limit}
    turns = c.all(
        "SELECT t.finished_at AS at, k.call_id AS call_id, k.id AS key, t.idx AS idx, t.status AS status, t.user_text "
        "AS user_text, t.spoken_text AS spoken_text, t.ttft_ms AS ttft_ms, t.duration_ms AS duration_ms FROM turns t "
        f"JOIN calls k ON k.id = t.call_key WHERE t.finished_at >= :since{one} ORDER BY t.finished_at LIMIT :limit",
        p,
    )
    events = c.all(
        "SELECT e.created_at AS at, k.call_id AS call_id, k.id AS key, e.seq AS seq, e.payload AS payload FROM events e "
        f"JOIN calls k ON k.id = e.call_key WHERE e.created_at >= :since{one} ORDER BY e.created_at LIMIT :limit",
        p,
    )
    out: list[dict[str, Any]] = [{"kind": "turn", **dict(r)} for r in turns]
    out += [
        {"kind": "event", "at": r["at"], "call_id": r["call_id"], "key": r["key"], "seq": r["seq"], "event": loads(r["payload"])}
        for r in events
    ]
    full = [rows[-1]["at"] for rows in (turns, events) if len(rows) == limit]
    horizon = min(full) if full else None  # past it, one of the two may have more: the next call reads them
    return sorted((x for x in out if horizon is None or x["at"] <= horizon), key=lambda x: (x["at"], x["kind"] == "event"))


def list_calls(c: Conn, *, since: float | None = None, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Newest first: ``{"id", "key", "generation", "status", "end_reason",
    "started_at", "ended_at", "jobs": {status: n}}`` (``id``: the runtime's call id;
    ``key``: the record key)."""
    where, p = [], {"since": since, "status": status, "limit": limit}
    if since is not None:
        where.append("started_at >= :since")
    if status is not None:
        where.append("status = :status")
    sql = "SELECT id, call_id, generation, status, end_reason, started_at, ended_at FROM calls"
    sql += (" WHERE " + " AND ".join(where)) if where else ""
    rows = c.all(sql + " ORDER BY started_at DESC LIMIT :limit", p)
    out = [
        {"id": r["call_id"], "key": r["id"], "generation": r["generation"], "status": r["status"],
         "end_reason": r["end_reason"], "started_at": r["started_at"], "ended_at": r["ended_at"], "jobs": {}}
        for r in rows
    ]
    by_key = {x["key"]: x for x in out}
    if out:
        counts = c.all(
            f"SELECT call_key, status, COUNT(*) AS n FROM jobs WHERE call_key {c.any('keys')} GROUP BY call_key, status",
            {"keys": c.array(list(by_key))},
        )
        for r in counts:
            by_key[r["call_key"]]["jobs"][r["status"]] = r["n"]
    return out


def gauges(c: Conn) -> dict[str, int]:
    """What the database says now, for ``/metrics``: ``calls_active``,
    ``steps_failed``, ``steps_pending``, ``deliveries_failed``, ``deliveries_pending``."""
    calls = c.value(f"SELECT COUNT(*) FROM calls WHERE status = {lit(CallStatus.ACTIVE)}", None, 0)
    open_jobs = one_of((JobStatus.FAILED, JobStatus.PENDING, JobStatus.RUNNING))
    jobs = {r["status"]: r["n"] for r in c.all(f"SELECT status, COUNT(*) AS n FROM jobs WHERE status IN ({open_jobs}) GROUP BY status")}
    open_deliveries = one_of((DeliveryStatus.FAILED, DeliveryStatus.PENDING))
    dels = {
        r["status"]: r["n"]
        for r in c.all(f"SELECT status, COUNT(*) AS n FROM deliveries WHERE status IN ({open_deliveries}) GROUP BY status")
    }
    return {
        "calls_active": int(calls),
        "steps_failed": int(jobs.get(JobStatus.FAILED, 0)),
        "steps_pending": int(jobs.get(JobStatus.PENDING, 0) + jobs.get(JobStatus.RUNNING, 0)),
        "deliveries_failed": int(dels.get(DeliveryStatus.FAILED, 0)),
        "deliveries_pending": int(dels.get(DeliveryStatus.PENDING, 0)),
    }
