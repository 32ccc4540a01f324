"""Every database operation, written once for both engines.

Each function takes a :class:`~proxy.storage.db.Conn` inside a transaction the
engine opened, and plain data (dicts, numbers, Unix seconds); it returns plain data.
The rules that must hold across processes live here as SQL:

* a call ends once: ``UPDATE calls SET status = 'ended' ... WHERE status = 'active'``;
* one hangup per call: a partial unique index on ``events``; the loser is stored as
  its ``command.rejected`` alternative;
* events are numbered from the call row (``last_seq``);
* jobs and deliveries are claimed under a lease (``locked_by``, ``locked_until``;
  ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), and only the holder writes a result;
* a delivery waits for the earlier pending deliveries of its call (in order).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..core.merge import merge_patch
from .db import Conn
from .records import (
    DELIVERY_COLUMNS,
    JOB_COLUMNS,
    CallRow,
    Delivery,
    DeliveryStatus,
    Job,
    JobStatus,
    dumps,
    end_function_summary,
    iso,
    loads,
)

__all__ = [
    "add_events",
    "begin_turn",
    "call_record",
    "claim_deliveries",
    "claim_jobs",
    "count_deliveries",
    "due_ends",
    "end_call",
    "end_of",
    "events_after",
    "extend_leases",
    "finish_delivery",
    "finish_job",
    "finish_turn",
    "find_call",
    "gauges",
    "heartbeat",
    "job",
    "jobs_for_call",
    "list_calls",
    "list_deliveries",
    "list_jobs",
    "next_due",
    "patch_state",
    "purge",
    "put_record",
    "recover",
    "retry_deliveries",
    "retry_jobs",
    "tail",
]

_CALL_ROW = "id, call_id, generation, status, anonymous, owner, hangup_source, last_activity, turns, last_seq"


def _call_row(row: Sequence[Any]) -> CallRow:
    return CallRow(row[0], row[1], row[2], row[3], bool(row[4]), row[5], row[6], row[7], row[8], row[9])


# -- instances and recovery -------------------------------------------------------------


def heartbeat(c: Conn, me: str, host: str, pid: int, now: float) -> None:
    """Register this process, or say it is alive."""
    c.execute(
        "INSERT INTO instances (id, host, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        (me, host, pid, now, now),
    )


def recover(c: Conn, me: str, now: float, dead_before: float) -> dict[str, int]:
    """What processes that stopped heart-beating before ``dead_before`` left behind:
    their turns in progress become ``interrupted``; their running jobs and claimed
    deliveries (and any whose lease ran out) are free again. Returns the counts."""
    dead = [r[0] for r in c.all("SELECT id FROM instances WHERE heartbeat_at < ? AND id <> ?", (dead_before, me))]
    alive = [me] + [r[0] for r in c.all("SELECT id FROM instances WHERE heartbeat_at >= ? AND id <> ?", (dead_before, me))]
    marks = c.marks(len(alive))
    turns = c.execute(
        f"UPDATE turns SET status = 'interrupted', error = 'the process serving it stopped', finished_at = ? "
        f"WHERE status = 'in_progress' AND instance NOT IN ({marks})",
        (now, *alive),
    ).rowcount
    jobs = c.execute(
        f"UPDATE jobs SET status = 'pending', locked_by = NULL, locked_until = NULL, next_at = ?, updated_at = ? "
        f"WHERE status = 'running' AND (locked_until < ? OR locked_by IS NULL OR locked_by NOT IN ({marks}))",
        (now, now, now, *alive),
    ).rowcount
    deliveries = c.execute(
        f"UPDATE deliveries SET locked_by = NULL, locked_until = NULL "
        f"WHERE status = 'pending' AND locked_by IS NOT NULL AND (locked_until < ? OR locked_by NOT IN ({marks}))",
        (now, *alive),
    ).rowcount
    if dead:
        c.execute(f"DELETE FROM instances WHERE id IN ({c.marks(len(dead))}) AND heartbeat_at < ?", (*dead, now - 86400))
    return {"turns": turns, "jobs": jobs, "deliveries": deliveries}


# -- calls --------------------------------------------------------------------------------


def find_call(c: Conn, call_id: str, exact: bool = False) -> CallRow | None:
    """The newest call under the runtime's ``call_id``, else the call whose record
    key it is (only that with ``exact``)."""
    row = None
    if not exact:
        row = c.one(f"SELECT {_CALL_ROW} FROM calls WHERE call_id = ? ORDER BY generation DESC LIMIT 1", (call_id,))
    if row is None:
        row = c.one(f"SELECT {_CALL_ROW} FROM calls WHERE id = ?", (call_id,))
    return _call_row(row) if row else None


def begin_turn(c: Conn, call: dict[str, Any], turn: dict[str, Any], metadata: dict[str, Any] | None, now: float) -> int:
    """A turn begins (``in_progress``); the call's row is made when it is the first.
    ``call``: ``id``, ``call_id``, ``generation``, ``anonymous``, ``owner``,
    ``profile``, ``started_at``, and ``new`` when this process made the call (its
    row most likely does not exist yet); ``turn``: ``request_id``, ``instance``,
    ``started_at``, ``stream``, ``user_text``. Returns the turn's number."""
    key = call["id"]
    idx = _new_call(c, call, metadata, now) if call.get("new") else None
    if idx is None and not metadata:
        idx = c.value("UPDATE calls SET turns = turns + 1, last_activity = ?, updated_at = ? WHERE id = ? RETURNING turns", (now, now, key))
    if idx is None:
        idx = _turn_with_metadata(c, call, metadata, now)
    c.execute(
        "INSERT INTO turns (call_key, idx, request_id, instance, started_at, stream, status, user_text) "
        "VALUES (?, ?, ?, ?, ?, ?, 'in_progress', ?)",
        (key, idx, turn["request_id"], turn["instance"], turn["started_at"], int(turn["stream"]), turn["user_text"]),
    )
    return int(idx)


