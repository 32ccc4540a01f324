"""Schema v4: ``turns.reasoning_text``, the model's thinking in a turn (``<think>``
blocks in its content, ``reasoning_content``/``reasoning`` deltas, thinking parts),
kept apart from what it said."""

from __future__ import annotations

from ..db import Conn

__all__ = ["DESCRIPTION", "VERSION", "apply"]

VERSION = 4
DESCRIPTION = "turns.reasoning_text: the model's thinking, apart from its speech"


def apply(c: Conn) -> None:
    """Add the column (empty for the turns before)."""
    c.execute("ALTER TABLE turns ADD COLUMN reasoning_text TEXT NOT NULL DEFAULT ''")
