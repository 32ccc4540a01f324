"""``deepseek_v3``: DeepSeek-V3's and V3.1's tool calls (vLLM
``deepseekv3_tool_parser.py``, ``deepseekv31_tool_parser.py``; the tokens are
full-width bars ``｜`` U+FF5C and ``▁`` U+2581, not ASCII):

* V3: ``<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\\n```json
  \\n{...}\\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>``
* V3.1: ``<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{...}<｜tool▁call▁end｜>
  <｜tool▁calls▁end｜>``
"""

from __future__ import annotations

import json
import re

from .reading import Call, arguments_json, clean_name

__all__ = ["CALL_END", "CALL_START", "END", "START", "parse", "parse_call"]

START = "<｜tool▁calls▁begin｜>"
END = "<｜tool▁calls▁end｜>"
CALL_START = "<｜tool▁call▁begin｜>"
CALL_END = "<｜tool▁call▁end｜>"
SEP = "<｜tool▁sep｜>"

_CALL = re.compile(re.escape(CALL_START) + r"(.*?)(?:" + re.escape(CALL_END) + r"|$)", re.DOTALL)
_V3 = re.compile(r"^(.*?)\n```(?:json)?\n(.*?)\n?```\s*$", re.DOTALL)


def parse_call(text: str) -> Call | None:
    """One call: the text between ``<｜tool▁call▁begin｜>`` and ``<｜tool▁call▁end｜>``."""
    left, sep, right = text.partition(SEP)
    if not sep:
        return None
    if left.strip() == "function" and (m := _V3.match(right)):
        name, args = m.group(1), m.group(2)
    else:
        name, args = left, right
    try:
        parsed = json.loads(args) if args.strip() else {}
    except ValueError:
        return None
    out = arguments_json(parsed)
    return (clean_name(name), out) if out is not None and clean_name(name) else None


def parse(body: str) -> list[Call] | None:
    """The calls between ``<｜tool▁calls▁begin｜>`` and ``<｜tool▁calls▁end｜>``."""
    calls = [parse_call(m) for m in _CALL.findall(body)]
    return [c for c in calls if c is not None] or None
