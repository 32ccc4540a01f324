"""Retell's custom LLM WebSocket protocol: its frames read into frozen messages, and
the server's answers.

Source: docs.retellai.com/api-references/llm-websocket and the demo server
RetellAI/retell-custom-llm-python-demo (``custom_types.py``), summarized in
``shared/reference/websocket-platforms.md``. Retell opens
``wss://{host}/{path}/{call_id}``; it sends objects with ``interaction_type``:
``call_details``, ``update_only``, ``response_required``, ``reminder_required``,
``ping_pong``. The server answers ``response`` objects for a ``response_id``; a
newer ``response_id`` supersedes an older one (the caller spoke again).
:func:`read` raises :class:`~proxy.core.frames.FrameError`; an unknown
``interaction_type`` is an :class:`Unknown` (ignored and counted by the server).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .frames import FrameCode, FrameError, read_object, text_field

__all__ = [
    "CallDetails", "Inbound", "PingPong", "ResponseRequired", "Unknown", "UpdateOnly", "Utterance",
    "config_message", "messages", "ping_pong", "read", "response",
]


@dataclass(frozen=True, slots=True)
class Utterance:
    """One transcript entry: ``role`` ``"agent"`` or ``"user"``, its ``content``."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class ResponseRequired:
    """Answer now (``reminder``: the caller has been silent, say something)."""

    response_id: int
    transcript: tuple[Utterance, ...]
    reminder: bool = False


@dataclass(frozen=True, slots=True)
class UpdateOnly:
    """The transcript changed; no answer is wanted."""

    transcript: tuple[Utterance, ...]


@dataclass(frozen=True, slots=True)
class CallDetails:
    """The call object (sent once, when the server's config asked for it), with its
    ``from_number`` and ``to_number`` (E.164, empty when absent)."""

    call: dict[str, Any]
    caller_number: str
    callee_number: str


@dataclass(frozen=True, slots=True)
class PingPong:
    """A keep-alive (``timestamp``: Retell's, in ms), answered in kind."""

    timestamp: int


@dataclass(frozen=True, slots=True)
class Unknown:
    """A frame of an ``interaction_type`` callgate does not know."""

    interaction_type: str


Inbound = ResponseRequired | UpdateOnly | CallDetails | PingPong | Unknown


def read(frame: str | bytes, max_bytes: int) -> Inbound:
    """One frame from Retell as its message. Raises :class:`~proxy.core.frames.FrameError`."""
    data = read_object(frame, max_bytes)
    kind = text_field(data, "interaction_type")
    if kind in ("response_required", "reminder_required"):
        rid = data.get("response_id")
        if not isinstance(rid, int) or isinstance(rid, bool):
            raise FrameError(FrameCode.BAD_FIELD, "'response_id' must be an integer")
        return ResponseRequired(rid, _transcript(data), reminder=kind == "reminder_required")
    if kind == "update_only":
        return UpdateOnly(_transcript(data))
    if kind == "call_details":
        call = data.get("call")
        if not isinstance(call, dict):
            raise FrameError(FrameCode.BAD_FIELD, "'call' must be an object")
        return CallDetails(call, text_field(call, "from_number"), text_field(call, "to_number"))
    if kind == "ping_pong":
        ts = data.get("timestamp")
        return PingPong(ts if isinstance(ts, int) and not isinstance(ts, bool) else 0)
    return Unknown(kind)


def _transcript(data: dict[str, Any]) -> tuple[Utterance, ...]:
    entries = data.get("transcript") or []
    if not isinstance(entries, list):
        raise FrameError(FrameCode.BAD_FIELD, "'transcript' must be a list")
    out = []
    for e in entries:
        if not isinstance(e, dict):
            raise FrameError(FrameCode.BAD_FIELD, "each transcript entry must be an object")
        out.append(Utterance(text_field(e, "role"), text_field(e, "content")))
    return tuple(out)


def messages(system_prompt: str, transcript: tuple[Utterance, ...]) -> list[dict[str, str]]:
    """The chat completion ``messages`` for a turn: the system prompt (when not empty),
    then the transcript as Retell sent it (agent -> assistant, user -> user; other roles
    and empty entries left out)."""
    out = [{"role": "system", "content": system_prompt}] if system_prompt else []
    roles = {"agent": "assistant", "user": "user"}
    out += [{"role": roles[u.role], "content": u.content} for u in transcript if u.role in roles and u.content]
    return out


def config_message(*, auto_reconnect: bool = True, call_details: bool = True) -> dict[str, Any]:
    """The server's first frame: ask for pings (auto-reconnect) and the call's details."""
    return {"response_type": "config", "config": {"auto_reconnect": auto_reconnect, "call_details": call_details}}


def response(
    response_id: int, content: str, *, complete: bool, end_call: bool = False, transfer_number: str | None = None,
) -> dict[str, Any]:
    """A ``response`` frame: ``content`` for ``response_id``; the last one of a reply has
    ``complete``; ``end_call`` hangs up and ``transfer_number`` (E.164) transfers once
    the content is spoken."""
    out: dict[str, Any] = {"response_type": "response", "response_id": response_id, "content": content, "content_complete": complete}
    if end_call:
        out["end_call"] = True
    if transfer_number:
        out["transfer_number"] = transfer_number
    return out


def ping_pong(timestamp: int) -> dict[str, Any]:
    """The answer to a ping."""
    return {"response_type": "ping_pong", "timestamp": timestamp}
