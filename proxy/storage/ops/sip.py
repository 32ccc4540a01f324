"""The OpenAI SIP front door's writes and reads: what the database decides for it.

* one accept per call id, across instances and webhook deliveries: the first
  :func:`claim_accept` inserts the call's row, every later one finds it there;
* one owner of each call's sideband: a lease (``owner``, ``lease_until``) its owner
  renews (:func:`renew`); another instance takes the call over (:func:`take_over`)
  once the lease ran out or the owner's process is gone;
* at most one hangup and one refer per call: :func:`latch` moves a latch only from
  the state it is expected in (``decided`` → ``claimed`` → ``sent`` | ``failed``);
* a function call executed once: :func:`claim_functions` inserts its row (keyed by
  the call and its ``call_id``); :func:`answer_function` stores its output.

The call's turns, events and end go to the ``calls`` row like any call's
(:func:`accepted` makes it, with the caller's and callee's numbers in its metadata).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..db import Conn, Row
from ..records import CallStart
from .calls import INSERT_CALL, call_row
from ..statuses import SipApi, SipCallStatus, SipFunctionStatus, SipLatch, lit

__all__ = [
    "SipCallRecord", "accepted", "answer_function", "answered_functions", "claim_accept", "claim_functions", "finish_sip",
    "latch", "release", "renew", "settle_accept", "sip_call", "take_over", "take_over_accepts", "turn_user_text",
]

_ACCEPTED = lit(SipCallStatus.ACCEPTED)


@dataclass(frozen=True, slots=True)
class SipCallRecord:
    """One ``sip_calls`` row. ``id``: OpenAI's call id; ``call_key``: its ``calls`` row;
    ``hangup`` / ``refer``: the latches (``None``: never decided); ``lease_until``: Unix s."""

    id: str
    api: SipApi
    status: SipCallStatus
    call_key: str | None
    caller: str
    callee: str
    owner: str | None
    lease_until: float | None
    hangup: SipLatch | None
    refer: SipLatch | None
    refer_target: str
    attaches: int

    COLUMNS = "id, api, status, call_key, caller, callee, owner, lease_until, hangup, refer, refer_target, attaches"

    @classmethod
    def from_row(cls, r: Row) -> SipCallRecord:
        """From a row of :attr:`COLUMNS`."""
        return cls(
            id=r["id"], api=SipApi(r["api"]), status=SipCallStatus(r["status"]), call_key=r["call_key"],
            caller=r["caller"], callee=r["callee"], owner=r["owner"], lease_until=r["lease_until"],
            hangup=SipLatch(r["hangup"]) if r["hangup"] else None, refer=SipLatch(r["refer"]) if r["refer"] else None,
            refer_target=r["refer_target"], attaches=r["attaches"],
        )


def sip_call(c: Conn, call_id: str) -> SipCallRecord | None:
    """The row of OpenAI's call ``call_id``."""
    row = c.one(f"SELECT {SipCallRecord.COLUMNS} FROM sip_calls WHERE id = :id", {"id": call_id})
    return SipCallRecord.from_row(row) if row else None


def claim_accept(c: Conn, call_id: str, api: SipApi, caller: str, callee: str, me: str, now: float) -> bool:
    """``True`` for the one claim of a call that may accept (or reject) it: the first
    ever for ``call_id``, whichever instance or delivery."""
    return bool(c.execute(
        "INSERT INTO sip_calls (id, api, status, caller, callee, owner, created_at, updated_at) "
        "VALUES (:id, :api, :status, :caller, :callee, :me, :now, :now) ON CONFLICT (id) DO NOTHING",
        {"id": call_id, "api": api, "status": SipCallStatus.ACCEPTING, "caller": caller, "callee": callee, "me": me, "now": now},
    ).rowcount)


