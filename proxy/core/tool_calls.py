"""Streamed tool-call assembly (sans-IO), for every provider's delta shape.

OpenAI streams a tool call as ``delta.tool_calls`` entries keyed by ``index``: the
first carries ``id``, ``type`` and ``function.name``, later ones carry pieces of
``function.arguments`` (OpenAI API reference, chat completion chunk). Providers
differ (fixtures in ``tests/fixtures/providers/``, each naming its source):

* IMS (its doc's own example): no ``index``, the whole call repeated, same ``id``,
  on every chunk: a repeat is the same call, not more arguments.
* DashScope Qwen3-Omni (Model Studio "Function calling"): the second delta repeats
  the first one's ``id`` at the same ``index`` and carries the arguments: a
  repeated id with new arguments continues the call.
* DashScope continuation deltas carry ``"id": ""``: an empty id is no id.
* Gemini's OpenAI compatibility (2025): several whole calls in one delta, each
  without ``index`` and with ``"id": ""``: an entry without index or id that names a
  function starts a call of its own; one that names none continues the last call.
* Mistral: a whole call without ``index``/``type`` in the finish chunk.
* Some servers send ``arguments`` as an object: it is kept as its JSON.

A call whose id came empty gets a generated one (``call_...``), stable for the
reply: what callgate writes (a renumbered entry, a re-rendered call, the turn's
record) never carries ``""``. Fields of an entry callgate does not read
(``extra_content`` with Gemini's thought signature, ...) are kept in
:attr:`ToolCall.extra`, so a call callgate re-renders still carries them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .ids import new_id

__all__ = ["Fed", "ToolCall", "ToolCallAssembler"]

_READ = frozenset({"index", "id", "type", "function"})


@dataclass(slots=True)
class ToolCall:
    """One tool call being assembled. ``arguments`` is the joined string; ``extra``:
    the entries' other fields (first seen wins), kept when callgate re-renders it;
    ``generated_id``: the id came empty and callgate made ``id`` up."""

    index: int
    id: str | None = None
    name: str = ""
    arguments: str = ""
    type: str = "function"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    generated_id: bool = field(default=False, compare=False)


class Fed(Enum):
    """What one entry did to its call."""

    NEW = "new"  # it began the call
    MORE = "more"  # it added to the call (arguments, a name, fields)
    REPEAT = "repeat"  # it repeated the call as it stands (the IMS form): nothing changed


class ToolCallAssembler:
    """Feed ``delta.tool_calls`` entries of one choice; read the assembled calls."""

    __slots__ = ("_calls", "_by_id", "_last")

    def __init__(self) -> None:
        self._calls: dict[int, ToolCall] = {}
        self._by_id: dict[str, int] = {}
        self._last: int | None = None

    def feed(self, entry: Mapping[str, Any]) -> tuple[ToolCall, Fed]:
        """Apply one entry; the call it belongs to and what it did (see the module
        docstring for the shapes)."""
        sent_id = entry.get("id")
        tc_id = sent_id if isinstance(sent_id, str) and sent_id else None  # "", a list or a number is no id
        fn = entry.get("function")
        fn = fn if isinstance(fn, Mapping) else {}
        index = self._index(entry.get("index"), tc_id, fn)
        call = self._calls.get(index)
        self._last = index
        if call is None:
            call = self._calls[index] = ToolCall(index)
            how = Fed.NEW
            if tc_id is None and sent_id == "":
                call.id, call.generated_id = new_id("call_"), True
        elif tc_id is not None and tc_id == call.id and _repeats(call, fn):
            return call, Fed.REPEAT
        else:
            how = Fed.MORE
        self._adopt(call, tc_id)
        _add_function(call, fn, snapshot=tc_id is not None and tc_id == call.id and how is Fed.MORE)
        _add_fields(call, entry)
        return call, how

    def calls(self) -> list[ToolCall]:
        """Every call assembled so far, by index."""
        return [self._calls[i] for i in sorted(self._calls)]

    def _adopt(self, call: ToolCall, tc_id: str | None) -> None:
        """The call takes the model's id, when it has none of its own yet."""
        if tc_id is not None and (call.id is None or call.generated_id):
            call.id, call.generated_id = tc_id, False
            self._by_id[tc_id] = call.index

    def _index(self, index: Any, tc_id: str | None, fn: Mapping[str, Any]) -> int:
        """The entry's call: its ``index``; without one, the call with its ``id``; a
        new call when it has an id or names a function; else the last call."""
        if isinstance(index, int) and not isinstance(index, bool):
            return index
        if tc_id is not None:
            known = self._by_id.get(tc_id)
            return known if known is not None else self._free()
        named = isinstance(fn.get("name"), str) and bool(fn["name"])
        if named or self._last is None:
            return self._free()
        return self._last

    def _free(self) -> int:
        return max(self._calls, default=-1) + 1


def _arguments(fn: Mapping[str, Any]) -> str | None:
    args = fn.get("arguments")
    if isinstance(args, str):
        return args
    if isinstance(args, Mapping):  # some servers send an object, not a string
        return json.dumps(args, ensure_ascii=False)
    return None


def _repeats(call: ToolCall, fn: Mapping[str, Any]) -> bool:
    """The entry (same id as ``call``) is the call again as it stands: the same
    arguments so far (or none) and no other name."""
    name = fn.get("name")
    if isinstance(name, str) and name and call.name and name != call.name:
        return False
    args = _arguments(fn)
    return args is None or args == call.arguments


def _add_fields(call: ToolCall, entry: Mapping[str, Any]) -> None:
    """``type``, and the fields callgate does not read (first seen wins)."""
    if isinstance(entry.get("type"), str):
        call.type = entry["type"]
    for key, value in entry.items():
        if key not in _READ and value is not None:
            call.extra.setdefault(key, value)


def _add_function(call: ToolCall, fn: Mapping[str, Any], *, snapshot: bool) -> None:
    """The name (first one wins) and the arguments: another piece, or (``snapshot``:
    the same id again, with everything so far and more) the arguments as they now
    stand."""
    name = fn.get("name")
    if isinstance(name, str) and name and not call.name:
        call.name = name
    args = _arguments(fn)
    if args is None:
        return
    if snapshot and call.arguments and args.startswith(call.arguments):
        call.arguments = args
    else:
        call.arguments += args
