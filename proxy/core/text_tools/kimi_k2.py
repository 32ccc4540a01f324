"""``kimi_k2``: Kimi K2's ``<|tool_calls_section_begin|><|tool_call_begin|>functions.
NAME:0<|tool_call_argument_begin|>{...}<|tool_call_end|><|tool_calls_section_end|>``
(vLLM ``kimi_k2_tool_parser.py``: the name is the id's part between the last ``.``
and the ``:``)."""

from __future__ import annotations

import json
import re

from .reading import Call, arguments_json

__all__ = ["CALL_END", "CALL_START", "END", "START", "parse", "parse_call"]

START = "<|tool_calls_section_begin|>"
END = "<|tool_calls_section_end|>"
CALL_START = "<|tool_call_begin|>"
CALL_END = "<|tool_call_end|>"
ARGS = "<|tool_call_argument_begin|>"

_CALL = re.compile(re.escape(CALL_START) + r"(.*?)(?:" + re.escape(CALL_END) + r"|$)", re.DOTALL)


def parse_call(text: str) -> Call | None:
    """One call: the text between ``<|tool_call_begin|>`` and ``<|tool_call_end|>``."""
    ident, sep, args = text.partition(ARGS)
    name = ident.strip().split(":")[0].split(".")[-1]
    if not sep or not name:
        return None
    try:
        parsed = json.loads(args) if args.strip() else {}
    except ValueError:
        return None
    out = arguments_json(parsed)
    return (name, out) if out is not None else None


def parse(body: str) -> list[Call] | None:
    """The calls between ``<|tool_calls_section_begin|>`` and ``<|tool_calls_section_end|>``."""
    calls = [parse_call(m) for m in _CALL.findall(body)]
    return [c for c in calls if c is not None] or None
