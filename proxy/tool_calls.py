"""Streamed tool-call assembly and FunctionMap mapping (sans-IO).

OpenAI streams a tool call as ``delta.tool_calls`` entries keyed by ``index``: the
first carries ``id``, ``type`` and ``function.name``, later ones carry pieces of
``function.arguments`` (OpenAI API reference, chat completion chunk). Some servers
(the IMS doc's own example) omit ``index`` and repeat the whole call, same ``id``,
on every chunk: a repeat is the same call, not more arguments.

The FunctionMap (IMS ``LlmConfig.FunctionMap``: ``{"Function": "hangup",
"MatchFunction": "end_call"}``) says which LLM function names are built-in functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .commands import HANGUP, AnyCommand, RejectedCommand, normalize_args, validate


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
        tc_id = entry.get("id")
        index = entry.get("index")
        if not isinstance(index, int):
            if tc_id is not None and tc_id in self._by_id:
                index = self._by_id[tc_id]
            elif tc_id is None and self._last is not None:
                index = self._last
            else:
                index = len(self._calls)
        call = self._calls.get(index)
        repeat = False
        if call is None:
            call = self._calls[index] = ToolCall(index)
        elif tc_id is not None and call.id == tc_id:
            repeat = True
        self._last = index
        if tc_id is not None and call.id is None:
            call.id = tc_id
            self._by_id[tc_id] = index
        fn = entry.get("function")
        if not repeat and isinstance(fn, Mapping):
            name = fn.get("name")
            if isinstance(name, str) and name and not call.name:
                call.name = name
            args = fn.get("arguments")
            if isinstance(args, str):
                call.arguments += args
            elif isinstance(args, Mapping):  # some servers send an object, not a string
                call.arguments += json.dumps(args, ensure_ascii=False)
        if isinstance(entry.get("type"), str):
            call.type = entry["type"]
        return call

    def calls(self) -> list[ToolCall]:
        """Every call assembled so far, by index."""
        return [self._calls[i] for i in sorted(self._calls)]


class FunctionMap:
    """LLM function name (MatchFunction) <-> built-in function (Function)."""

    __slots__ = ("_by_match", "_by_function")

    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        """``entries``: ``(function, match_function)`` pairs, e.g. ``("hangup", "end_call")``."""
        self._by_match: dict[str, str] = {}
        self._by_function: dict[str, str] = {}
        for function, match in entries:
            self._by_match[match] = function
            self._by_function.setdefault(function, match)

    def function_for(self, name: str) -> str | None:
        """The built-in function an LLM function name maps to, or ``None``."""
        return self._by_match.get(name)

    def has(self, function: str) -> bool:
        """Whether some MatchFunction maps to the built-in ``function``."""
        return function in self._by_function

    def match_for(self, function: str) -> str:
        """The LLM function name for a built-in function (the function's own name
        when the map has no entry)."""
        return self._by_function.get(function, function)

    def command(self, call: ToolCall, transfer_allow: Iterable[str] = ()) -> AnyCommand | None:
        """The control command a finished tool call stands for, or ``None`` when its
        name is not mapped. Arguments that are not a JSON object: a hangup still
        hangs up, a transfer is rejected."""
        function = self.function_for(call.name)
        if function is None:
            return None
        raw = call.arguments
        try:
            parsed = json.loads(raw) if raw.strip() else {}
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            if function == HANGUP:
                parsed = {}
            else:
                return RejectedCommand(
                    function, {}, "tool_call", raw, "tool call arguments are not a JSON object", call.id
                )
        return validate(
            function,
            normalize_args(parsed),
            source="tool_call",
            raw=raw,
            transfer_allow=tuple(transfer_allow),
            tool_call_id=call.id,
        )
