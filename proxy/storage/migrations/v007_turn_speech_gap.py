"""Schema v7: ``turns.speech_gap_max_ms``, the longest silence inside a turn's
speech (ms): the largest interval between two speakable pieces the runtime
received, after the first (:mod:`proxy.core.gaps`). ``NULL`` for turns that spoke
nothing and for the turns recorded before."""

from __future__ import annotations

from ..db import Conn
from .ddl import statements

__all__ = ["DESCRIPTION", "VERSION", "apply"]

VERSION = 7
DESCRIPTION = "turns.speech_gap_max_ms: the longest silence inside a turn's speech"


def apply(c: Conn) -> None:
    """Add the column (``NULL`` for the turns before)."""
    for sql in statements("ALTER TABLE turns ADD COLUMN speech_gap_max_ms {real}", c.dialect):
        c.execute(sql)
