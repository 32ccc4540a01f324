"""``mistral``: after the ``[TOOL_CALLS]`` token (vLLM ``mistral_tool_parser.py`` and
its tests):

* tokenizers before v11 (Mistral 7B v0.3, Nemo): a JSON list,
  ``[TOOL_CALLS] [{"name": "add", "arguments": {"a": 3.5, "b": 4}}]``;
* v11 and later (Mistral Small 3.x, Magistral, Devstral): ``[TOOL_CALLS]add{"a": 3.5}``,
  with HF tokenizers ``[TOOL_CALLS]add[ARGS]{...}`` (and ``[CALL_ID]id`` before
  ``[ARGS]``); one ``[TOOL_CALLS]`` per call.

The form ends where its JSON ends; text after it is read again (speech, or the next
``[TOOL_CALLS]``). A head that is none of these: the token alone is dropped."""

from __future__ import annotations

import json
import re

from .balance import Balance
from .reading import NEED, Call, arguments_json, call_from_obj, clean_name

__all__ = ["START", "MistralReader"]

START = "[TOOL_CALLS]"

_NAMED = re.compile(r"\s*([\w.\-]+)\s*(?:\[CALL_ID\]\s*[\w\-]*\s*)?(?:\[ARGS\]\s*)?\{")
_HEAD_CHARS = re.compile(r"[\w.\-\s\[\]]*")
_MAX_HEAD = 160


class MistralReader:
    """Reads one ``[TOOL_CALLS]`` form; see the module docstring."""

    form = "mistral"
    unambiguous = True
    __slots__ = ("calls", "_open", "_name", "_bal")

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._open = -1  # where the JSON starts
        self._name: str | None = None  # the v11 form's name (None: the list form)
        self._bal = Balance()

    def feed(self, total: str) -> int:
        """The index after the JSON, :data:`NEED`, or the token's end (a head that is no call)."""
        if self._open < 0:
            head = self._head(total)
            if head is not None:
                return head
        end = self._bal.scan(total, self._open)
        if end < 0:
            return NEED
        self._read(total[self._open:end])
        return end

    def close(self, total: str) -> int:
        """Unfinished JSON: the whole is dropped; an unfinished head: the token alone."""
        return len(total) if self._open >= 0 else len(START)

    def _head(self, total: str) -> int | None:
        """Find where the JSON starts; ``None`` once found, else what :meth:`feed` answers."""
        rest = total[len(START):]
        stripped = rest.lstrip()
        if stripped.startswith("["):
            self._open = len(total) - len(stripped)
            return None
        m = _NAMED.match(rest)
        if m:
            self._open, self._name = len(START) + m.end() - 1, clean_name(m.group(1))
            return None
        if len(rest) <= _MAX_HEAD and _HEAD_CHARS.fullmatch(rest):
            return NEED
        return len(START)

    def _read(self, text: str) -> None:
        try:
            obj = json.loads(text)
        except ValueError:
            return
        if self._name is not None:
            args = arguments_json(obj)
            self.calls = [(self._name, args)] if args is not None else []
        elif isinstance(obj, list):
            calls = [call_from_obj(item, need_arguments=False) for item in obj]
            self.calls = [c for c in calls if c is not None]
