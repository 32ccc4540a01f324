"""Where a bracketed value ends, found in pieces (sans-IO): ``[``/``{``/``(`` counted
outside strings, strings in the given quotes with backslash escapes (JSON: ``"``;
Python: ``"`` and ``'``). Only the end is found; the value is then read by ``json``
or ``ast``, which say whether it is one."""

from __future__ import annotations

import re

__all__ = ["Balance"]

_JSON = re.compile(r'[\[\]{}()"\\]')
_PYTHON = re.compile(r"""[\[\]{}()"'\\]""")
_OPEN = "[{("


class Balance:
    """Feed :meth:`scan` the same growing text; it reads each character once.
    ``python``: single quotes open strings too."""

    __slots__ = ("_depth", "_quote", "_esc", "_pos", "_re")

    def __init__(self, *, python: bool = False) -> None:
        self._depth = 0
        self._quote = ""
        self._esc = False
        self._pos = -1  # the first index not yet read (-1: not started)
        self._re = _PYTHON if python else _JSON

    def scan(self, text: str, start: int) -> int:
        """Read ``text`` from ``start`` (the opening bracket) on the first call, from
        where it stopped afterwards; the index after the bracket that closes the
        first one, or -1 while it is still open."""
        pos = start if self._pos < 0 else self._pos
        depth, quote = self._depth, self._quote
        skip = pos if self._esc else -1  # an escaped char (the last piece ended in a backslash)
        for m in self._re.finditer(text, pos):
            i = m.start()
            if i == skip:
                continue
            c = m.group()
            if quote:
                if c == "\\":
                    skip = i + 1
                elif c == quote:
                    quote = ""
            elif c in "\"'":
                quote = c
            elif c in _OPEN:
                depth += 1
            elif c != "\\":
                depth -= 1
                if depth <= 0:
                    self._depth, self._quote, self._esc, self._pos = 0, "", False, i + 1
                    return i + 1
        self._depth, self._quote = depth, quote
        self._esc = skip == len(text)
        self._pos = len(text)
        return -1
