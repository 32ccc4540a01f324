"""Typed values for tests that write to a store directly (as the call domain does)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from proxy.storage import CallStart, NewEvent, OpenMode, Store, TurnOutcome, TurnStart, TurnStatus, open_store

NOW = time.time()


def store_at(path: str | Path) -> Any:
    """An SQLite store at ``path``, migrated (and holding its lock until closed)."""
    return open_store(path, mode=OpenMode.SERVE)


def call(key: str, *, call_id: str | None = None, generation: int = 1, anonymous: bool = False, started_at: float = NOW,
         owner: str | None = None) -> CallStart:
    """A call's row as its first turn makes it."""
    return CallStart(key, call_id or key.split("~")[0], generation, anonymous, owner, None, started_at)


def turn(request_id: str, instance: str = "me", *, started_at: float = NOW, user_text: str = "hi") -> TurnStart:
    """A turn as it begins."""
    return TurnStart(request_id, instance, started_at, True, user_text)


def event(eid: str, kind: str, *, instead: dict[str, Any] | None = None, **kw: Any) -> NewEvent:
    """A control event to store."""
    return NewEvent({"id": eid, "type": kind, "call_id": "c", "source": "text_command", **kw}, instead)


def ended(eid: str, call_id: str, reason: str = "x", source: str = "call_layer") -> dict[str, Any]:
    """A ``call.ended`` event without its seq."""
    return {"id": eid, "type": "call.ended", "call_id": call_id, "source": source, "reason": reason}


def outcome(status: TurnStatus = TurnStatus.OK, raw: str = "", spoken: str = "", **kw: Any) -> TurnOutcome:
    """How a turn ended."""
    return TurnOutcome(status, raw_text=raw, spoken_text=spoken, **kw)


__all__ = ["NOW", "Store", "call", "ended", "event", "outcome", "store_at", "turn"]
