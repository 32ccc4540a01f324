"""The processes using the database: heartbeats, and recovering what stopped ones
left behind."""

from __future__ import annotations

from collections.abc import Sequence

from ..db import Conn
from ..statuses import DeliveryStatus, JobStatus, TurnStatus, lit

__all__ = ["heartbeat", "processes", "recover"]


def heartbeat(c: Conn, me: str, host: str, pid: int, now: float) -> None:
    """Register this process, or say it is alive."""
    c.execute(
        "INSERT INTO instances (id, host, pid, started_at, heartbeat_at) VALUES (:me, :host, :pid, :now, :now) "
        "ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        {"me": me, "host": host, "pid": pid, "now": now},
    )


def processes(c: Conn) -> list[tuple[str, str, int]]:
    """Every registered process: ``(instance id, host, pid)``."""
    return [(r["id"], r["host"], int(r["pid"])) for r in c.all("SELECT id, host, pid FROM instances ORDER BY id")]


def recover(c: Conn, me: str, now: float, dead_before: float, gone: Sequence[str] = ()) -> dict[str, int]:
    """What processes that stopped heart-beating before ``dead_before``, or are known
    to be ``gone`` (their pid is not running), left behind: their turns in progress
    become ``interrupted``; their running jobs and claimed deliveries (and any whose
    lease ran out) are free again. Returns the counts (``turns``, ``jobs``,
    ``deliveries``)."""
    p = {"me": me, "now": now, "dead_before": dead_before, "gone": c.array([g for g in gone if g != me])}
    dead = [r["id"] for r in c.all(f"SELECT id FROM instances WHERE (heartbeat_at < :dead_before OR id {c.any('gone')}) AND id <> :me", p)]
    alive = [me] + [
        r["id"] for r in c.all(f"SELECT id FROM instances WHERE heartbeat_at >= :dead_before AND id {c.none_of('gone')} AND id <> :me", p)
    ]
    p["alive"] = c.array(alive)
    turns = c.execute(
        f"UPDATE turns SET status = :interrupted, error = 'the process serving it stopped', finished_at = :now "
        f"WHERE status = {lit(TurnStatus.IN_PROGRESS)} AND instance {c.none_of('alive')}",
        {**p, "interrupted": TurnStatus.INTERRUPTED},
    ).rowcount
    jobs = c.execute(
        f"UPDATE jobs SET status = :pending, locked_by = NULL, locked_until = NULL, next_at = :now, updated_at = :now "
        f"WHERE status = {lit(JobStatus.RUNNING)} AND (locked_until < :now OR locked_by IS NULL OR locked_by {c.none_of('alive')})",
        {**p, "pending": JobStatus.PENDING},
    ).rowcount
    deliveries = c.execute(
        f"UPDATE deliveries SET locked_by = NULL, locked_until = NULL WHERE status = {lit(DeliveryStatus.PENDING)} "
        f"AND locked_by IS NOT NULL AND (locked_until < :now OR locked_by {c.none_of('alive')})",
        p,
    ).rowcount
    if dead:
        c.execute(
            f"DELETE FROM instances WHERE id {c.any('dead')} AND (heartbeat_at < :day_ago OR id {c.any('gone')})",
            {"dead": c.array(dead), "day_ago": now - 86400, "gone": p["gone"]},
        )
    return {"turns": turns, "jobs": jobs, "deliveries": deliveries}
