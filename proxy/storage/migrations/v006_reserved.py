"""Schema v6: reserved for the lead's reply-machine migration (issue 27), which is
merged before v7; on this branch it changes nothing, so that v7 (the OpenAI SIP
front door) can be numbered as it will ship. When the two branches meet, the lead's
v6 replaces this file."""

from __future__ import annotations

from ..db import Conn

__all__ = ["DESCRIPTION", "VERSION", "apply"]

VERSION = 6
DESCRIPTION = "reserved (the reply machine's statuses; nothing on this branch)"


def apply(c: Conn) -> None:
    """Nothing."""
