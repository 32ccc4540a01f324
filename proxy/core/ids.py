"""Ids: unique ones without a system call each (a random per-process prefix and a
counter), and unguessable ones (128 random bits) where knowing an id grants something."""

from __future__ import annotations

import itertools
import os

__all__ = ["new_id", "secret_id"]

_PREFIX = os.urandom(6).hex()
_COUNTER = itertools.count(1)

_PER_BLOCK = 256  # secret ids drawn from one os.urandom() call (16 bytes each: 4 KiB)
_DRAWS = itertools.count()  # the n-th secret id takes bytes [16 * (n % _PER_BLOCK), +16) of block n // _PER_BLOCK
_block: tuple[int, bytes] = (-1, b"")


def new_id(kind: str) -> str:
    """``kind`` + 24 hex chars (e.g. ``evt_3f9a...``), unique across processes and restarts
    with overwhelming probability (48 random bits per process + a 48-bit counter)."""
    return f"{kind}{_PREFIX}{next(_COUNTER):012x}"


def secret_id(kind: str) -> str:
    """``kind`` + 32 hex chars of 128 random bits (e.g. ``req_9f3a...``): an id nobody
    can guess from another one (a call without an id of its own is reached by it).

    The bits come from ``os.urandom``, 4 KiB at a time (a system call per id cost
    more than the rest of a request's ids together); every id takes bytes no other
    id takes (a draw counter, atomic under the GIL; a draw whose block is no longer
    the current one reads fresh bytes), and a forked child never reads its parent's."""
    global _block
    n = next(_DRAWS)
    number, offset = divmod(n, _PER_BLOCK)
    current, data = _block
    if number != current:
        if number < current:  # a straggler from an older block: bytes of its own
            return f"{kind}{os.urandom(16).hex()}"
        data = os.urandom(16 * _PER_BLOCK)
        _block = (number, data)
    return f"{kind}{data[16 * offset : 16 * offset + 16].hex()}"


def _forget_block() -> None:
    """In a forked child: the parent's bytes are not secret from the parent."""
    global _block, _DRAWS
    _block, _DRAWS = (-1, b""), itertools.count()


os.register_at_fork(after_in_child=_forget_block)