def _new_call(c: Conn, call: dict[str, Any], metadata: dict[str, Any] | None, now: float) -> int | None:
    """The call's row with its first turn counted; ``None`` when it exists already."""
    inserted = c.execute(
        "INSERT INTO calls (id, call_id, generation, status, anonymous, owner, profile, started_at, last_activity, "
        "state, metadata, turns, updated_at) VALUES (?, ?, ?, 'active', ?, ?, ?, ?, ?, '{}', ?, 1, ?) ON CONFLICT DO NOTHING",
        (call["id"], call["call_id"], call["generation"], int(call["anonymous"]), call.get("owner"), call.get("profile"),
         call["started_at"], now, dumps(metadata or {}), now),
    ).rowcount
    return 1 if inserted else None


def _turn_with_metadata(c: Conn, call: dict[str, Any], metadata: dict[str, Any] | None, now: float) -> int:
    """Count a turn of a call whose row may be missing, merging ``metadata``."""
    key = call["id"]
    row = c.one(f"SELECT metadata FROM calls WHERE id = ?{c.for_update}", (key,))
    if row is None:
        _new_call(c, {**call, "new": True}, None, now)
        row = c.one(f"SELECT metadata FROM calls WHERE id = ?{c.for_update}", (key,))
        c.execute("UPDATE calls SET turns = 0 WHERE id = ?", (key,))
    meta = {**loads(row[0], {}), **(metadata or {})}
    return int(c.value(
        "UPDATE calls SET turns = turns + 1, last_activity = ?, metadata = ?, updated_at = ? WHERE id = ? RETURNING turns",
        (now, dumps(meta), now, key),
    ))


def finish_turn(c: Conn, key: str, request_id: str, outcome: dict[str, Any], tool_calls: list[dict[str, Any]], now: float) -> None:
    """A turn ended: its outcome (``status``, ``error``, ``raw_text``,
    ``spoken_text``, ``commands``, ``tool_calls``, ``ttft_ms``, ``duration_ms``);
    ``tool_calls`` also go to ``state.tool_calls``."""
    commands = _judged(c, outcome.get("commands") or [])
    c.execute(
        "UPDATE turns SET status = ?, error = ?, raw_text = ?, spoken_text = ?, commands = ?, tool_calls = ?, "
        "ttft_ms = ?, duration_ms = ?, finished_at = ? WHERE request_id = ?",
        (outcome["status"], outcome.get("error"), outcome.get("raw_text", ""), outcome.get("spoken_text", ""),
         dumps(commands), dumps(outcome.get("tool_calls") or []), outcome.get("ttft_ms"), outcome.get("duration_ms"),
         now, request_id),
    )
    if tool_calls:
        state = loads(c.value(f"SELECT state FROM calls WHERE id = ?{c.for_update}", (key,)), {})
        state.setdefault("tool_calls", []).extend(tool_calls)
        c.execute("UPDATE calls SET state = ? WHERE id = ?", (dumps(state), key))
    c.execute("UPDATE calls SET last_activity = ?, updated_at = ? WHERE id = ?", (now, now, key))


