"""A call's writes: its turns, control events, state and end; retention.

The rules that must hold across processes live here as SQL:

* a call ends once: ``UPDATE calls SET status = 'ended' ... WHERE status = 'active'``;
* one hangup per call: a partial unique index on ``events``; the loser is stored as
  its ``command.rejected`` alternative;
* events are numbered from the call row (``last_seq``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from ...core.merge import merge_patch
from ..db import Conn
from ..migrations.legacy import copy_record
from ..records import CallRecord, CallStart, CommandRecord, NewEvent, TurnOutcome, TurnStart, dumps, loads
from ..statuses import CallStatus, DeliveryStatus, EventType, JobStatus, SipCallStatus, TurnStatus, lit

__all__ = [
    "DueEnd", "add_events", "begin_turn", "due_ends", "end_call", "end_of", "find_call", "finish_turn", "patch_state",
    "purge", "put_record", "queue_jobs",
]

_ACTIVE = lit(CallStatus.ACTIVE)


def find_call(c: Conn, call_id: str, exact: bool = False) -> CallRecord | None:
    """The newest call under the runtime's ``call_id``, else the call whose record
    key it is (only that with ``exact``)."""
    row = None
    if not exact:
        row = c.one(
            f"SELECT {CallRecord.COLUMNS} FROM calls WHERE call_id = :id ORDER BY generation DESC LIMIT 1", {"id": call_id}
        )
    if row is None:
        row = c.one(f"SELECT {CallRecord.COLUMNS} FROM calls WHERE id = :id", {"id": call_id})
    return CallRecord.from_row(row) if row else None


INSERT_CALL = (
    "INSERT INTO calls (id, call_id, generation, status, anonymous, owner, profile, started_at, last_activity, "
    "state, metadata, turns, updated_at) VALUES (:key, :call_id, :generation, :active, :anonymous, :owner, "
    ":profile, :started_at, :now, '{}', :metadata, :turns, :now)"
)
"""A new call's row, from :func:`call_row`'s parameters (the statement's conflict clause is the caller's)."""


def call_row(call: CallStart, now: float, *, turns: int, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:data:`INSERT_CALL`'s parameters for ``call``, active, with ``turns`` turns."""
    return {
        "key": call.key, "call_id": call.call_id, "generation": call.generation, "active": CallStatus.ACTIVE,
        "anonymous": int(call.anonymous), "owner": call.owner, "profile": call.profile, "started_at": call.started_at,
        "now": now, "metadata": dumps(dict(metadata)) if metadata else "{}", "turns": turns,
    }


def begin_turn(c: Conn, call: CallStart, turn: TurnStart, metadata: Mapping[str, Any] | None, now: float) -> int:
    """A turn begins (``in_progress``); the call's row is made by its first turn,
    its ``metadata`` merged (top level) into the row's. Returns the turn's number."""
    p = call_row(call, now, turns=1)
    also = ""
    if metadata:
        old = c.one(f"SELECT metadata FROM calls WHERE id = :key{c.for_update}", p)
        p["metadata"] = dumps({**(loads(old["metadata"], {}) if old else {}), **metadata})
        also = ", metadata = excluded.metadata"
    idx = c.value(
        f"{INSERT_CALL} ON CONFLICT (id) DO UPDATE SET turns = calls.turns + 1, "
        f"last_activity = excluded.last_activity, updated_at = excluded.updated_at{also} RETURNING turns",
        p,
    )
    c.execute(
        "INSERT INTO turns (call_key, idx, request_id, instance, started_at, stream, status, user_text) "
        "VALUES (:key, :idx, :request_id, :instance, :started_at, :stream, :status, :user_text)",
        {
            "key": call.key, "idx": idx, "request_id": turn.request_id, "instance": turn.instance,
            "started_at": turn.started_at, "stream": int(turn.stream), "status": TurnStatus.IN_PROGRESS,
            "user_text": turn.user_text,
        },
    )
    return int(idx)


