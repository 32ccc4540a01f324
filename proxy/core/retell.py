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

from .door import Answer, Attach, Cancel, Details, DoorEvent, DoorOut, Ignore, Refuse, SpeechOut, StartTurn, TurnDone, TurnFailed
from .frames import FrameCode, FrameError, read_object, text_field

__all__ = [
    "CallDetails", "Inbound", "PingPong", "ResponseRequired", "RetellConnection", "Unknown", "UpdateOnly", "Utterance",
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
    out += [{"role": _ROLES[u.role], "content": u.content} for u in transcript if u.role in _ROLES and u.content]
    return out


_ROLES = {"agent": "assistant", "user": "user"}


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


class RetellConnection:
    """One Retell socket, sans-IO (see :mod:`proxy.core.door`): the call is the path's
    ``call_id``; a ``response_required`` / ``reminder_required`` cancels the reply in
    flight (a newer ``response_id`` supersedes it: the caller spoke) and starts a turn
    on the transcript as Retell sent it."""

    def __init__(self, call_id: str, max_bytes: int) -> None:
        self.call_id, self.max_bytes = call_id, max_bytes

    def hello(self) -> list[dict[str, Any]]:
        """The server's first frame: the config (pings, the call's details)."""
        return [config_message()]

    def attach(self) -> Attach:
        """The call, known from the path."""
        return Attach(self.call_id)

    def receive(self, frame: str | bytes) -> list[DoorEvent]:
        """One frame from Retell."""
        try:
            msg = read(frame, self.max_bytes)
        except FrameError as e:
            return [Refuse(e.code, str(e))]
        if isinstance(msg, ResponseRequired):
            user = next((u.content for u in reversed(msg.transcript) if u.role == "user"), "")
            said = tuple((_ROLES[u.role], u.content) for u in msg.transcript if u.role in _ROLES and u.content)
            return [Cancel(), StartTurn(msg.response_id, user, said)]
        if isinstance(msg, CallDetails):
            return [Details(_numbers(msg.caller_number, msg.callee_number))]
        if isinstance(msg, PingPong):
            return [Answer(ping_pong(msg.timestamp))]
        if isinstance(msg, Unknown):
            return [Ignore(msg.interaction_type)]
        return []  # update_only: the transcript changed, nothing to answer

    def send(self, event: DoorOut) -> list[dict[str, Any]]:
        """What the session says, as ``response`` frames for the turn's ``response_id``."""
        if isinstance(event, SpeechOut):
            return [response(event.turn, event.text, complete=False)]
        if isinstance(event, TurnDone):
            return [response(event.turn, "", complete=True, end_call=event.hangup is not None, transfer_number=event.transfer_to)]
        assert isinstance(event, TurnFailed)
        return [response(event.turn, "", complete=True, end_call=True)]


def _numbers(caller: str, callee: str) -> dict[str, str]:
    return {k: v for k, v in (("caller_number", caller), ("callee_number", callee)) if v}
