"""Reads for the operator page (``/ui/``): calls with filters, and whether anything changed.

Written once for both engines, as :mod:`~proxy.storage.ops` is (named parameters,
portable SQL); each function takes a :class:`~proxy.storage.db.Conn` and returns
plain data.
"""

from __future__ import annotations

from typing import Any

from .db import Conn
from .records import iso, loads
from .statuses import CallStatus, DeliveryStatus, JobStatus, lit

__all__ = ["calls_page", "fingerprint"]


def calls_page(
    c: Conn,
    *,
    since: float | None = None,
    until: float | None = None,
    status: str | None = None,
    end_reason: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Calls newest first (started in ``[since, until)``, with ``status`` and
    ``end_reason`` when given), each with what its outcome tags are made of:
    ``{"id" (the runtime's call id), "key" (the record key), "call_id",
    "generation", "status", "started_at", "ended_at", "last_activity", "end_reason",
    "end_source", "turns", "metadata", "state", "events": [...], "spoke": caller said
    something, "jobs": {status: n}, "outputs": [step outputs]}``."""
    where = []
    p = {"since": since, "until": until, "status": status, "end_reason": end_reason, "limit": limit}
    for clause, value in (("started_at >= :since", since), ("started_at < :until", until), ("status = :status", status), ("end_reason = :end_reason", end_reason)):
        if value is not None:
            where.append(clause)
    sql = (
        "SELECT id, call_id, generation, status, started_at, ended_at, last_activity, end_reason, end_source, turns, "
        "metadata, state FROM calls"
    )
    sql += (" WHERE " + " AND ".join(where)) if where else ""
    rows = c.all(sql + " ORDER BY started_at DESC LIMIT :limit", p)
    out = {
        r["id"]: {
            "id": r["call_id"], "key": r["id"], "call_id": r["call_id"], "generation": r["generation"],
            "status": r["status"], "started_at": iso(r["started_at"]), "ended_at": iso(r["ended_at"]),
            "last_activity": iso(r["last_activity"]), "end_reason": r["end_reason"], "end_source": r["end_source"],
            "turns": r["turns"], "metadata": loads(r["metadata"], {}), "state": loads(r["state"], {}), "events": [],
            "spoke": False, "jobs": {}, "outputs": [],
        }
        for r in rows
    }
    if out:
        _details(c, out)
    return list(out.values())


def _details(c: Conn, calls: dict[str, dict[str, Any]]) -> None:
    """The events, whether the caller spoke, and the steps of ``calls`` (by key)."""
    p = {"keys": c.array(list(calls))}
    for r in c.all(f"SELECT call_key, payload FROM events WHERE call_key {c.any('keys')} ORDER BY call_key, seq", p):
        calls[r["call_key"]]["events"].append(loads(r["payload"], {}))
    for r in c.all(f"SELECT DISTINCT call_key FROM turns WHERE call_key {c.any('keys')} AND user_text <> ''", p):
        calls[r["call_key"]]["spoke"] = True
    for r in c.all(f"SELECT call_key, status, output FROM jobs WHERE call_key {c.any('keys')} ORDER BY id", p):
        jobs = calls[r["call_key"]]["jobs"]
        jobs[r["status"]] = jobs.get(r["status"], 0) + 1
        if r["output"]:
            calls[r["call_key"]]["outputs"].append(loads(r["output"]))


def fingerprint(c: Conn) -> tuple[Any, ...]:
    """A value that changes when a call, a step or a delivery does: a turn begins
    or ends, an event is stored, a call ends, a job or delivery moves (each move sets
    its ``updated_at``, so a step that goes pending, running and done between two
    reads still shows). Only indexes are read (active calls, ended calls by
    ``ended_at``, jobs and deliveries by ``updated_at``), so it stays cheap on a
    large database."""
    active, pending = lit(CallStatus.ACTIVE), lit(JobStatus.PENDING)
    row = c.one(
        "SELECT "
        f"(SELECT COUNT(*) FROM calls WHERE status = {active}) AS a, "
        f"(SELECT MAX(updated_at) FROM calls WHERE status = {active}) AS b, "
        f"(SELECT MAX(ended_at) FROM calls WHERE status = {lit(CallStatus.ENDED)}) AS c, "
        f"(SELECT COUNT(*) FROM jobs WHERE status = {pending}) AS d, "
        f"(SELECT COUNT(*) FROM jobs WHERE status = {lit(JobStatus.RUNNING)}) AS e, "
        "(SELECT MAX(updated_at) FROM jobs) AS f, "
        f"(SELECT COUNT(*) FROM deliveries WHERE status = {lit(DeliveryStatus.PENDING)}) AS g, "
        "(SELECT MAX(updated_at) FROM deliveries) AS h"
    )
    return tuple(row[k] for k in "abcdefgh") if row is not None else ()
