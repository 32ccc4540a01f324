"""What every recognizer shares: the call found (:class:`TextCall`), the answers a
reader gives (:data:`NEED`, :data:`NO`, an end index), and a call read out of a JSON
object the way vLLM's tool parsers read it (``name`` with ``arguments`` or
``parameters``; arguments an object, or a string holding one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["NEED", "NO", "Call", "Reader", "TextCall", "arguments_json", "call_from_obj", "clean_name"]

NEED = -1  # the reader needs more text to decide
NO = -2  # the text is not the reader's form (only an ambiguous reader says it)

# (function name, arguments as a JSON object's text)
Call = tuple[str, str]


@dataclass(frozen=True, slots=True)
class TextCall:
    """A tool call the model wrote as text. ``form``: which form (``hermes``,
    ``mistral``, ... :data:`~proxy.core.text_tools.FORMS`); ``name``: the function;
    ``arguments``: a JSON object's text; ``raw``: the whole form as written (every
    call of one form carries the same ``raw``)."""

    form: str
    name: str
    arguments: str
    raw: str


class Reader(Protocol):
    """One form being read from a candidate start. ``feed(total)`` and ``close(total)``
    get the whole candidate text so far (from its first character) and answer the
    index where the form ends, :data:`NEED` or :data:`NO`; once ended, ``calls``
    holds what it found (it may be empty: a marker with nothing usable is dropped)."""

    form: str
    unambiguous: bool  # a start marker no speech contains: never released as speech
    calls: list[Call]

    def feed(self, total: str) -> int:
        """More text: the end index, :data:`NEED` or :data:`NO`."""
        ...

    def close(self, total: str) -> int:
        """The content ended: the end index (``calls`` set) or :data:`NO`."""
        ...


def clean_name(name: str) -> str:
    """A function name as written, without the ``functions.`` namespace some models
    put before it (Kimi K2, OpenAI-style prompts)."""
    name = name.strip()
    return name[len("functions."):] if name.startswith("functions.") else name


def arguments_json(args: Any) -> str | None:
    """A call's arguments as a JSON object's text: an object as JSON (non-ASCII kept);
    a string that holds a JSON object as it is (Granite, vLLM's hermes test
    ``serialized_arguments``); ``None`` for anything else."""
    if isinstance(args, dict):
        return json.dumps(args, ensure_ascii=False)
    if isinstance(args, str):
        try:
            inner = json.loads(args)
        except ValueError:
            return None
        return args if isinstance(inner, dict) else None
    return None


def call_from_obj(obj: Any, *, need_arguments: bool) -> Call | None:
    """``{"name": ..., "arguments"|"parameters": {...}}`` (also OpenAI's
    ``{"type": "function", "function": {...}}``) as a call, or ``None``.
    ``need_arguments``: a call without either key is no call (text that merely
    looks like JSON); inside a start marker a missing one is ``{}``."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict) and "name" not in obj:
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not clean_name(name):
        return None
    key = "arguments" if "arguments" in obj else "parameters" if "parameters" in obj else None
    if key is None:
        return None if need_arguments else (clean_name(name), "{}")
    args = arguments_json(obj[key])
    return (clean_name(name), args) if args is not None else None
