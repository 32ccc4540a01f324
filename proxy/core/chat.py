"""A chat completion request, read (sans-IO): one call gives everything callgate
needs of it, checked.

:func:`read_chat` takes the raw body, the request's headers and the runtime
profile, and returns a frozen :class:`Chat`: the parsed body, the body for the
upstream (runtime-only fields taken out), the call's metadata, the call id, the last
user message, whether it streams. Format: the OpenAI API reference, "Create chat
completion". Errors: :class:`~proxy.core.json_body.BadBody` (``param`` names where,
``code``: ``invalid_request``, ``json_too_deep``, ``invalid_call_id``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .call_id import InvalidCallId
from .json_body import BadBody, check_depth, json_object
from .profile import NestedTooDeep, Profile

__all__ = ["Chat", "last_user_text", "read_chat"]


@dataclass(frozen=True, slots=True)
class Chat:
    """One chat completion request. ``upstream``: the body to send (``body`` itself
    when nothing was taken out); ``call_id``: ``None`` when the request names no
    call; ``user_text``: the last user message's text."""

    body: dict[str, Any] = field(hash=False)
    upstream: dict[str, Any] = field(hash=False)
    metadata: dict[str, Any] = field(hash=False)
    call_id: str | None
    user_text: str
    stream: bool


def last_user_text(messages: list[Any]) -> str:
    """The text of the last ``user`` message (text parts joined)."""
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(t for p in content if isinstance(p, dict) and isinstance(t := p.get("text"), str))
            return ""
    return ""


def read_chat(raw: bytes, headers: Mapping[str, str], profile: Profile, max_depth: int = 64) -> Chat:
    """The request, checked: a JSON object no deeper than ``max_depth`` with a
    non-empty ``messages`` array, metadata no deeper either, a call id callgate
    takes. Raises :class:`~proxy.core.json_body.BadBody`."""
    body = json_object(raw, max_depth)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadBody("'messages' is required and must be a non-empty array", "messages")
    try:
        upstream, metadata = profile.split(body, headers)
    except NestedTooDeep as e:
        raise BadBody(str(e), f"metadata.{e.field}", "json_too_deep") from None
    check_depth(metadata, max_depth, "metadata")  # JSON strings (userData) parsed
    try:
        call_id = profile.call_id_of(headers, body)
    except InvalidCallId as e:
        raise BadBody(str(e), e.source, "invalid_call_id") from None
    return Chat(body, upstream, metadata, call_id, last_user_text(messages), body.get("stream") is True)
