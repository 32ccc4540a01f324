"""The one queue: end-function jobs and control-event deliveries.

Both are rows a worker claims under a lease (``locked_by``, ``locked_until``; ``FOR
UPDATE SKIP LOCKED`` on PostgreSQL), which a heartbeat extends, and whose try's
outcome only the holder writes. ``attempts`` means one thing on both: the tries
claimed so far, the one under way included (a claim adds one; a retry from the CLI
sets it back to 0), so the next wait is ``backoff * 2 ** (attempts - 1)``
(:func:`proxy.core.backoff.delay_s`). A job is ``running`` while claimed; a
delivery stays ``pending`` and is held by its lease alone. A delivery waits for the
earlier pending deliveries of its call (each call's events go in order).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..db import Conn
from ..records import Delivery, Job, dumps
from ..statuses import DeliveryStatus, JobStatus, lit, one_of

__all__ = [
    "claim_deliveries", "claim_jobs", "count_deliveries", "extend_leases", "finish_delivery", "finish_job", "job",
    "jobs_for_call", "list_deliveries", "list_jobs", "next_due", "retry_deliveries", "retry_jobs",
]

# table -> its key column, and its status of a row waiting for a try
_QUEUES = {"jobs": "id", "deliveries": "event_id"}
_WAITING = {"jobs": lit(JobStatus.PENDING), "deliveries": lit(DeliveryStatus.PENDING)}


def _claimed(c: Conn, table: str, me: str, ids: Sequence[Any], until: float, now: float, status: str | None = None) -> None:
    """Mark ``ids`` claimed by ``me`` until ``until``: one more attempt each."""
    also = ", status = :status" if status is not None else ""
    c.execute(
        f"UPDATE {table} SET locked_by = :me, locked_until = :until, attempts = attempts + 1, updated_at = :now{also} "
        f"WHERE {_QUEUES[table]} {c.any('ids')}",
        {"me": me, "until": until, "now": now, "status": status, "ids": c.array(list(ids))},
    )


def extend_leases(c: Conn, table: str, me: str, ids: Sequence[Any], until: float) -> int:
    """Heartbeat: the leases ``me`` holds on ``ids`` (``jobs`` or ``deliveries``) run
    until ``until``. Returns how many it still holds."""
    if not ids:
        return 0
    return int(
        c.execute(
            f"UPDATE {table} SET locked_until = :until WHERE locked_by = :me AND {_QUEUES[table]} {c.any('ids')}",
            {"until": until, "me": me, "ids": c.array(list(ids))},
        ).rowcount
    )


def next_due(c: Conn, table: str, after: float) -> float | None:
    """When the next pending job or delivery falls due later than ``after``."""
    due: float | None = c.value(
        f"SELECT MIN(next_at) FROM {table} WHERE status = {_WAITING[table]} AND next_at > :after", {"after": after}
    )
    return due


# -- jobs ---------------------------------------------------------------------------------------


def jobs_for_call(c: Conn, key: str) -> list[Job]:
    """The jobs of the call with record key ``key``, in the order they were queued."""
    return [Job.from_row(r) for r in c.all(f"SELECT {Job.COLUMNS} FROM jobs WHERE call_key = :key ORDER BY id", {"key": key})]


def job(c: Conn, job_id: int) -> Job | None:
    """One job, or ``None``."""
    row = c.one(f"SELECT {Job.COLUMNS} FROM jobs WHERE id = :id", {"id": job_id})
    return Job.from_row(row) if row else None


def list_jobs(c: Conn, *, status: JobStatus | None = None, limit: int = 200) -> list[Job]:
    """The newest jobs first, with ``status`` when given."""
    where = " WHERE status = :status" if status else ""
    rows = c.all(f"SELECT {Job.COLUMNS} FROM jobs{where} ORDER BY id DESC LIMIT :limit", {"status": status, "limit": limit})
    return [Job.from_row(r) for r in rows]


def claim_jobs(c: Conn, me: str, now: float, lease_s: float, free: Mapping[str, int], limit: int) -> tuple[list[Job], list[Job]]:
    """Claim due jobs whose ``after`` steps are done or skipped, at most ``free[step]``
    of each step and ``limit`` in all, under a lease until ``now + lease_s``. Jobs
    behind a failed or blocked step become ``blocked``. Returns ``(claimed, blocked)``."""
    rows = c.all(
        f"SELECT {Job.COLUMNS} FROM jobs WHERE status = {lit(JobStatus.PENDING)} AND next_at <= :now "
        f"ORDER BY next_at, id LIMIT :n{c.skip_locked}",
        {"now": now, "n": min(limit, 64) * 2},
    )
    candidates = [Job.from_row(r) for r in rows]
    siblings = _sibling_statuses(c, {j.call_key for j in candidates if j.after})
    claimed: list[Job] = []
    blocked: list[Job] = []
    left = dict(free)
    for j in candidates:
        if len(claimed) >= limit or left.get(j.step, 0) <= 0:
            continue
        deps = [siblings.get((j.call_key, name)) for name in j.after]
        bad = [(name, st) for name, st in zip(j.after, deps) if st in (JobStatus.FAILED, JobStatus.BLOCKED)]
        if bad:
            c.execute(
                "UPDATE jobs SET status = :blocked, last_error = :error, updated_at = :now WHERE id = :id",
                {"blocked": JobStatus.BLOCKED, "error": f"after: step {bad[0][0]!r} {bad[0][1]}", "now": now, "id": j.id},
            )
            blocked.append(j)
        elif all(st in (JobStatus.DONE, JobStatus.SKIPPED) for st in deps):
            j.status, j.attempts, j.locked_by = JobStatus.RUNNING, j.attempts + 1, me
            claimed.append(j)
            left[j.step] -= 1
    if claimed:
        _claimed(c, "jobs", me, [j.id for j in claimed], now + lease_s, now, JobStatus.RUNNING)
    return claimed, blocked


def _sibling_statuses(c: Conn, keys: set[str]) -> dict[tuple[str, str], JobStatus]:
    if not keys:
        return {}
    rows = c.all(f"SELECT call_key, step, status FROM jobs WHERE call_key {c.any('keys')}", {"keys": c.array(sorted(keys))})
    return {(r["call_key"], r["step"]): JobStatus(r["status"]) for r in rows}


def finish_job(
    c: Conn,
    job_id: int,
    me: str,
    status: JobStatus,
    now: float,
    *,
    error: str | None = None,
    response_code: int | None = None,
    duration_ms: float | None = None,
    output: Any = None,
    next_at: float | None = None,
) -> bool:
    """Record a try's outcome (a terminal status, or ``pending`` again at
    ``next_at``), only while ``me`` holds the lease. ``False``: the lease was lost."""
    return bool(
        c.execute(
            "UPDATE jobs SET status = :status, last_error = :error, response_code = :code, duration_ms = :duration_ms, "
            "output = :output, next_at = COALESCE(:next_at, next_at), locked_by = NULL, locked_until = NULL, "
            f"updated_at = :now WHERE id = :id AND locked_by = :me AND status = {lit(JobStatus.RUNNING)}",
            {
                "status": status, "error": error, "code": response_code, "duration_ms": duration_ms,
                "output": None if output is None else dumps(output), "next_at": next_at, "now": now, "id": job_id, "me": me,
            },
        ).rowcount
    )


def retry_jobs(c: Conn, job_ids: Iterable[int] | None, now: float) -> int:
    """Back to pending with attempts reset: the given finished jobs, or with ``None``
    every failed one; the steps blocked behind them come too. Returns how many."""
    if job_ids is None:
        ids = [r["id"] for r in c.all(f"SELECT id FROM jobs WHERE status = {lit(JobStatus.FAILED)}")]
    else:
        wanted = list(job_ids)
        finished = one_of((JobStatus.DONE, JobStatus.FAILED, JobStatus.SKIPPED, JobStatus.BLOCKED))
        rows = c.all(f"SELECT id FROM jobs WHERE status IN ({finished}) AND id {c.any('ids')}", {"ids": c.array(wanted)}) if wanted else []
        ids = [r["id"] for r in rows]
    if not ids:
        return 0
    p = {"ids": c.array(ids)}
    blocked = [
        r["id"]
        for r in c.all(
            f"SELECT id FROM jobs WHERE status = {lit(JobStatus.BLOCKED)} AND call_key IN (SELECT call_key FROM jobs "
            f"WHERE id {c.any('ids')})",
            p,
        )
    ]
    every = sorted(set(ids) | set(blocked))
    c.notify("jobs")
    c.execute(
        "UPDATE jobs SET status = :pending, attempts = 0, next_at = :now, last_error = NULL, locked_by = NULL, "
        f"locked_until = NULL, updated_at = :now WHERE id {c.any('every')}",
        {"pending": JobStatus.PENDING, "now": now, "every": c.array(every)},
    )
    return len(every)


# -- deliveries -----------------------------------------------------------------------------------


def _deliveries(c: Conn, where: str, params: Mapping[str, Any]) -> list[Delivery]:
    return [Delivery.from_row(r) for r in c.all(f"SELECT {Delivery.COLUMNS} FROM deliveries {where}", params)]


def claim_deliveries(c: Conn, me: str, now: float, lease_s: float, limit: int) -> list[Delivery]:
    """Claim due deliveries, each only when no earlier delivery of its call is
    pending (each call's events go in order), under a lease until ``now +
    lease_s``."""
    pending = lit(DeliveryStatus.PENDING)
    claimed = _deliveries(
        c,
        f"d WHERE status = {pending} AND next_at <= :now AND (locked_until IS NULL OR locked_until < :now) "
        f"AND NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.call_key = d.call_key AND p.seq < d.seq AND p.status = {pending}) "
        f"ORDER BY next_at LIMIT :limit{c.skip_locked}",
        {"now": now, "limit": limit},
    )
    if claimed:
        _claimed(c, "deliveries", me, [d.event_id for d in claimed], now + lease_s, now)
        for d in claimed:
            d.attempts += 1
    return claimed


def finish_delivery(
    c: Conn,
    event_id: str,
    me: str,
    status: DeliveryStatus,
    now: float,
    *,
    error: str | None = None,
    response_code: int | None = None,
    next_at: float | None = None,
) -> bool:
    """A try's outcome: ``done``, ``failed`` (a dead letter) or ``pending`` again at
    ``next_at``; only while ``me`` holds the lease. ``False``: the lease was lost."""
    return bool(
        c.execute(
            "UPDATE deliveries SET status = :status, last_error = :error, response_code = :code, "
            "next_at = COALESCE(:next_at, next_at), locked_by = NULL, locked_until = NULL, updated_at = :now "
            f"WHERE event_id = :id AND locked_by = :me AND status = {lit(DeliveryStatus.PENDING)}",
            {"status": status, "error": error, "code": response_code, "next_at": next_at, "now": now, "id": event_id, "me": me},
        ).rowcount
    )


def list_deliveries(c: Conn, *, status: DeliveryStatus | None = None, limit: int = 200) -> list[Delivery]:
    """The most recently changed deliveries first, with ``status`` when given."""
    where = "WHERE status = :status " if status else ""
    return _deliveries(c, where + "ORDER BY updated_at DESC LIMIT :limit", {"status": status, "limit": limit})


def count_deliveries(c: Conn) -> dict[str, int]:
    """``{status: n}`` over every delivery."""
    return {r["status"]: r["n"] for r in c.all("SELECT status, COUNT(*) AS n FROM deliveries GROUP BY status")}


def retry_deliveries(c: Conn, event_ids: Iterable[str] | None, now: float) -> int:
    """Failed deliveries (the given ones, or with ``None`` every one) go out again:
    pending now with attempts reset, their age counted from now. Returns how many."""
    c.notify("deliveries")
    only = ""
    p: dict[str, Any] = {"pending": DeliveryStatus.PENDING, "now": now}
    if event_ids is not None:
        ids = list(event_ids)
        if not ids:
            return 0
        only, p["ids"] = f" AND event_id {c.any('ids')}", c.array(ids)
    return int(
        c.execute(
            "UPDATE deliveries SET status = :pending, attempts = 0, next_at = :now, created_at = :now, updated_at = :now, "
            f"last_error = NULL WHERE status = {lit(DeliveryStatus.FAILED)}{only}",
            p,
        ).rowcount
    )
