"""``glm45``: GLM-4.5/4.6/4.7 ``<tool_call>NAME\\n<arg_key>k</arg_key>\\n<arg_value>v
</arg_value>\\n</tool_call>`` (vLLM ``glm4_moe_tool_parser.py``; GLM-4.7 writes no
newline after the name). A value that is JSON (a number, ``true``, an object) is
read as JSON, any other as the string it is: vLLM reads it so when the request's
tool schema does not say "string", and callgate has no schema."""

from __future__ import annotations

import json
import re
from typing import Any

from .reading import Call, clean_name

__all__ = ["parse"]

_PAIR = re.compile(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>", re.DOTALL)
_NAME = re.compile(r"^[\w.\-]+$")


def _value(text: str) -> Any:
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse(body: str) -> list[Call] | None:
    """The call of one ``<tool_call>`` body, or ``None`` when it is not this form."""
    head, _, _ = body.partition("<arg_key>")
    name = head.strip()
    if not _NAME.match(name):
        return None
    rest = body[len(head):]
    args = {k.strip(): _value(v) for k, v in _PAIR.findall(rest)}
    if _PAIR.sub("", rest).strip():
        return None  # something else between the pairs
    return [(clean_name(name), json.dumps(args, ensure_ascii=False))]
