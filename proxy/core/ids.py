"""Unique ids without a system call each: a random per-process prefix and a counter."""

from __future__ import annotations

import itertools
import os

__all__ = ["new_id"]

_PREFIX = os.urandom(6).hex()
_COUNTER = itertools.count(1)


def new_id(kind: str) -> str:
    """``kind`` + 24 hex chars (e.g. ``evt_3f9a...``), unique across processes and restarts
    with overwhelming probability (48 random bits per process + a 48-bit counter)."""
    return f"{kind}{_PREFIX}{next(_COUNTER):012x}"
