"""``qwen3_coder``: Qwen3-Coder's ``<tool_call>\\n<function=NAME>\\n<parameter=k>\\nv
\\n</parameter>\\n</function>\\n</tool_call>`` (vLLM ``qwen3coder_tool_parser.py``; it
also reads ``<function=...>`` without ``<tool_call>``). A value loses one newline at
each end and stays a string (vLLM converts by the request's tool schema, which
callgate does not have; ``null`` is null)."""

from __future__ import annotations

import json
import re
from typing import Any

from .reading import Call, clean_name

__all__ = ["START", "parse", "parse_function"]

START = "<function="  # the bare form, without <tool_call>

_FUNCTION = re.compile(r"<function=([^>\n]+)>(.*?)(?:</function>|$)", re.DOTALL)
_PARAM = re.compile(r"<parameter=([^>\n]+)>(.*?)(?:</parameter>|(?=<parameter=)|$)", re.DOTALL)


def _value(text: str) -> Any:
    if text.startswith("\n"):
        text = text[1:]
    if text.endswith("\n"):
        text = text[:-1]
    return None if text.lower() == "null" else text


def parse_function(name: str, body: str) -> Call | None:
    """One function: ``name`` and the text after its ``>``."""
    name = clean_name(name)
    if not name:
        return None
    args = {k.strip(): _value(v) for k, v in _PARAM.findall(body)}
    return name, json.dumps(args, ensure_ascii=False)


def parse(body: str) -> list[Call] | None:
    """The calls of one ``<tool_call>`` body, or ``None`` when it holds no ``<function=``."""
    found = [parse_function(name, rest) for name, rest in _FUNCTION.findall(body)]
    calls = [c for c in found if c is not None]
    return calls or None