def finish_turn(
    c: Conn,
    key: str,
    request_id: str,
    outcome: TurnOutcome,
    commands: Sequence[CommandRecord],
    state_tool_calls: Sequence[Mapping[str, Any]],
    now: float,
) -> None:
    """A turn ended: its outcome and commands; ``state_tool_calls`` are appended to
    the call's ``state.tool_calls``."""
    c.execute(
        "UPDATE turns SET status = :status, error = :error, raw_text = :raw_text, spoken_text = :spoken_text, "
        "reasoning_text = :reasoning_text, commands = :commands, tool_calls = :tool_calls, ttft_ms = :ttft_ms, duration_ms = :duration_ms, "
        "attempts = :attempts, heard_text = :heard_text, speech_gap_max_ms = :speech_gap_max_ms, finished_at = :now WHERE request_id = :request_id",
        {
            "status": outcome.status, "error": outcome.error, "raw_text": outcome.raw_text,
            "spoken_text": outcome.spoken_text, "reasoning_text": outcome.reasoning_text, "commands": dumps(_judged(c, commands)),
            "tool_calls": dumps([dict(t) for t in outcome.tool_calls]), "ttft_ms": outcome.ttft_ms,
            "duration_ms": outcome.duration_ms, "now": now, "request_id": request_id,
            "attempts": dumps([dict(a) for a in outcome.attempts]), "heard_text": outcome.heard_text,
            "speech_gap_max_ms": outcome.speech_gap_max_ms,
        },
    )
    if state_tool_calls:
        state = loads(c.value(f"SELECT state FROM calls WHERE id = :key{c.for_update}", {"key": key}), {})
        state.setdefault("tool_calls", []).extend(dict(t) for t in state_tool_calls)
        c.execute("UPDATE calls SET state = :state WHERE id = :key", {"state": dumps(state), "key": key})
    c.execute("UPDATE calls SET last_activity = :now, updated_at = :now WHERE id = :key", {"now": now, "key": key})


def _judged(c: Conn, commands: Sequence[CommandRecord]) -> list[dict[str, Any]]:
    """The turn's commands with ``accepted`` as the database decided (a hangup that
    lost to another one was stored as ``command.rejected``)."""
    out = [cmd.to_json() for cmd in commands]
    ids = [cmd.event_id for cmd in commands if cmd.event_id and cmd.accepted]
    if not ids:
        return out
    rows = c.all(f"SELECT id, type, payload FROM events WHERE id {c.any('ids')}", {"ids": c.array(ids)})
    lost = {r["id"]: loads(r["payload"], {}) for r in rows if r["type"] == EventType.COMMAND_REJECTED}
    for cmd in out:
        if cmd["accepted"] and cmd["event_id"] in lost:
            cmd.update(accepted=False, reason=lost[cmd["event_id"]].get("reason"), code=lost[cmd["event_id"]].get("code"))
    return out


def add_events(c: Conn, key: str, events: Sequence[NewEvent], deliver: bool, now: float) -> list[dict[str, Any]]:
    """Store control events, numbered from the call's ``last_seq``; a unique index
    that refuses one stores its ``instead`` (the call's second hangup becomes its
    ``command.rejected``). ``deliver``: queue each for the webhook. Returns the
    stored events, with ``seq``. Raises ``LookupError`` for an unknown call."""
    return [_add_event(c, key, event, deliver, now) for event in events]


def _add_event(c: Conn, key: str, event: NewEvent, deliver: bool, now: float) -> dict[str, Any]:
    seq = c.value(
        "UPDATE calls SET last_seq = last_seq + 1, updated_at = :now WHERE id = :key RETURNING last_seq",
        {"now": now, "key": key},
    )
    if seq is None:
        raise LookupError(f"no call {key!r} to add an event to")
    stored = {**event.payload, "seq": seq}
    inserted = _insert_event(c, key, stored, now)
    if not inserted and event.instead is not None:
        stored = {**event.instead, "seq": seq}
        _insert_event(c, key, stored, now)
    elif inserted and stored["type"] == EventType.HANGUP:
        c.execute(
            "UPDATE calls SET hangup_at = :now, hangup_source = :source WHERE id = :key",
            {"now": now, "source": stored.get("source"), "key": key},
        )
    if deliver:
        _queue_delivery(c, key, stored, now)
    c.notify(f"events:{key}")
    return stored


def _insert_event(c: Conn, key: str, event: Mapping[str, Any], now: float) -> bool:
    return bool(
        c.execute(
            "INSERT INTO events (call_key, seq, id, type, created_at, payload) VALUES (:key, :seq, :id, :type, :now, "
            ":payload) ON CONFLICT DO NOTHING",
            {"key": key, "seq": event["seq"], "id": event["id"], "type": event["type"], "now": now, "payload": dumps(event)},
        ).rowcount
    )