def accepted(
    c: Conn, call_id: str, call: CallStart, metadata: Mapping[str, Any], me: str, lease_until: float, http_status: int, now: float
) -> None:
    """The accept succeeded: the call is ``me``'s (its sideband's owner, until
    ``lease_until``), and its ``calls`` row is made (active, no turn yet)."""
    c.execute(
        "UPDATE sip_calls SET status = :status, call_key = :key, owner = :me, lease_until = :until, accept_status = :http, "
        "attaches = 1, updated_at = :now WHERE id = :id",
        {"status": SipCallStatus.ACCEPTED, "key": call.key, "me": me, "until": lease_until, "http": http_status, "now": now, "id": call_id},
    )
    c.execute(f"{INSERT_CALL} ON CONFLICT (id) DO NOTHING", call_row(call, now, turns=0, metadata=metadata))


def settle_accept(c: Conn, call_id: str, status: SipCallStatus, http_status: int | None, now: float) -> None:
    """The accept did not make a call: ``rejected``, ``gone`` or ``failed``."""
    c.execute(
        "UPDATE sip_calls SET status = :status, accept_status = :http, owner = NULL, lease_until = NULL, updated_at = :now "
        "WHERE id = :id",
        {"status": status, "http": http_status, "now": now, "id": call_id},
    )


def renew(c: Conn, me: str, ids: Sequence[str], lease_until: float, now: float) -> list[str]:
    """Extend ``me``'s leases on ``ids``; the ids still ``me``'s (a call missing from
    the answer was taken over, or ended: its session stops)."""
    if not ids:
        return []
    p = {"me": me, "ids": c.array(list(ids)), "until": lease_until, "now": now}
    c.execute(
        f"UPDATE sip_calls SET lease_until = :until, updated_at = :now WHERE owner = :me AND status = {_ACCEPTED} "
        f"AND id {c.any('ids')}",
        p,
    )
    return [r["id"] for r in c.all(f"SELECT id FROM sip_calls WHERE owner = :me AND status = {_ACCEPTED} AND id {c.any('ids')}", p)]


def take_over(c: Conn, me: str, now: float, lease_until: float, gone: Iterable[str] = (), serving: Sequence[str] = (),
              limit: int = 50) -> list[SipCallRecord]:
    """The live calls whose owner's lease ran out, or whose owner is ``gone`` (its
    process no longer runs), made ``me``'s (each row moved only if it still is so:
    two instances never take one call). ``serving``: the calls ``me`` has a session
    for; one of ``me``'s own calls with none (its session failed) is taken again."""
    p = {"me": me, "now": now, "until": lease_until, "gone": c.array(list(gone)), "serving": c.array(list(serving)), "limit": limit}
    due = (f"status = {_ACCEPTED} AND (lease_until < :now OR owner IS NULL OR owner {c.any('gone')}) "
           f"AND (owner IS NULL OR owner <> :me OR id {c.none_of('serving')})")
    rows = c.all(f"SELECT id FROM sip_calls WHERE {due} ORDER BY lease_until LIMIT :limit{c.skip_locked}", p)
    taken = []
    for r in rows:
        moved = c.execute(
            f"UPDATE sip_calls SET owner = :me, lease_until = :until, attaches = attaches + 1, updated_at = :now "
            f"WHERE id = :id AND {due}",
            {**p, "id": r["id"]},
        ).rowcount
        if moved:
            found = sip_call(c, r["id"])
            if found is not None:
                taken.append(found)
    return taken


def take_over_accepts(c: Conn, me: str, now: float, dead_before: float, gone: Iterable[str] = (), limit: int = 20) -> list[SipCallRecord]:
    """Calls claimed for an accept by an instance that stopped before it settled them
    (its process is ``gone``, or its heartbeat is older than ``dead_before``): made
    ``me``'s to accept (each row moved only if it still is so: one instance takes one)."""
    p = {"me": me, "now": now, "dead_before": dead_before, "gone": c.array([g for g in gone if g != me]), "limit": limit}
    dead = (
        f"status = {lit(SipCallStatus.ACCEPTING)} AND owner <> :me AND (owner {c.any('gone')} OR owner NOT IN "
        "(SELECT id FROM instances WHERE heartbeat_at >= :dead_before))"
    )
    rows = c.all(f"SELECT id FROM sip_calls WHERE {dead} ORDER BY created_at LIMIT :limit{c.skip_locked}", p)
    taken = []
    for r in rows:
        if c.execute(f"UPDATE sip_calls SET owner = :me, updated_at = :now WHERE id = :id AND {dead}", {**p, "id": r["id"]}).rowcount:
            found = sip_call(c, r["id"])
            if found is not None:
                taken.append(found)
    return taken