def _judged(c: Conn, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The turn's commands with ``accepted`` as the database decided (a hangup that
    lost to another one was stored as ``command.rejected``)."""
    ids = [cmd["event_id"] for cmd in commands if cmd.get("event_id")]
    if not ids:
        return commands
    stored = {r[0]: (r[1], r[2]) for r in c.all(f"SELECT id, type, payload FROM events WHERE id IN ({c.marks(len(ids))})", ids)}
    out = []
    for cmd in commands:
        kind, payload = stored.get(cmd.get("event_id"), (None, None))
        if kind == "command.rejected" and cmd.get("accepted"):
            cmd = {**cmd, "accepted": False, "reason": loads(payload, {}).get("reason")}
        out.append(cmd)
    return out


def add_events(
    c: Conn, key: str, events: list[tuple[dict[str, Any], dict[str, Any] | None]], deliver: bool, now: float
) -> list[dict[str, Any]]:
    """Store control events, numbered from the call's ``last_seq``. Each comes with
    the alternative stored instead when a unique index refuses it (the call's
    second hangup becomes its ``command.rejected``). ``deliver``: queue each for
    the webhook. Returns the stored events, with ``seq``."""
    return [_add_event(c, key, event, alternative, deliver, now) for event, alternative in events]


def _add_event(c: Conn, key: str, event: dict[str, Any], alternative: dict[str, Any] | None, deliver: bool, now: float) -> dict[str, Any]:
    seq = c.value("UPDATE calls SET last_seq = last_seq + 1, updated_at = ? WHERE id = ? RETURNING last_seq", (now, key))
    if seq is None:
        raise LookupError(f"no call {key!r} to add an event to")
    stored = {**event, "seq": seq}
    inserted = _insert_event(c, key, stored, now)
    if not inserted and alternative is not None:
        stored = {**alternative, "seq": seq}
        _insert_event(c, key, stored, now)
    elif inserted and stored["type"] == "hangup":
        c.execute("UPDATE calls SET hangup_at = ?, hangup_source = ? WHERE id = ?", (now, stored.get("source"), key))
    if deliver:
        _queue_delivery(c, key, stored, now)
    c.notify(f"events:{key}")
    return stored


def _insert_event(c: Conn, key: str, event: dict[str, Any], now: float) -> bool:
    return bool(
        c.execute(
            "INSERT INTO events (call_key, seq, id, type, created_at, payload) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (key, event["seq"], event["id"], event["type"], now, dumps(event)),
        ).rowcount
    )


def _queue_delivery(c: Conn, key: str, event: dict[str, Any], now: float) -> None:
    c.execute(
        "INSERT INTO deliveries (event_id, call_key, seq, type, payload, status, next_at, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?) ON CONFLICT DO NOTHING",
        (event["id"], key, event["seq"], event["type"], dumps(event), now, now, now),
    )
    c.notify("deliveries")


def end_of(c: Conn, key: str) -> tuple[str | None, str | None]:
    """``(end_reason, end_source)`` of a call."""
    row = c.one("SELECT end_reason, end_source FROM calls WHERE id = ?", (key,))
    return (row[0], row[1]) if row else (None, None)


def end_call(
    c: Conn,
    key: str,
    ended: dict[str, Any],
    state: dict[str, Any] | None,
    steps: Iterable[tuple[str, str, list[str]]],
    deliver: bool,
    now: float,
) -> dict[str, Any] | None:
    """End the call once, in one transaction: mark it ended, merge ``state`` (top
    level), store its ``call.ended`` event (``ended``: the event without ``seq``)
    and one pending job per ``(step, kind, after)``. ``None`` when it had already
    ended, or does not exist."""
    seq = c.value(
        "UPDATE calls SET status = 'ended', end_reason = ?, end_source = ?, ended_at = ?, updated_at = ?, "
        "last_seq = last_seq + 1 WHERE id = ? AND status = 'active' RETURNING last_seq",
        (ended["reason"], ended["source"], now, now, key),
    )
    if seq is None:
        return None
    if state:
        current = loads(c.value(f"SELECT state FROM calls WHERE id = ?{c.for_update}", (key,)), {})
        current.update(state)
        c.execute("UPDATE calls SET state = ? WHERE id = ?", (dumps(current), key))
    stored = {**ended, "seq": seq}
    _insert_event(c, key, stored, now)
    if deliver:
        _queue_delivery(c, key, stored, now)
    c.notify(f"events:{key}")
    c.notify(f"ended:{key}")
    c.many(
        "INSERT INTO jobs (call_id, step, kind, after, status, next_at, idempotency_key, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [(key, name, kind, dumps(after), now, f"{key}:{name}", now, now) for name, kind, after in steps],
    )
    c.notify("jobs")
    return stored


def patch_state(c: Conn, key: str, patch: dict[str, Any], now: float) -> dict[str, Any] | None:
    """RFC 7386 merge patch into an active call's state; the new state, or ``None``
    when the call has ended."""
    row = c.one(f"SELECT status, state FROM calls WHERE id = ?{c.for_update}", (key,))
    if row is None or row[0] != "active":
        return None
    state = merge_patch(loads(row[1], {}), patch)
    c.execute("UPDATE calls SET state = ?, last_activity = ?, updated_at = ? WHERE id = ?", (dumps(state), now, now, key))
    return state


def due_ends(c: Conn, now: float, idle_timeout_s: float, after_hangup_s: float, limit: int = 500) -> list[tuple[str, str, str]]:
    """Active calls with no turn in progress that should have ended:
    ``(key, reason, source)``: a call without an id whose reply is over
    (``response_finished``), a hangup older than ``after_hangup_s``
    (``agent_hangup``), no request for ``idle_timeout_s`` (``idle_timeout``)."""
    rows = c.all(
        "SELECT id, anonymous, hangup_at, hangup_source, last_activity FROM calls WHERE status = 'active' "
        "AND (anonymous = 1 OR hangup_at IS NOT NULL OR last_activity < ?) "
        "AND NOT EXISTS (SELECT 1 FROM turns WHERE turns.call_key = calls.id AND turns.status = 'in_progress') "
        "ORDER BY last_activity LIMIT ?",
        (now - idle_timeout_s, limit),
    )
    out = []
    for key, anonymous, hangup_at, source, last in rows:
        if anonymous:
            out.append((key, "response_finished", "response_finished"))
        elif hangup_at is not None and last < now - after_hangup_s:
            out.append((key, "agent_hangup", source or "text_command"))
        elif last < now - idle_timeout_s:
            out.append((key, "idle_timeout", "idle_timeout"))
    return out


# -- reading calls ----------------------------------------------------------------------------


def events_after(c: Conn, key: str, seq: int, limit: int = 1000) -> list[dict[str, Any]]:
    """The call's events after ``seq``, in order."""
    rows = c.all("SELECT payload FROM events WHERE call_key = ? AND seq > ? ORDER BY seq LIMIT ?", (key, seq, limit))
    return [loads(r[0]) for r in rows]


