"""``hermes``: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (Hermes 2
Pro, Qwen 2.5/3; vLLM ``hermes_tool_parser.py`` and its tests). The body is one JSON
object (a list of them is read too); ``arguments`` may be a string holding the
object (Granite)."""

from __future__ import annotations

import json

from .reading import Call, call_from_obj

__all__ = ["START", "parse"]

START = "<tool_call>"


def parse(body: str) -> list[Call] | None:
    """The calls of one ``<tool_call>`` body, or ``None`` when it is not JSON calls."""
    text = body.strip()
    if not text.startswith(("{", "[")):
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    items = obj if isinstance(obj, list) else [obj]
    calls = [call_from_obj(item, need_arguments=False) for item in items]
    return [c for c in calls if c is not None] if calls and all(calls) else None
