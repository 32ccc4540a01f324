"""Twilio ConversationRelay (Telnyx mirrors its frames): the frames read into frozen
messages, the server's answers, the conversation callgate keeps, and the TwiML the
``<Connect action>`` URL answers.

Source: twilio.com/docs/voice/conversationrelay/websocket-messages and the TwiML
``<ConversationRelay>`` page, summarized in ``shared/reference/websocket-platforms.md``.
Twilio sends objects with ``type``: ``setup`` (first), ``prompt``, ``interrupt``,
``dtmf``, ``error``; the server sends ``text`` tokens (``last`` on the last of a
reply) and ``end`` with ``handoffData``, a JSON string Twilio gives back to the
action URL as the ``HandoffData`` form field. Twilio does not keep the conversation:
:class:`History` holds what the caller said and what they actually heard.
:func:`read` raises :class:`~proxy.core.frames.FrameError`; an unknown ``type`` is
an :class:`Unknown`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from .frames import FrameCode, FrameError, read_object, text_field

__all__ = [
    "Dtmf", "History", "Inbound", "Interrupt", "PlatformError", "Prompt", "Setup", "Unknown",
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


@dataclass(slots=True)
class History:
    """The conversation of one call as callgate keeps it: the caller's prompts (parts
    until ``last`` joined into one) and what the caller heard of each reply."""

    turns: list[dict[str, str]] = field(default_factory=list)
    _partial: list[str] = field(default_factory=list)

    def prompt(self, p: Prompt) -> str | None:
        """Take a prompt; the complete utterance once it is (``None`` while parts come)."""
        self._partial.append(p.voice_prompt)
        if not p.last:
            return None
        said = " ".join(part.strip() for part in self._partial if part.strip())
        self._partial.clear()
        self.turns.append({"role": "user", "content": said})
        return said

    def heard(self, spoken: str) -> None:
        """The caller heard ``spoken`` of the last reply (all of it, or up to an interruption)."""
        if spoken:
            self.turns.append({"role": "assistant", "content": spoken})

    def messages(self, system_prompt: str) -> list[dict[str, str]]:
        """The chat completion ``messages``: the system prompt (when not empty), then the conversation."""
        head = [{"role": "system", "content": system_prompt}] if system_prompt else []
        return head + [dict(t) for t in self.turns]
