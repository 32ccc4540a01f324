"""Call identity: which call a chat completion request belongs to (sans-IO).

Sources are tried in the configured order; the first that yields a non-empty value
wins. Defaults: header ``X-Call-Id``; body ``extendData.instanceId`` (IMS custom
LLM), ``call.id`` (Vapi), ``metadata.call_id``, ``user``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["body_path", "resolve_call_id"]


def body_path(body: Any, path: str) -> Any:
    """``body["a"]["b"]`` for ``"a.b"``; ``None`` when any step is missing."""
    cur = body
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def resolve_call_id(
    headers: Mapping[str, str], body: Any, sources: Sequence[tuple[str, str]]
) -> str | None:
    """``sources``: ``("header", name)`` or ``("body", dotted.path)`` pairs.
    ``headers`` must look names up case-insensitively (aiohttp's do). Numbers are
    accepted and returned as text."""
    for kind, key in sources:
        value = headers.get(key) if kind == "header" else body_path(body, key)
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            value = str(value)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None
