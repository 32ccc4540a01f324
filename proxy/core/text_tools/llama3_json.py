"""``llama3_json``: Llama 3.x/4 JSON tool calls, ``{"name": ..., "parameters": {...}}``
(or ``"arguments"``), anywhere in the content, several joined by ``;`` (vLLM
``llama_tool_parser.py`` and its tests: "Here is the result: {"name":
"getOpenIncidentsTool", "parameters": {}} Would you like to know more?"); also a
JSON list of such objects, and after ``<|python_tag|>``. A ``{`` that does not open
such an object (``{curly}``, ``{"query": "test"}``) is speech: only a JSON object
with a ``name`` and its arguments is a call. The ``;`` right after a call (spaces
before it) is part of the form."""

from __future__ import annotations

import json
import re

from .balance import Balance
from .reading import NEED, NO, Call, call_from_obj

__all__ = ["JsonCallReader"]

_OBJECT = re.compile(r'\{\s*(")?')
_LIST = re.compile(r'\[\s*(?:\{\s*(")?)?')


class JsonCallReader:
    """Reads a JSON call (``{``) or list of calls (``[``) from a candidate start."""

    form = "llama3_json"
    unambiguous = False
    __slots__ = ("calls", "_bal", "_end", "_head")

    def __init__(self, opener: str) -> None:
        self.calls: list[Call] = []
        self._bal = Balance()
        self._end = -1  # where the JSON ended
        self._head = _OBJECT if opener == "{" else _LIST

    def feed(self, total: str) -> int:
        """The end of the call (and its ``;``), :data:`NEED` or :data:`NO`."""
        if self._end < 0:
            m = self._head.match(total)
            if m is None or m.group(1) is None:
                return NEED if m is not None and m.end() == len(total) else NO
            end = self._bal.scan(total, 0)
            if end < 0:
                return NEED
            calls = _read(total[:end])
            if not calls:
                return NO
            self.calls, self._end = calls, end
        return self._after(total, final=False)

    def close(self, total: str) -> int:
        """A finished call ends at its JSON; anything unfinished is no call."""
        return self._after(total, final=True) if self._end >= 0 else NO

    def _after(self, total: str, *, final: bool) -> int:
        i = self._end
        while i < len(total) and total[i] in " \t":
            i += 1
        if i < len(total):
            return i + 1 if total[i] == ";" else self._end
        return self._end if final else NEED


def _read(text: str) -> list[Call] | None:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    items = obj if isinstance(obj, list) else [obj]
    calls = [call_from_obj(item, need_arguments=True) for item in items]
    if not calls or any(c is None for c in calls):
        return None
    return [c for c in calls if c is not None]
