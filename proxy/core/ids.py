"""Ids: unique ones without a system call each (a random per-process prefix and a
counter), and unguessable ones (128 random bits) where knowing an id grants something."""

from __future__ import annotations

import itertools
import os
import secrets

__all__ = ["new_id", "secret_id"]

_PREFIX = os.urandom(6).hex()
_COUNTER = itertools.count(1)


def new_id(kind: str) -> str:
    """``kind`` + 24 hex chars (e.g. ``evt_3f9a...``), unique across processes and restarts
    with overwhelming probability (48 random bits per process + a 48-bit counter)."""
    return f"{kind}{_PREFIX}{next(_COUNTER):012x}"


def secret_id(kind: str) -> str:
    """``kind`` + 32 hex chars of 128 random bits (e.g. ``req_9f3a...``): an id nobody
    can guess from another one (a call without an id of its own is reached by it)."""
    return f"{kind}{secrets.token_hex(16)}"
