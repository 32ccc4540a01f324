"""Schema v5: ``turns.attempts``, every upstream attempt of a turn (the pool's
upstream, model, timings, outcome, error, usage and cost), as a JSON list."""

from __future__ import annotations

from ..db import Conn

__all__ = ["DESCRIPTION", "VERSION", "apply"]

VERSION = 5
DESCRIPTION = "turns.attempts: each upstream attempt of a turn, with its usage and cost"


def apply(c: Conn) -> None:
    """Add the column (an empty list for the turns before)."""
    c.execute("ALTER TABLE turns ADD COLUMN attempts TEXT NOT NULL DEFAULT '[]'")
