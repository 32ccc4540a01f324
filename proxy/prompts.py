"""The prompts/ files, and adding them to a request (``inject_prompt``, ``inject_tools``).

``prompts/commands.{en,zh}.md`` teach a model the two text commands (``$hangup_tag``
and ``$transfer_tag`` are replaced by the configured tag names);
``prompts/tools.json`` holds OpenAI tool definitions for ``hangup`` and
``transfer_call``, the default FunctionMap's MatchFunction names.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Any

from .core.function_map import FunctionMap

__all__ = [
    "inject_prompt",
    "inject_tools",
    "instructions",
    "prompts_dir",
    "tool_definitions",
]

# tools.json's function names under the default FunctionMap.
_DEFAULT_NAMES = {"hangup": "hangup", "transfer_call": "transfer"}


def prompts_dir() -> Path:
    """``proxy/prompts`` in an installed wheel, else the repository's ``prompts/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "prompts", here.parent / "prompts"):
        if (candidate / "tools.json").is_file():
            return candidate
    raise FileNotFoundError("prompts/ not found next to the proxy package")


@lru_cache(maxsize=8)
def instructions(language: str, hangup_tag: str, transfer_tag: str) -> str:
    """The command instructions in ``language`` (``en`` or ``zh``) for these tags."""
    text = (prompts_dir() / f"commands.{language}.md").read_text(encoding="utf-8")
    return Template(text).safe_substitute(hangup_tag=hangup_tag, transfer_tag=transfer_tag).strip()


@lru_cache(maxsize=1)
def _tool_definitions() -> list[dict[str, Any]]:
    return json.loads((prompts_dir() / "tools.json").read_text(encoding="utf-8"))


def tool_definitions(fmap: FunctionMap) -> list[dict[str, Any]]:
    """tools.json's definitions of the functions ``fmap`` maps, each renamed to its
    MatchFunction."""
    tools = []
    for tool in copy.deepcopy(_tool_definitions()):
        fn = tool["function"]
        function = _DEFAULT_NAMES.get(fn["name"], fn["name"])
        if fmap.has(function):
            fn["name"] = fmap.match_for(function)
            tools.append(tool)
    return tools


def inject_prompt(body: dict[str, Any], text: str) -> None:
    """Append ``text`` to the first system (or developer) message, or put a system
    message first when there is none."""
    messages = body["messages"]
    for msg in messages:
        if isinstance(msg, dict) and msg.get("role") in ("system", "developer"):
            content = msg.get("content")
            if isinstance(content, list):
                msg["content"] = [*content, {"type": "text", "text": text}]
            else:
                msg["content"] = f"{content}\n\n{text}" if content else text
            return
    messages.insert(0, {"role": "system", "content": text})


def inject_tools(body: dict[str, Any], fmap: FunctionMap) -> bool:
    """Add the FunctionMap's tool definitions when the request has no ``tools``;
    ``True`` when it did."""
    if body.get("tools") or body.get("functions"):
        return False
    body["tools"] = tool_definitions(fmap)
    return True
