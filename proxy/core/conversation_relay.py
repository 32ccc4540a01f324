"""Twilio ConversationRelay (Telnyx mirrors its frames): the frames read into frozen
messages, the server's answers, the conversation callgate keeps, and the TwiML the
``<Connect action>`` URL answers.

Source: twilio.com/docs/voice/conversationrelay/websocket-messages and the TwiML
``<ConversationRelay>`` page, summarized in ``shared/reference/websocket-platforms.md``.
Twilio sends objects with ``type``: ``setup`` (first), ``prompt``, ``interrupt``,
``dtmf``, ``error``; the server sends ``text`` tokens (``last`` on the last of a
reply) and ``end`` with ``handoffData``, a JSON string Twilio gives back to the
action URL as the ``HandoffData`` form field. Twilio does not keep the conversation:
:class:`~proxy.core.door.Transcript` holds what the caller said and what they
actually heard. :class:`RelayConnection` is the socket's sans-IO connection.
:func:`read` raises :class:`~proxy.core.frames.FrameError`; an unknown ``type`` is
an :class:`Unknown`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from .door import (
    Attach, Cancel, DoorEvent, DoorOut, Ignore, LimitHit, PlatformNote, Refuse, SpeechOut, StartTurn, TurnFailed,
)
from .frames import FrameCode, FrameError, read_object, text_field

__all__ = [
    "Dtmf", "Inbound", "Interrupt", "PlatformError", "Prompt", "RelayConnection", "Setup", "Unknown",
    "end", "read", "text", "twiml",
]


@dataclass(frozen=True, slots=True)
class Setup:
    """The session's first frame: ``call_sid`` (the call's id), the numbers, the
    ``custom_parameters`` of the TwiML."""

    session_id: str
    call_sid: str
    caller_number: str
    callee_number: str
    direction: str
    custom_parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Prompt:
    """What the caller said (``last``: the utterance is complete)."""

    voice_prompt: str
    lang: str
    last: bool


@dataclass(frozen=True, slots=True)
class Interrupt:
    """The caller spoke over the agent, who had been heard up to ``heard``
    (``duration_ms``: how long it had spoken)."""

    heard: str
    duration_ms: int | None


@dataclass(frozen=True, slots=True)
class Dtmf:
    """A key pressed."""

    digit: str


@dataclass(frozen=True, slots=True)
class PlatformError:
    """Twilio reports an error of its own."""

    description: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """A frame of a ``type`` callgate does not know."""

    type: str


Inbound = Setup | Prompt | Interrupt | Dtmf | PlatformError | Unknown


def read(frame: str | bytes, max_bytes: int) -> Inbound:
    """One frame from Twilio as its message. Raises :class:`~proxy.core.frames.FrameError`."""
    data = read_object(frame, max_bytes)
    kind = text_field(data, "type")
    if kind == "setup":
        params = data.get("customParameters") or {}
        if not isinstance(params, dict):
            raise FrameError(FrameCode.BAD_FIELD, "'customParameters' must be an object")
        setup = Setup(
            text_field(data, "sessionId"), text_field(data, "callSid"), text_field(data, "from"), text_field(data, "to"),
            text_field(data, "direction"), params,
        )
        if not (setup.call_sid or setup.session_id):
            raise FrameError(FrameCode.BAD_FIELD, "a setup needs 'callSid' or 'sessionId'")
        return setup
    if kind == "prompt":
        return Prompt(text_field(data, "voicePrompt"), text_field(data, "lang"), data.get("last", True) is not False)
    if kind == "interrupt":
        ms = data.get("durationUntilInterruptMs")
        return Interrupt(text_field(data, "utteranceUntilInterrupt"), ms if isinstance(ms, int) and not isinstance(ms, bool) else None)
    if kind == "dtmf":
        return Dtmf(text_field(data, "digit"))
    if kind == "error":
        return PlatformError(text_field(data, "description"))
    return Unknown(kind)


def text(token: str, last: bool) -> dict[str, Any]:
    """A ``text`` frame: ``token`` to speak; ``last`` on the reply's last one."""
    return {"type": "text", "token": token, "last": last}


