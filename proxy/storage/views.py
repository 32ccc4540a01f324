"""Reads for the operator page (``/ui/``): calls with filters, and whether anything changed.

Written once for both engines, as :mod:`~proxy.storage.ops` is (``?`` placeholders,
portable SQL); each function takes a :class:`~proxy.storage.db.Conn` and returns
plain data.
"""

from __future__ import annotations

from typing import Any

from .db import Conn
from .records import iso, loads

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
    ``{"id", "call_id", "status", "started_at", "ended_at", "last_activity",
    "end_reason", "end_source", "turns", "metadata", "state", "events": [...],
    "spoke": caller said something, "jobs": {status: n}, "outputs": [step outputs]}``."""
    where, args = [], []
    for clause, value in (("started_at >= ?", since), ("started_at < ?", until), ("status = ?", status), ("end_reason = ?", end_reason)):
        if value is not None:
            where.append(clause)
            args.append(value)
    sql = "SELECT id, call_id, status, started_at, ended_at, last_activity, end_reason, end_source, turns, metadata, state FROM calls"
    sql += (" WHERE " + " AND ".join(where)) if where else ""
    rows = c.all(sql + " ORDER BY started_at DESC LIMIT ?", (*args, limit))
    out = {
        r[0]: {
            "id": r[0], "call_id": r[1], "status": r[2], "started_at": iso(r[3]), "ended_at": iso(r[4]),
            "last_activity": iso(r[5]), "end_reason": r[6], "end_source": r[7], "turns": r[8],
            "metadata": loads(r[9], {}), "state": loads(r[10], {}), "events": [], "spoke": False, "jobs": {}, "outputs": [],
        }
        for r in rows
    }
    if out:
        _details(c, out)
    return list(out.values())


def _details(c: Conn, calls: dict[str, dict[str, Any]]) -> None:
    """The events, whether the caller spoke, and the steps of ``calls`` (by key)."""
    keys = list(calls)
    marks = c.marks(len(keys))
    for key, payload in c.all(f"SELECT call_key, payload FROM events WHERE call_key IN ({marks}) ORDER BY call_key, seq", keys):
        calls[key]["events"].append(loads(payload, {}))
    for (key,) in c.all(f"SELECT DISTINCT call_key FROM turns WHERE call_key IN ({marks}) AND user_text <> ''", keys):
        calls[key]["spoke"] = True
    for key, status, output in c.all(f"SELECT call_id, status, output FROM jobs WHERE call_id IN ({marks}) ORDER BY id", keys):
        jobs = calls[key]["jobs"]
        jobs[status] = jobs.get(status, 0) + 1
        if output:
            calls[key]["outputs"].append(loads(output))


def fingerprint(c: Conn) -> tuple[Any, ...]:
    """A value that changes when a call, a step or a delivery does: a turn begins
    or ends, an event is stored, a call ends, a job or delivery moves (each move sets
    its ``updated_at``, so a step that goes pending, running and done between two
    reads still shows). Only indexes are read (active calls, ended calls by
    ``ended_at``, jobs and deliveries by ``updated_at``), so it stays cheap on a
    large database."""
    row = c.one(
        "SELECT "
        "(SELECT COUNT(*) FROM calls WHERE status = 'active'), "
        "(SELECT MAX(updated_at) FROM calls WHERE status = 'active'), "
        "(SELECT MAX(ended_at) FROM calls WHERE status = 'ended'), "
        "(SELECT COUNT(*) FROM jobs WHERE status = 'pending'), "
        "(SELECT COUNT(*) FROM jobs WHERE status = 'running'), "
        "(SELECT MAX(updated_at) FROM jobs), "
        "(SELECT COUNT(*) FROM deliveries WHERE status = 'pending'), "
        "(SELECT MAX(updated_at) FROM deliveries)"
    )
    return tuple(row) if row is not None else ()
