"""What the front doors keep in the database: which call's socket is closed and
since when, what the caller heard of a reply, and a call's conversation to read back.

``calls.detached_at`` (Unix s) is set when a front door's socket closes and cleared
when one opens for the call, on any instance; :func:`~proxy.storage.ops.calls.due_ends`
ends the call ``after_hangup_s`` after it, and an end for ``socket_closed`` only ends
a call whose socket is still closed (:func:`~proxy.storage.ops.calls.end_call`).
"""

from __future__ import annotations

from ..db import Conn
from ..statuses import CallStatus, lit

__all__ = ["attach", "detach", "set_heard", "turn_texts"]

_ACTIVE = lit(CallStatus.ACTIVE)


def detach(c: Conn, key: str, source: str, now: float) -> None:
    """The call's socket closed at ``now`` (``source``: the front door)."""
    c.execute(
        f"UPDATE calls SET detached_at = :now, detached_source = :source, updated_at = :now WHERE id = :key AND status = {_ACTIVE}",
        {"now": now, "source": source, "key": key},
    )


def attach(c: Conn, key: str, now: float) -> None:
    """A socket for the call opened: its end no longer waits."""
    c.execute(
        "UPDATE calls SET detached_at = NULL, detached_source = NULL, last_activity = :now, updated_at = :now "
        f"WHERE id = :key AND status = {_ACTIVE}",
        {"now": now, "key": key},
    )


def set_heard(c: Conn, key: str, request_id: str, heard: str, now: float) -> None:
    """The caller heard only ``heard`` of the reply ``request_id`` (the platform said so
    after it was sent)."""
    c.execute("UPDATE turns SET heard_text = :heard WHERE call_key = :key AND request_id = :rid", {"heard": heard, "key": key, "rid": request_id})
    c.execute("UPDATE calls SET updated_at = :now WHERE id = :key", {"now": now, "key": key})


def turn_texts(c: Conn, key: str) -> list[tuple[str, str]]:
    """The call's turns in order, each ``(what the caller said, what they heard)``."""
    rows = c.all("SELECT user_text, spoken_text, heard_text FROM turns WHERE call_key = :key ORDER BY idx", {"key": key})
    return [(r["user_text"], r["heard_text"] if r["heard_text"] is not None else r["spoken_text"]) for r in rows]