def _queue_delivery(c: Conn, key: str, event: Mapping[str, Any], now: float) -> None:
    c.execute(
        "INSERT INTO deliveries (event_id, call_key, seq, type, payload, status, next_at, created_at, updated_at) "
        "VALUES (:id, :key, :seq, :type, :payload, :pending, :now, :now, :now) ON CONFLICT DO NOTHING",
        {
            "id": event["id"], "key": key, "seq": event["seq"], "type": event["type"], "payload": dumps(event),
            "pending": DeliveryStatus.PENDING, "now": now,
        },
    )
    c.notify("deliveries")


def end_of(c: Conn, key: str) -> tuple[str | None, str | None]:
    """``(end_reason, end_source)`` of a call."""
    row = c.one("SELECT end_reason, end_source FROM calls WHERE id = :key", {"key": key})
    return (row["end_reason"], row["end_source"]) if row else (None, None)


def end_call(
    c: Conn,
    key: str,
    ended: Mapping[str, Any],
    state: Mapping[str, Any] | None,
    steps: Iterable[tuple[str, str, list[str]]],
    deliver: bool,
    now: float,
    if_detached: bool = False,
) -> dict[str, Any] | None:
    """End the call once, in one transaction: mark it ended, merge ``state`` (top
    level), store its ``call.ended`` event (``ended``: the event without ``seq``)
    and one pending job per ``(step, kind, after)``. ``None`` when it had already
    ended, or does not exist, or (``if_detached``) a front door's socket for it opened again."""
    still_closed = " AND detached_at IS NOT NULL" if if_detached else ""  # a front door's socket came back: no end
    seq = c.value(
        "UPDATE calls SET status = :ended, end_reason = :reason, end_source = :source, ended_at = :now, "
        f"updated_at = :now, last_seq = last_seq + 1 WHERE id = :key AND status = {_ACTIVE}{still_closed} RETURNING last_seq",
        {"ended": CallStatus.ENDED, "reason": ended["reason"], "source": ended["source"], "now": now, "key": key},
    )
    if seq is None:
        return None
    if state:
        current = loads(c.value(f"SELECT state FROM calls WHERE id = :key{c.for_update}", {"key": key}), {})
        current.update(state)
        c.execute("UPDATE calls SET state = :state WHERE id = :key", {"state": dumps(current), "key": key})
    stored = {**ended, "seq": seq}
    _insert_event(c, key, stored, now)
    if deliver:
        _queue_delivery(c, key, stored, now)
    c.notify(f"events:{key}")
    c.notify(f"ended:{key}")
    queue_jobs(c, key, steps, now)
    return stored


def queue_jobs(c: Conn, key: str, steps: Iterable[tuple[str, str, list[str]]], now: float) -> None:
    """One pending job per ``(step, kind, after)`` of the call ``key``; its
    idempotency key is ``{key}:{step}``."""
    c.many(
        "INSERT INTO jobs (call_key, step, kind, after, status, next_at, idempotency_key, created_at, updated_at) "
        "VALUES (:key, :step, :kind, :after, :pending, :now, :idem, :now, :now) ON CONFLICT DO NOTHING",
        (
            {"key": key, "step": name, "kind": kind, "after": dumps(after), "pending": JobStatus.PENDING, "now": now,
             "idem": f"{key}:{name}"}
            for name, kind, after in steps
        ),
    )
    c.notify("jobs")


def patch_state(c: Conn, key: str, patch: Mapping[str, Any], now: float) -> dict[str, Any] | None:
    """RFC 7386 merge patch into an active call's state; the new state, or ``None``
    when the call has ended."""
    row = c.one(f"SELECT status, state FROM calls WHERE id = :key{c.for_update}", {"key": key})
    if row is None or row["status"] != CallStatus.ACTIVE:
        return None
    state: dict[str, Any] = merge_patch(loads(row["state"], {}), dict(patch))
    c.execute(
        "UPDATE calls SET state = :state, last_activity = :now, updated_at = :now WHERE id = :key",
        {"state": dumps(state), "now": now, "key": key},
    )
    return state


class DueEnd(NamedTuple):
    """A call the sweep ends: its record key, end reason and event source;
    ``if_detached``: only while its front door's socket stays closed."""

    key: str
    reason: str
    source: str
    if_detached: bool = False