def release(c: Conn, me: str, ids: Sequence[str], now: float) -> None:
    """``me`` stops serving ``ids`` (a shutdown): their leases end now, so another
    instance takes them over at its next look."""
    if ids:
        c.execute(
            f"UPDATE sip_calls SET lease_until = :now, updated_at = :now WHERE owner = :me AND id {c.any('ids')}",
            {"me": me, "ids": c.array(list(ids)), "now": now},
        )


def finish_sip(c: Conn, call_id: str, now: float) -> None:
    """The call ended: no lease any more."""
    c.execute(
        "UPDATE sip_calls SET status = :ended, owner = NULL, lease_until = NULL, updated_at = :now WHERE id = :id",
        {"ended": SipCallStatus.ENDED, "now": now, "id": call_id},
    )


def latch(c: Conn, call_id: str, verb: str, to: SipLatch, expect: Sequence[SipLatch | None], target: str, now: float) -> bool:
    """Move the call's ``verb`` latch (``hangup`` or ``refer``) to ``to`` if it is one
    of ``expect`` (``None``: never decided); whether it moved. ``target``: the refer's URI."""
    if verb not in ("hangup", "refer"):
        raise ValueError(f"no latch {verb!r}")
    states = [s for s in expect if s is not None]
    where = " OR ".join(([f"{verb} IS NULL"] if None in expect else []) + ([f"{verb} {c.any('states')}"] if states else []))
    also = ", refer_target = :target" if verb == "refer" and target else ""
    return bool(c.execute(
        f"UPDATE sip_calls SET {verb} = :to{also}, updated_at = :now WHERE id = :id AND ({where or 'FALSE'})",
        {"to": to, "target": target, "now": now, "id": call_id, "states": c.array(states)},
    ).rowcount)


def claim_functions(c: Conn, sip: str, calls: Sequence[tuple[str, str]], me: str, now: float) -> list[str]:
    """Claim function calls ``(call_id, name)`` of OpenAI's call ``sip``; the call_ids
    won (a call_id claimed before, by anyone, is not)."""
    won = []
    for call_id, name in calls:
        if c.execute(
            "INSERT INTO sip_function_calls (sip_call, call_id, name, status, owner, created_at, updated_at) "
            "VALUES (:sip, :call_id, :name, :running, :me, :now, :now) ON CONFLICT DO NOTHING",
            {"sip": sip, "call_id": call_id, "name": name, "running": SipFunctionStatus.RUNNING, "me": me, "now": now},
        ).rowcount:
            won.append(call_id)
    return won


def answer_function(c: Conn, sip: str, call_id: str, output: str, now: float) -> None:
    """A function call's output was sent."""
    c.execute(
        "UPDATE sip_function_calls SET status = :answered, output = :output, updated_at = :now WHERE sip_call = :sip AND call_id = :call_id",
        {"answered": SipFunctionStatus.ANSWERED, "output": output, "now": now, "sip": sip, "call_id": call_id},
    )


def answered_functions(c: Conn, sip: str) -> frozenset[str]:
    """Every call_id of OpenAI's call ``sip`` claimed so far (answered or not)."""
    return frozenset(r["call_id"] for r in c.all("SELECT call_id FROM sip_function_calls WHERE sip_call = :sip", {"sip": sip}))


def turn_user_text(c: Conn, request_id: str, user_text: str) -> None:
    """A turn's caller text, known only once it ended (speech is transcribed after it was said)."""
    c.execute("UPDATE turns SET user_text = :text WHERE request_id = :request_id", {"text": user_text, "request_id": request_id})
