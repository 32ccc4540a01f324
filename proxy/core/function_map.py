"""The FunctionMap: which LLM function names are the built-in functions, and where a
command's fields live in their arguments (sans-IO).

Format from IMS ``LlmConfig.FunctionMap``: ``{"Function": "hangup",
"MatchFunction": "end_call"}``: the model calls ``end_call``, callgate reads it as
the built-in ``hangup``. An entry may also give an argument shape: where each
command field (``endword``, ``caller``, ``callee``, ``msg``, ``err_msg``) lives in
the tool call's arguments, by dotted path, with alternatives tried in order:
``{callee: [destination.number, destination]}`` reads Vapi's ``transferCall``
``{"destination": {"type": "number", "number": "+14155550123"}}``. ``defaults`` are
arguments callgate adds when it writes that tool call itself (ElevenLabs'
``end_call`` requires a ``reason``). The shape is used both ways: reading a model's
tool call into a command, and rendering a command as that runtime's tool call.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .call_id import body_path
from .commands import (
    HANGUP,
    AnyCommand,
    Command,
    RejectedCommand,
    RejectReason,
    normalize_args,
    ordered_args,
    validate,
)
from .tool_calls import ToolCall

__all__ = ["FunctionMap", "FunctionSpec", "set_path"]


@dataclass(frozen=True)
class FunctionSpec:
    """One FunctionMap entry. ``arguments``: command field -> dotted paths in the
    arguments (``None``: the arguments are the command's fields, as written);
    ``defaults``: arguments added when callgate renders this tool call."""

    function: str
    match: str
    arguments: Mapping[str, tuple[str, ...]] | None = field(default=None, hash=False)
    defaults: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def read(self, args: dict[str, Any]) -> dict[str, str]:
        """The command fields in a tool call's parsed ``args`` (plus the arguments
        no path consumed, kept as written)."""
        if self.arguments is None:
            return normalize_args(args)
        fields: dict[str, Any] = {}
        used: set[str] = set()
        for name, paths in self.arguments.items():
            for path in paths:
                value = body_path(args, path)
                if value is not None and not isinstance(value, (dict, list)):
                    fields[name] = value
                    used.add(path.split(".", 1)[0])
                    break
        rest = {k: v for k, v in args.items() if k not in used and k not in fields}
        return {**normalize_args(rest), **normalize_args(fields)}

    def write(self, cmd: Command) -> dict[str, Any]:
        """The arguments of this runtime's tool call for ``cmd``: ``defaults``, then
        each mapped field at its first path; a field the shape does not name is left
        out unless it overrides a default."""
        out = copy.deepcopy(dict(self.defaults))
        if self.arguments is None:
            return {**out, **ordered_args(cmd)}
        for name, value in cmd.args.items():
            paths = (self.arguments or {}).get(name)
            if paths:
                set_path(out, paths[0], value)
            elif name in self.defaults:
                out[name] = value
        return out


def set_path(target: dict[str, Any], path: str, value: Any) -> None:
    """``target["a"]["b"] = value`` for ``"a.b"``, making objects on the way."""
    *parents, last = path.split(".")
    for part in parents:
        nxt = target.get(part)
        if not isinstance(nxt, dict):
            nxt = target[part] = {}
        target = nxt
    target[last] = value


class FunctionMap:
    """LLM function name (MatchFunction) <-> built-in function (Function)."""

    __slots__ = ("_by_match", "_by_function")

    def __init__(self, entries: Iterable[FunctionSpec | tuple[str, str]]) -> None:
        """``entries``: :class:`FunctionSpec` objects or ``(function, match_function)``
        pairs, e.g. ``("hangup", "end_call")``. The first entry of a function is the
        name callgate writes."""
        self._by_match: dict[str, FunctionSpec] = {}
        self._by_function: dict[str, FunctionSpec] = {}
        for entry in entries:
            spec = entry if isinstance(entry, FunctionSpec) else FunctionSpec(entry[0], entry[1])
            self._by_match[spec.match] = spec
            self._by_function.setdefault(spec.function, spec)

    def function_for(self, name: str) -> str | None:
        """The built-in function an LLM function name maps to, or ``None``."""
        spec = self._by_match.get(name)
        return spec.function if spec is not None else None

    def has(self, function: str) -> bool:
        """Whether some MatchFunction maps to the built-in ``function``."""
        return function in self._by_function

    def match_for(self, function: str) -> str:
        """The LLM function name for a built-in function (the function's own name
        when the map has no entry)."""
        spec = self._by_function.get(function)
        return spec.match if spec is not None else function

    def spec_for(self, function: str) -> FunctionSpec:
        """The entry callgate renders ``function`` with."""
        return self._by_function.get(function) or FunctionSpec(function, function)

    def command(
        self, call: ToolCall, transfer_allow: Iterable[str] = (), *, source: str = "tool_call", raw: str | None = None
    ) -> AnyCommand | None:
        """The control command a finished tool call stands for, or ``None`` when its
        name is not mapped. Arguments that are not a JSON object: a hangup still
        hangs up, a transfer is rejected. ``source``: ``tool_call``, or
        ``text_tool_call`` for a call written as text; ``raw``: what the command
        says was written (default: the arguments)."""
        spec = self._by_match.get(call.name)
        if spec is None:
            return None
        args = call.arguments
        raw = args if raw is None else raw
        try:
            parsed = json.loads(args) if args.strip() else {}
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            if spec.function != HANGUP:
                return RejectedCommand(spec.function, {}, source, raw, RejectReason.BAD_ARGUMENTS, tool_call_id=call.id)
            parsed = {}
        cmd = validate(
            spec.function,
            spec.read(parsed),
            source=source,
            raw=raw,
            transfer_allow=tuple(transfer_allow),
            tool_call_id=call.id,
        )
        return dataclasses.replace(cmd, tool_extra=dict(call.extra)) if call.extra and isinstance(cmd, Command) else cmd