def due_ends(c: Conn, now: float, idle_timeout_s: float, after_hangup_s: float, limit: int = 500) -> list[DueEnd]:
    """Active calls with no turn in progress that should have ended: a call without
    an id whose reply is over (``response_finished``), a hangup older than
    ``after_hangup_s`` (``agent_hangup``), a front door's socket closed longer than
    ``after_hangup_s`` ago (``socket_closed``), no request for ``idle_timeout_s``
    (``idle_timeout``). A live OpenAI SIP call is never one: its front door ends it
    (its sideband says when), and another instance takes it over if its owner dies."""
    rows = c.all(
        f"SELECT id, anonymous, hangup_at, hangup_source, last_activity, detached_at, detached_source FROM calls WHERE status = {_ACTIVE} "
        "AND (anonymous = 1 OR hangup_at IS NOT NULL OR detached_at IS NOT NULL OR last_activity < :idle_since) AND NOT EXISTS (SELECT 1 FROM "
        f"turns WHERE turns.call_key = calls.id AND turns.status = {lit(TurnStatus.IN_PROGRESS)}) AND NOT EXISTS "
        f"(SELECT 1 FROM sip_calls s WHERE s.call_key = calls.id AND s.status = {lit(SipCallStatus.ACCEPTED)}) "
        "ORDER BY last_activity LIMIT :limit",
        {"idle_since": now - idle_timeout_s, "limit": limit},
    )
    out = []
    for r in rows:
        if r["anonymous"]:
            out.append(DueEnd(r["id"], "response_finished", "response_finished"))
        elif r["hangup_at"] is not None and r["last_activity"] < now - after_hangup_s:
            out.append(DueEnd(r["id"], "agent_hangup", r["hangup_source"] or "text_command"))
        elif r["detached_at"] is not None and r["detached_at"] < now - after_hangup_s:
            out.append(DueEnd(r["id"], "socket_closed", r["detached_source"] or "front_door", True))
        elif r["last_activity"] < now - idle_timeout_s:
            out.append(DueEnd(r["id"], "idle_timeout", "idle_timeout"))
    return out


def purge(c: Conn, before: float, limit: int = 500) -> int:
    """Delete up to ``limit`` calls that ended before ``before`` (Unix s) with their
    turns, events, deliveries and end-function jobs; returns how many. A call with a
    step or a delivery still pending or running is kept until it finishes: retention
    never drops work that is not done. Run it again while it returns ``limit``."""
    rows = c.all(
        f"SELECT id FROM calls WHERE status = {lit(CallStatus.ENDED)} AND ended_at < :before AND NOT EXISTS (SELECT 1 "
        f"FROM jobs j WHERE j.call_key = calls.id AND j.status IN ({lit(JobStatus.PENDING)}, {lit(JobStatus.RUNNING)})) "
        "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.call_key = calls.id "
        f"AND d.status = {lit(DeliveryStatus.PENDING)}) ORDER BY ended_at LIMIT :limit",
        {"before": before, "limit": limit},
    )
    keys = [r["id"] for r in rows]
    if keys:
        p = {"keys": c.array(keys)}
        c.execute(f"DELETE FROM sip_function_calls WHERE sip_call IN (SELECT id FROM sip_calls WHERE call_key {c.any('keys')})", p)
        for table, column in (
            ("turns", "call_key"), ("events", "call_key"), ("deliveries", "call_key"), ("jobs", "call_key"), ("sip_calls", "call_key"),
            ("calls", "id"),
        ):
            c.execute(f"DELETE FROM {table} WHERE {column} {c.any('keys')}", p)
    never = (SipCallStatus.REJECTED, SipCallStatus.GONE, SipCallStatus.FAILED)  # SIP calls never accepted: no calls row
    c.execute(f"DELETE FROM sip_calls WHERE call_key IS NULL AND updated_at < :before AND status IN ({', '.join(lit(s) for s in never)})", {"before": before})
    return len(keys)


def put_record(c: Conn, record: Mapping[str, Any], steps: Iterable[tuple[str, str, list[str]]], now: float) -> str | None:
    """Store an ended call from its record (``calls show ID --json``) with one pending
    job per step: what ``end-function test`` runs the steps against. Returns its
    record key (``None`` for a record without an id)."""
    key = copy_record(c, dict(record), now)
    if key is None:
        return None
    c.execute(
        "UPDATE calls SET status = :ended, ended_at = COALESCE(ended_at, :now) WHERE id = :key",
        {"ended": CallStatus.ENDED, "now": now, "key": key},
    )
    queue_jobs(c, key, steps, now)
    return key
