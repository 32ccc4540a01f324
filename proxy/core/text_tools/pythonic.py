"""``pythonic`` and ``llama4_pythonic``: a Python list of calls with keyword arguments,
``[get_weather(city="San Francisco", metric="celsius"), end_call()]`` (Llama 3.2,
Llama 4, ToolACE; vLLM ``pythonic_tool_parser.py``, ``llama4_pythonic_tool_parser.py``
and their tests; Llama 4 may wrap it in ``<|python_start|>`` … ``<|python_end|>``).
Read with :mod:`ast`, never run: every element a call of a plain name, only keyword
arguments, only literal values. ``[1]``, ``[note](link)``, ``[a, b]`` are speech;
``[see(1)]`` is the form with no usable call (dropped)."""

from __future__ import annotations

import ast
import json
import re

from .balance import Balance
from .reading import NEED, NO, Call

__all__ = ["PythonicReader"]

_HEAD = re.compile(r"\[\s*(?:[A-Za-z_]\w*\s*(\()?)?")


class PythonicReader:
    """Reads a pythonic call list from a ``[``."""

    form = "pythonic"
    unambiguous = False
    __slots__ = ("calls", "_bal", "_started")

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._bal = Balance(python=True)
        self._started = False

    def feed(self, total: str) -> int:
        """The index after the list, :data:`NEED` or :data:`NO`."""
        if not self._started:
            m = _HEAD.match(total)
            if m is None or m.group(1) is None:
                return NEED if m is not None and m.end() == len(total) else NO
            self._started = True
        end = self._bal.scan(total, 0)
        if end < 0:
            return NEED
        calls = parse(total[:end])
        if calls is None:
            return NO
        self.calls = calls
        return end

    def close(self, total: str) -> int:
        """An unfinished list is no call."""
        return NO


def parse(text: str) -> list[Call] | None:
    """The calls of a pythonic list, or ``None`` when it is not one (every element a
    call of a plain name). A call whose arguments JSON cannot hold is left out, its
    siblings kept (vLLM's ``test_bad_sibling_call_does_not_drop_good_calls``)."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not isinstance(tree, ast.List) or not tree.elts:
        return None
    if not all(isinstance(e, ast.Call) and isinstance(e.func, ast.Name) for e in tree.elts):
        return None
    return [c for e in tree.elts if (c := keyword_call(e)) is not None]


def keyword_call(node: ast.expr) -> Call | None:
    """``name(k=literal, ...)`` as a call, or ``None``."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.args:
        return None
    args = keyword_args(node)
    return (node.func.id, args) if args is not None else None


def keyword_args(node: ast.Call) -> str | None:
    """A call's keyword arguments as a JSON object's text; ``None`` when one is not a
    literal JSON can hold (``**kw``, a name, a tuple, bytes)."""
    out = {}
    for kw in node.keywords:
        if kw.arg is None:
            return None
        try:
            out[kw.arg] = ast.literal_eval(kw.value)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            return None
    try:
        return json.dumps(out, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return None
