"""``functions``: a call written as free text, ``functions.NAME({...})`` or
``functions.NAME:{...}`` (bolna-ai/bolna#825: ``functions.transfer_call_…({...})``
read to the caller), keyword arguments (``functions.end_call(reason="done")``) and
``()`` too; and the same text without ``functions.`` when it names a tool call the
reply also sent as ``tool_calls`` (livekit/agents-js#1339: a delta with
``content: "saveAnswer({...})"`` and that call in ``tool_calls``), which is the call
again, not a new one. ``functions.py``, "call functions later" are speech, and so is
either word glued to an ASCII letter or digit before it (``xfunctions.f()``): the form
starts a word (or the content beside a tool call in its delta)."""

from __future__ import annotations

import ast
import json
import re

from .balance import Balance
from .reading import NEED, NO, Call
from .pythonic import keyword_args

__all__ = ["PREFIX", "FunctionsReader", "arguments"]

PREFIX = "functions."
_NAME = re.compile(r"[\w\-]+")


class FunctionsReader:
    """Reads ``functions.NAME(...)``/``functions.NAME:{...}`` (``name`` ``None``), or
    ``NAME(...)``/``NAME:{...}`` for a known ``name``."""

    form = "functions"
    unambiguous = False
    __slots__ = ("calls", "_name", "_open", "_bal", "_paren", "_skip")

    def __init__(self, name: str | None = None) -> None:
        self.calls: list[Call] = []
        self._name = name
        self._skip = len(PREFIX) if name is None else len(name)
        self._open = -1  # where the arguments' bracket is
        self._paren = False
        self._bal = Balance(python=True)

    def feed(self, total: str) -> int:
        """The index after the call, :data:`NEED` or :data:`NO`."""
        if self._open < 0:
            head = self._head(total)
            if head is not None:
                return head
        end = self._bal.scan(total, self._open)
        if end < 0:
            return NEED
        args = arguments(total[self._open + 1 : end - 1]) if self._paren else _object(total[self._open:end])
        if args is None or not self._name:
            return NO
        self.calls = [(self._name, args)]
        return end

    def close(self, total: str) -> int:
        """An unfinished call is no call."""
        return NO

    def _head(self, total: str) -> int | None:
        """Read the name and the opening bracket; ``None`` once found."""
        if self._name is None:
            m = _NAME.match(total, len(PREFIX))
            if m is None:
                return NEED if len(total) == len(PREFIX) else NO
            if m.end() == len(total):
                return NEED  # the name may go on
            self._name, self._skip = m.group(), m.end()
        i = self._skip
        if i >= len(total):
            return NEED
        if total[i] == "(":
            self._open, self._paren = i, True
            return None
        if total[i] != ":":
            return NO
        j = i + 1
        while j < len(total) and total[j] in " \t":
            j += 1
        if j == len(total):
            return NEED
        if total[j] != "{":
            return NO
        self._open = j
        return None


def _object(text: str) -> str | None:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return json.dumps(obj, ensure_ascii=False) if isinstance(obj, dict) else None


def arguments(inner: str) -> str | None:
    """What is between the parentheses: nothing (``{}``), a JSON object, or keyword
    arguments with literal values; ``None`` for anything else."""
    text = inner.strip()
    if not text:
        return "{}"
    if text.startswith("{"):
        return _object(text)
    try:
        node = ast.parse(f"_({text})", mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not isinstance(node, ast.Call) or node.args:
        return None
    return keyword_args(node)