def end(handoff: dict[str, Any]) -> dict[str, Any]:
    """The ``end`` frame; ``handoff`` (``{"reasonCode": "hangup" | "transfer", …}``)
    travels as the JSON string ``handoffData``."""
    return {"type": "end", "handoffData": json.dumps(handoff, ensure_ascii=False)}


def twiml(handoff_data: str | None) -> str:
    """The TwiML for the action URL from the ``HandoffData`` form field: a transfer
    dials its callee (``<Response><Dial>callee</Dial></Response>``); anything else,
    or data that is not callgate's, hangs up (``<Response><Hangup/></Response>``)."""
    try:
        data = json.loads(handoff_data) if handoff_data else None
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("reasonCode") == "transfer" and isinstance(data.get("callee"), str) and data["callee"]:
        return f"<Response><Dial>{escape(data['callee'])}</Dial></Response>"
    return "<Response><Hangup/></Response>"


class RelayConnection:
    """One ConversationRelay socket, sans-IO (see :mod:`proxy.core.door`): ``setup``
    names the call (a second one is ignored; frames before it have no call); a
    ``prompt``'s parts are joined until ``last`` (cut at ``max_prompt_chars``), then
    the reply in flight is cancelled and a turn starts; ``interrupt`` cancels the
    reply in flight, or corrects the last one, with ``utteranceUntilInterrupt``."""

    def __init__(self, max_bytes: int, max_prompt_chars: int = 32_768) -> None:
        self.max_bytes, self.max_prompt_chars = max_bytes, max_prompt_chars
        self.call_id: str | None = None
        self._partial: list[str] = []
        self._partial_chars = 0
        self._turns = 0

    def hello(self) -> list[dict[str, Any]]:
        """Nothing: Twilio speaks first."""
        return []

    def receive(self, frame: str | bytes) -> list[DoorEvent]:
        """One frame from Twilio."""
        try:
            msg = read(frame, self.max_bytes)
        except FrameError as e:
            return [Refuse(e.code, str(e))]
        if isinstance(msg, Setup):
            if self.call_id is not None:
                return [Ignore("setup")]  # a second setup: the session has its call
            self.call_id = msg.call_sid or msg.session_id
            numbers = (("caller_number", msg.caller_number), ("callee_number", msg.callee_number))
            return [Attach(self.call_id, {k: v for k, v in numbers if v})]
        if isinstance(msg, Prompt):
            return self._prompt(msg) if self.call_id is not None else [Ignore("prompt")]  # a prompt before setup has no call
        if isinstance(msg, Interrupt):
            return [Cancel(msg.heard or None)]
        if isinstance(msg, PlatformError):
            return [PlatformNote(msg.description)]
        if isinstance(msg, Unknown):
            return [Ignore(msg.type)]
        return []  # a key pressed: nothing to answer

    def _prompt(self, p: Prompt) -> list[DoorEvent]:
        """A prompt's part; the turn once the utterance is complete."""
        out: list[DoorEvent] = []
        room = self.max_prompt_chars - self._partial_chars
        piece = p.voice_prompt
        if len(piece) > room:
            piece = piece[: max(room, 0)]
            if room >= 0:
                out.append(LimitHit("max_prompt_chars"))
        self._partial.append(piece)
        self._partial_chars += len(piece) + 1
        if not p.last:
            return out
        said = " ".join(part.strip() for part in self._partial if part.strip())
        self._partial.clear()
        self._partial_chars = 0
        self._turns += 1
        return [*out, Cancel(), StartTurn(self._turns, said)]

    def send(self, event: DoorOut) -> list[dict[str, Any]]:
        """What the session says: ``text`` tokens, the last with ``last: true``, then
        ``end`` with ``handoffData`` for a hangup (``reasonCode: "hangup"``) or a
        transfer (``"transfer"``, the callee), or for a turn that failed (``"error"``)."""
        if isinstance(event, SpeechOut):
            return [text(event.text, False)]
        if isinstance(event, TurnFailed):
            return [end({"reasonCode": "error", "error": event.kind})]
        out = [text("", True)]
        if event.transfer_to is not None:
            out.append(end({"reasonCode": "transfer", "callee": event.transfer_to, "event_id": event.transfer_id}))
        elif event.hangup is not None:
            out.append(end({"reasonCode": "hangup", "event_id": event.hangup}))
        return out
