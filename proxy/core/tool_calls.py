"""Streamed tool-call assembly (sans-IO).

OpenAI streams a tool call as ``delta.tool_calls`` entries keyed by ``index``: the
first carries ``id``, ``type`` and ``function.name``, later ones carry pieces of
``function.arguments`` (OpenAI API reference, chat completion chunk). Some servers
(the IMS doc's own example) omit ``index`` and repeat the whole call, same ``id``,
on every chunk: a repeat is the same call, not more arguments.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ToolCall", "ToolCallAssembler"]


@dataclass(slots=True)
class ToolCall:
    """One tool call being assembled. ``arguments`` is the concatenated string."""

    index: int
    id: str | None = None
    name: str = ""
    arguments: str = ""
    type: str = "function"


class ToolCallAssembler:
    """Feed ``delta.tool_calls`` entries of one choice; read the assembled calls."""

    __slots__ = ("_calls", "_by_id", "_last")

    def __init__(self) -> None:
        self._calls: dict[int, ToolCall] = {}
        self._by_id: dict[str, int] = {}
        self._last: int | None = None

    def feed(self, entry: Mapping[str, Any]) -> ToolCall:
        """Apply one entry; return the call it belongs to. A repeat of a call already
        seen (same ``id``) changes nothing."""
        tc_id = entry["id"] if isinstance(entry.get("id"), str) else None  # a list or number is no id
        index = self._index(entry.get("index"), tc_id)
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = ToolCall(index)
        elif tc_id is not None and call.id == tc_id:
            self._last = index
            return call  # the IMS repeat: the same call again
        self._last = index
        if tc_id is not None and call.id is None:
            call.id = tc_id
            self._by_id[tc_id] = index
        fn = entry.get("function")
        if isinstance(fn, Mapping):
            _add_function(call, fn)
        if isinstance(entry.get("type"), str):
            call.type = entry["type"]
        return call

    def calls(self) -> list[ToolCall]:
        """Every call assembled so far, by index."""
        return [self._calls[i] for i in sorted(self._calls)]

    def _index(self, index: Any, tc_id: Any) -> int:
        """The entry's call: its ``index``; without one, the call with its ``id``, the
        call before (a continuation), or a new one."""
        if isinstance(index, int):
            return index
        if tc_id is not None and tc_id in self._by_id:
            return self._by_id[tc_id]
        if tc_id is None and self._last is not None:
            return self._last
        return len(self._calls)


def _add_function(call: ToolCall, fn: Mapping[str, Any]) -> None:
    """The name (first one wins) and another piece of the arguments."""
    name = fn.get("name")
    if isinstance(name, str) and name and not call.name:
        call.name = name
    args = fn.get("arguments")
    if isinstance(args, str):
        call.arguments += args
    elif isinstance(args, Mapping):  # some servers send an object, not a string
        call.arguments += json.dumps(args, ensure_ascii=False)
