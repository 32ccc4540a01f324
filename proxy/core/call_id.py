"""Call identity: which call a chat completion request belongs to (sans-IO).

Sources are tried in the configured order; the first that yields a non-empty value
wins. Defaults: header ``X-Call-Id``; body ``extendData.instanceId`` (IMS custom
LLM), ``call.id`` (Vapi), ``metadata.call_id``, ``user``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MAX_CALL_ID_CHARS", "InvalidCallId", "body_path", "check_call_id", "resolve_call_id", "resolve_call_id_from"]

MAX_CALL_ID_CHARS = 128


class InvalidCallId(ValueError):
    """A call id callgate will not take: too long, control characters, not UTF-8.
    ``source``: where it came from (``header X-Call-Id``, ``body user``, ``path``)."""

    def __init__(self, source: str, why: str) -> None:
        super().__init__(f"the call id from {source} {why}")
        self.source = source


def check_call_id(value: str, source: str) -> str:
    """``value`` when it is a call id callgate takes; :class:`InvalidCallId` when it is
    longer than 128 characters, holds a control character (CR, LF, NUL, ...) or is
    not valid UTF-8 (undecodable bytes in a header)."""
    if len(value) > MAX_CALL_ID_CHARS:
        raise InvalidCallId(source, f"is {len(value)} characters long; at most {MAX_CALL_ID_CHARS}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidCallId(source, "is not valid UTF-8") from None
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
        raise InvalidCallId(source, "holds a control character")
    return value


def body_path(body: Any, path: str) -> Any:
    """``body["a"]["b"]`` for ``"a.b"``; ``None`` when any step is missing."""
    cur = body
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def resolve_call_id_from(
    headers: Mapping[str, str], body: Any, sources: Sequence[tuple[str, str]]
) -> tuple[str, str] | None:
    """``(value, "kind name")`` from the first of ``sources`` that has one:
    ``("header", name)`` or ``("body", dotted.path)`` pairs. ``headers`` must look
    names up case-insensitively (aiohttp's do). Numbers are accepted and returned as
    text."""
    for kind, key in sources:
        value = headers.get(key) if kind == "header" else body_path(body, key)
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            value = str(value)
        if isinstance(value, str) and value.strip():
            return value.strip(), f"{kind} {key}"
    return None


def resolve_call_id(headers: Mapping[str, str], body: Any, sources: Sequence[tuple[str, str]]) -> str | None:
    """The call id from the first of ``sources`` that has one, checked
    (:func:`check_call_id`, :class:`InvalidCallId`); ``None`` when none has one."""
    found = resolve_call_id_from(headers, body, sources)
    return check_call_id(*found) if found else None