def tail(c: Conn, since: float, call_id: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """What happened at or after ``since`` (Unix s), oldest first: finished turns
    (``{"kind": "turn", "at", "call_id", "key", "idx", "status", "user_text",
    "spoken_text", "ttft_ms", "duration_ms"}``) and control events (``{"kind":
    "event", "at", "call_id", "key", "seq", "event"}``); ``call_id``: one call's
    (the runtime's id or a record key)."""
    one = " AND (k.call_id = ? OR k.id = ?)" if call_id is not None else ""
    args: tuple[Any, ...] = (since, call_id, call_id) if call_id is not None else (since,)
    turns = c.all(
        "SELECT t.finished_at, k.call_id, k.id, t.idx, t.status, t.user_text, t.spoken_text, t.ttft_ms, t.duration_ms"
        f" FROM turns t JOIN calls k ON k.id = t.call_key WHERE t.finished_at >= ?{one} ORDER BY t.finished_at LIMIT ?",
        (*args, limit),
    )
    events = c.all(
        f"SELECT e.created_at, k.call_id, k.id, e.seq, e.payload FROM events e JOIN calls k ON k.id = e.call_key"
        f" WHERE e.created_at >= ?{one} ORDER BY e.created_at LIMIT ?",
        (*args, limit),
    )
    out = [
        {"kind": "turn", "at": r[0], "call_id": r[1], "key": r[2], "idx": r[3], "status": r[4], "user_text": r[5],
         "spoken_text": r[6], "ttft_ms": r[7], "duration_ms": r[8]}
        for r in turns
    ]
    out += [{"kind": "event", "at": r[0], "call_id": r[1], "key": r[2], "seq": r[3], "event": loads(r[4])} for r in events]
    full = [rows[-1][0] for rows in (turns, events) if len(rows) == limit]
    horizon = min(full) if full else None  # past it, one of the two may have more: the next call reads them
    return sorted((x for x in out if horizon is None or x["at"] <= horizon), key=lambda x: (x["at"], x["kind"] == "event"))


def call_record(c: Conn, key: str, *, full: bool = True) -> dict[str, Any] | None:
    """The call record: the call, its turns in order, its events, ``transcript``;
    with ``full``, ``end_function`` (when it has steps or ended) and
    ``control_deliveries`` too."""
    row = c.one(
        "SELECT id, call_id, generation, status, anonymous, owner, profile, started_at, ended_at, end_reason, "
        "end_source, state, metadata, last_activity FROM calls WHERE id = ?",
        (key,),
    )
    if row is None:
        return None
    turns = [_turn(t) for t in c.all(f"SELECT {_TURN_COLUMNS} FROM turns WHERE call_key = ? ORDER BY idx", (key,))]
    record: dict[str, Any] = {
        "id": row[0], "call_id": row[1], "generation": row[2], "status": row[3], "anonymous": bool(row[4]),
        "owner": row[5], "profile": row[6], "started_at": iso(row[7]), "ended_at": iso(row[8]), "end_reason": row[9],
        "end_source": row[10], "state": loads(row[11], {}), "metadata": loads(row[12], {}),
        "last_activity": iso(row[13]),
        "transcript": _transcript(turns),
        "turns": turns,
        "events": events_after(c, key, 0, 1_000_000),
    }
    if not full:
        return record
    jobs = jobs_for_call(c, key)
    if jobs or record["status"] == "ended":
        record["end_function"] = end_function_summary(jobs)
    deliveries = [d.to_dict() for d in _deliveries(c, "WHERE call_key = ? ORDER BY seq", (key,))]
    if deliveries:
        record["control_deliveries"] = deliveries
        record["delivery_failures"] = [d for d in deliveries if d["status"] == DeliveryStatus.FAILED]
    return record


_TURN_COLUMNS = (
    "request_id, started_at, stream, status, user_text, raw_text, spoken_text, commands, tool_calls, "
    "ttft_ms, duration_ms, error, instance"
)


def _turn(r: Sequence[Any]) -> dict[str, Any]:
    return {
        "request_id": r[0], "started_at": iso(r[1]), "stream": bool(r[2]), "status": r[3], "user_text": r[4],
        "raw_text": r[5], "spoken_text": r[6], "commands": loads(r[7], []), "tool_calls": loads(r[8], []),
        "ttft_ms": r[9], "duration_ms": r[10], "error": r[11], "instance": r[12],
    }


def _transcript(turns: list[dict[str, Any]]) -> list[dict[str, str]]:
    out = []
    for t in turns:
        if t["user_text"]:
            out.append({"role": "user", "text": t["user_text"]})
        if t["spoken_text"]:
            out.append({"role": "assistant", "text": t["spoken_text"]})
    return out


def list_calls(c: Conn, *, since: float | None = None, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Newest first: ``{"id", "status", "end_reason", "started_at", "ended_at", "jobs": {status: n}}``."""
    where, args = [], []
    if since is not None:
        where.append("started_at >= ?")
        args.append(since)
    if status is not None:
        where.append("status = ?")
        args.append(status)
    sql = "SELECT id, status, end_reason, started_at, ended_at FROM calls"
    sql += (" WHERE " + " AND ".join(where)) if where else ""
    rows = c.all(sql + " ORDER BY started_at DESC LIMIT ?", (*args, limit))
    out = [{"id": r[0], "status": r[1], "end_reason": r[2], "started_at": r[3], "ended_at": r[4], "jobs": {}} for r in rows]
    by_id = {x["id"]: x for x in out}
    if out:
        for call_id, st, n in c.all(
            f"SELECT call_id, status, COUNT(*) FROM jobs WHERE call_id IN ({c.marks(len(out))}) GROUP BY call_id, status",
            list(by_id),
        ):
            by_id[call_id]["jobs"][st] = n
    return out


def purge(c: Conn, before: float, limit: int = 500) -> int:
    """Delete up to ``limit`` calls that ended before ``before`` (Unix s) with their
    turns, events, deliveries and end-function jobs; returns how many. A call with a
    step or a delivery still pending or running is kept until it finishes: retention
    never drops work that is not done. Run it again while it returns ``limit``."""
    keys = [
        r[0]
        for r in c.all(
            "SELECT id FROM calls WHERE status = 'ended' AND ended_at < ?"
            " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.call_id = calls.id AND j.status IN ('pending', 'running'))"
            " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.call_key = calls.id AND d.status = 'pending')"
            " ORDER BY ended_at LIMIT ?",
            (before, limit),
        )
    ]
    if keys:
        marks = c.marks(len(keys))
        for table, column in (("turns", "call_key"), ("events", "call_key"), ("deliveries", "call_key"), ("jobs", "call_id"), ("calls", "id")):
            c.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", keys)
    return len(keys)


# -- jobs ---------------------------------------------------------------------------------------


def jobs_for_call(c: Conn, key: str) -> list[Job]:
    return [Job.from_row(r) for r in c.all(f"SELECT {JOB_COLUMNS} FROM jobs WHERE call_id = ? ORDER BY id", (key,))]


def job(c: Conn, job_id: int) -> Job | None:
    row = c.one(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
    return Job.from_row(row) if row else None


def list_jobs(c: Conn, *, status: str | None = None, limit: int = 200) -> list[Job]:
    sql = f"SELECT {JOB_COLUMNS} FROM jobs" + (" WHERE status = ?" if status else "") + " ORDER BY id DESC LIMIT ?"
    return [Job.from_row(r) for r in c.all(sql, ((status, limit) if status else (limit,)))]


def claim_jobs(c: Conn, me: str, now: float, lease_s: float, free: dict[str, int], limit: int) -> tuple[list[Job], list[Job]]:
    """Claim due jobs whose ``after`` steps are done or skipped, at most ``free[step]``
    of each step and ``limit`` in all, under a lease until ``now + lease_s``. Jobs
    behind a failed or blocked step become ``blocked``. Returns ``(claimed, blocked)``."""
    rows = c.all(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'pending' AND next_at <= ? ORDER BY next_at, id LIMIT ?{c.skip_locked}",
        (now, min(limit, 64) * 2),
    )
    candidates = [Job.from_row(r) for r in rows]
    siblings = _sibling_statuses(c, {j.call_id for j in candidates if j.after})
    claimed: list[Job] = []
    blocked: list[Job] = []
    left = dict(free)
    for j in candidates:
        if len(claimed) >= limit or left.get(j.step, 0) <= 0:
            continue
        deps = [siblings.get((j.call_id, name)) for name in j.after]
        bad = [(name, st) for name, st in zip(j.after, deps) if st in (JobStatus.FAILED, JobStatus.BLOCKED)]
        if bad:
            c.execute(
                "UPDATE jobs SET status = 'blocked', last_error = ?, updated_at = ? WHERE id = ?",
                (f"after: step {bad[0][0]!r} {bad[0][1]}", now, j.id),
            )
            blocked.append(j)
        elif all(st in (JobStatus.DONE, JobStatus.SKIPPED) for st in deps):
            c.execute(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_by = ?, locked_until = ?, updated_at = ? WHERE id = ?",
                (me, now + lease_s, now, j.id),
            )
            j.status, j.attempts, j.locked_by = JobStatus.RUNNING, j.attempts + 1, me
            claimed.append(j)
            left[j.step] -= 1
    return claimed, blocked


def _sibling_statuses(c: Conn, call_ids: set[str]) -> dict[tuple[str, str], JobStatus]:
    if not call_ids:
        return {}
    rows = c.all(f"SELECT call_id, step, status FROM jobs WHERE call_id IN ({c.marks(len(call_ids))})", list(call_ids))
    return {(r[0], r[1]): JobStatus(r[2]) for r in rows}


def finish_job(
    c: Conn,
    job_id: int,
    me: str,
    status: str,
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
            "UPDATE jobs SET status = ?, last_error = ?, response_code = ?, duration_ms = ?, output = ?, "
            "next_at = COALESCE(?, next_at), locked_by = NULL, locked_until = NULL, updated_at = ? "
            "WHERE id = ? AND locked_by = ? AND status = 'running'",
            (status, error, response_code, duration_ms, None if output is None else dumps(output), next_at, now, job_id, me),
        ).rowcount
    )


def extend_leases(c: Conn, table: str, me: str, ids: Sequence[Any], until: float) -> int:
    """Heartbeat: the leases ``me`` holds on ``ids`` (``jobs`` or ``deliveries``) run
    until ``until``."""
    if not ids:
        return 0
    column = "id" if table == "jobs" else "event_id"
    return c.execute(
        f"UPDATE {table} SET locked_until = ? WHERE locked_by = ? AND {column} IN ({c.marks(len(ids))})",
        (until, me, *ids),
    ).rowcount


def retry_jobs(c: Conn, job_ids: Iterable[int] | None, now: float) -> int:
    """Back to pending with attempts reset: the given finished jobs, or with ``None``
    every failed one; the steps blocked behind them come too. Returns how many."""
    if job_ids is None:
        ids = [r[0] for r in c.all("SELECT id FROM jobs WHERE status = 'failed'")]
    else:
        wanted = list(job_ids)
        ids = [r[0] for r in c.all(
            f"SELECT id FROM jobs WHERE status IN ('done', 'failed', 'skipped', 'blocked') AND id IN ({c.marks(len(wanted))})",
            wanted,
        )] if wanted else []
    if not ids:
        return 0
    blocked = [r[0] for r in c.all(
        f"SELECT id FROM jobs WHERE status = 'blocked' AND call_id IN (SELECT call_id FROM jobs WHERE id IN ({c.marks(len(ids))}))",
        ids,
    )]
    every = sorted(set(ids) | set(blocked))
    c.notify("jobs")
    c.execute(
        f"UPDATE jobs SET status = 'pending', attempts = 0, next_at = ?, last_error = NULL, locked_by = NULL, "
        f"locked_until = NULL, updated_at = ? WHERE id IN ({c.marks(len(every))})",
        (now, now, *every),
    )
    return len(every)


def next_due(c: Conn, table: str, after: float) -> float | None:
    """When the next pending job or delivery falls due later than ``after``."""
    return c.value(f"SELECT MIN(next_at) FROM {table} WHERE status = 'pending' AND next_at > ?", (after,))


# -- deliveries -----------------------------------------------------------------------------------


def _deliveries(c: Conn, where: str, args: Sequence[Any]) -> list[Delivery]:
    return [Delivery.from_row(r) for r in c.all(f"SELECT {DELIVERY_COLUMNS} FROM deliveries {where}", args)]


def claim_deliveries(c: Conn, me: str, now: float, lease_s: float, limit: int) -> list[Delivery]:
    """Claim due deliveries, each only when no earlier delivery of its call is
    pending (each call's events go in order), under a lease."""
    rows = c.all(
        f"SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE status = 'pending' AND next_at <= ? "
        "AND (locked_until IS NULL OR locked_until < ?) "
        "AND NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.call_key = d.call_key AND p.seq < d.seq AND p.status = 'pending') "
        f"ORDER BY next_at LIMIT ?{c.skip_locked}",
        (now, now, limit),
    )
    claimed = [Delivery.from_row(r) for r in rows]
    if claimed:
        ids = [d.event_id for d in claimed]
        c.execute(
            f"UPDATE deliveries SET locked_by = ?, locked_until = ? WHERE event_id IN ({c.marks(len(ids))})",
            (me, now + lease_s, *ids),
        )
    return claimed


def finish_delivery(
    c: Conn,
    event_id: str,
    me: str,
    status: str,
    now: float,
    *,
    error: str | None = None,
    response_code: int | None = None,
    next_at: float | None = None,
) -> bool:
    """A try's outcome: ``done``, ``failed`` (a dead letter) or ``pending`` again at
    ``next_at``; only while ``me`` holds the lease."""
    return bool(
        c.execute(
            "UPDATE deliveries SET status = ?, attempts = attempts + 1, last_error = ?, response_code = ?, "
            "next_at = COALESCE(?, next_at), locked_by = NULL, locked_until = NULL, updated_at = ? "
            "WHERE event_id = ? AND locked_by = ? AND status = 'pending'",
            (status, error, response_code, next_at, now, event_id, me),
        ).rowcount
    )


def list_deliveries(c: Conn, *, status: str | None = None, limit: int = 200) -> list[Delivery]:
    where = "WHERE status = ? ORDER BY updated_at DESC LIMIT ?" if status else "ORDER BY updated_at DESC LIMIT ?"
    return _deliveries(c, where, (status, limit) if status else (limit,))


def gauges(c: Conn) -> dict[str, int]:
    """What the database says now, for ``/metrics``: ``calls_active``,
    ``steps_failed``, ``steps_pending``, ``deliveries_failed``, ``deliveries_pending``."""
    calls = c.value("SELECT COUNT(*) FROM calls WHERE status = 'active'", (), 0)
    jobs = {r[0]: r[1] for r in c.all("SELECT status, COUNT(*) FROM jobs WHERE status IN ('failed', 'pending', 'running') GROUP BY status")}
    dels = {r[0]: r[1] for r in c.all("SELECT status, COUNT(*) FROM deliveries WHERE status IN ('failed', 'pending') GROUP BY status")}
    return {
        "calls_active": int(calls),
        "steps_failed": int(jobs.get("failed", 0)),
        "steps_pending": int(jobs.get("pending", 0) + jobs.get("running", 0)),
        "deliveries_failed": int(dels.get("failed", 0)),
        "deliveries_pending": int(dels.get("pending", 0)),
    }


def count_deliveries(c: Conn) -> dict[str, int]:
    """``{status: n}`` over every delivery."""
    return {r[0]: r[1] for r in c.all("SELECT status, COUNT(*) FROM deliveries GROUP BY status")}


def retry_deliveries(c: Conn, event_ids: Iterable[str] | None, now: float) -> int:
    """Failed deliveries (the given ones, or with ``None`` every one) go out again:
    pending now, their age counted from now. Returns how many."""
    c.notify("deliveries")
    if event_ids is None:
        return c.execute(
            "UPDATE deliveries SET status = 'pending', next_at = ?, created_at = ?, updated_at = ?, last_error = NULL "
            "WHERE status = 'failed'",
            (now, now, now),
        ).rowcount
    ids = list(event_ids)
    if not ids:
        return 0
    return c.execute(
        f"UPDATE deliveries SET status = 'pending', next_at = ?, created_at = ?, updated_at = ?, last_error = NULL "
        f"WHERE status = 'failed' AND event_id IN ({c.marks(len(ids))})",
        (now, now, now, *ids),
    ).rowcount


# -- a recorded call, for the sandbox -------------------------------------------------------


def put_record(c: Conn, record: dict[str, Any], steps: Iterable[tuple[str, str, list[str]]], now: float) -> None:
    """Store an ended call from its record (``calls show ID --json``) with one pending
    job per step: what ``end-function test`` runs the steps against."""
    from .legacy import copy_record

    copy_record(c, record, now)
    c.execute("UPDATE calls SET status = 'ended', ended_at = COALESCE(ended_at, ?) WHERE id = ?", (now, record["id"]))
    c.many(
        "INSERT INTO jobs (call_id, step, kind, after, status, next_at, idempotency_key, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [(record["id"], name, kind, dumps(after), now, f"{record['id']}:{name}", now, now) for name, kind, after in steps],
    )
