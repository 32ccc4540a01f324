"""A chat completion request as the relay takes it: one frozen value, read once.

:func:`read_chat_request` reads the body (``server.max_body_bytes``), checks it in
the sans-IO core (:func:`proxy.core.chat.read_chat`: JSON, ``messages``, metadata
depth, call id), and makes the bytes for the upstream: the body as it came, unless
runtime-only fields were taken out or ``commands.inject_prompt`` /
``inject_tools`` add to it. Errors: 400/413 in OpenAI's shape (the middleware), 404
for an unknown profile.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ...core.chat import Chat, read_chat
from ...core.function_map import FunctionMap
from ...core.profile import Profile
from ...prompts import inject_prompt, inject_tools, instructions
from ..auth import key_of
from ..bodies import body_checked, read_body
from ..services import Services

__all__ = ["ChatRequest", "read_chat_request"]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat completion request: the checked ``chat``, the ``upstream`` bytes to
    send and ``upstream_body``, the same parsed (the body is parsed once: every
    attempt starts from these), the runtime ``profile``, the ``owner`` (the key's
    name, when keys are set) and ``started`` (``perf_counter()`` once the request was read)."""

    chat: Chat = field(hash=False)
    upstream: bytes
    upstream_body: dict[str, Any] = field(hash=False)
    profile: Profile = field(hash=False)
    owner: str | None
    started: float

    @property
    def stream(self) -> bool:
        """Whether the runtime asked for a stream."""
        return self.chat.stream


async def read_chat_request(request: web.Request, s: Services) -> ChatRequest:
    """The request, read and checked; see the module docstring."""
    profile = s.profile(request)
    raw = await read_body(request, s.config.server.max_body_bytes)
    chat = body_checked(lambda: read_chat(raw, request.headers, profile, s.config.server.max_json_depth))
    key = key_of(request)
    upstream, body = _upstream_body(s, profile, raw, chat)
    return ChatRequest(chat, upstream, body, profile, key.name if key else None, time.perf_counter())


def _upstream_body(s: Services, profile: Profile, raw: bytes, chat: Chat) -> tuple[bytes, dict[str, Any]]:
    """The body to send upstream, as bytes and parsed: the bytes as they came, unless
    runtime-only fields were taken out or prompts and tools are injected."""
    cc = s.config.commands
    if chat.upstream is chat.body and not (cc.inject_prompt or cc.inject_tools):
        return raw, chat.body
    upstream: dict[str, Any] = dict(chat.upstream)  # the parsed body stays as the runtime sent it
    upstream["messages"] = [dict(m) if isinstance(m, dict) else m for m in upstream.get("messages") or []]
    if cc.inject_prompt:
        inject_prompt(upstream, instructions(cc.prompt_language, cc.hangup_tag, cc.transfer_tag))
    if cc.inject_tools:
        inject_tools(upstream, FunctionMap(profile.settings.function_map))
    return json.dumps(upstream, ensure_ascii=False).encode(), upstream
