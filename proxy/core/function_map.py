"""The FunctionMap: which LLM function names are the built-in functions (sans-IO).

Format from IMS ``LlmConfig.FunctionMap``: ``{"Function": "hangup",
"MatchFunction": "end_call"}``: the model calls ``end_call``, callgate reads it as
the built-in ``hangup``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from .commands import HANGUP, AnyCommand, RejectedCommand, normalize_args, validate
from .tool_calls import ToolCall

__all__ = ["FunctionMap"]


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
            if function != HANGUP:
                return RejectedCommand(
                    function, {}, "tool_call", raw, "tool call arguments are not a JSON object", call.id
                )
            parsed = {}
        return validate(
            function,
            normalize_args(parsed),
            source="tool_call",
            raw=raw,
            transfer_allow=tuple(transfer_allow),
            tool_call_id=call.id,
        )
