"""What every front door's connection says to its session, and back (sans-IO).

A front door is a platform that calls an LLM server over a WebSocket of its own
protocol (Retell's custom LLM, Twilio/Telnyx ConversationRelay). Each protocol is a
sans-IO connection in :mod:`proxy.core` (:class:`~proxy.core.retell.RetellConnection`,
:class:`~proxy.core.conversation_relay.RelayConnection`) with the same two calls:

* ``receive(frame) -> list[DoorEvent]``: a text frame read into what the session
  does: :class:`Attach` (the socket is this call's), :class:`Details` (the call's
  numbers), :class:`StartTurn`, :class:`Cancel` (with what the caller heard),
  :class:`Answer` (a frame to send back at once: a pong), :class:`Ignore`,
  :class:`PlatformNote` (the platform reports an error of its own), :class:`LimitHit`
  (a bound was applied to what it sent), :class:`Refuse` (a frame callgate cannot
  read: close the socket with its code);
* ``send(event) -> list[dict]``: what the session says, as the platform's frames:
  :class:`SpeechOut`, :class:`TurnDone` (with the call control acted on),
  :class:`TurnFailed`;
* ``hello() -> list[dict]``: the frames the server sends first.

:class:`Transcript` is the conversation a platform does not keep itself (Twilio):
what the caller said and what they heard of each reply, rebuilt from the call's
turns when a socket reconnects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .frames import FrameCode

__all__ = [
    "Answer", "Attach", "Cancel", "Details", "DoorEvent", "DoorOut", "Ignore", "LimitHit", "PlatformNote", "Refuse", "SpeechOut",
    "StartTurn", "Transcript", "TurnDone", "TurnFailed",
]


@dataclass(frozen=True, slots=True)
class Attach:
    """The socket is the call ``call_id``'s; ``metadata``: what the platform told of it
    (``caller_number``, ``callee_number``: never used to authorize)."""

    call_id: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Details:
    """More of the call's metadata (its numbers)."""

    metadata: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class StartTurn:
    """Answer now: ``turn`` (the platform's id for the reply, or callgate's count),
    ``user_text`` (what the caller said last), ``messages`` (the conversation as the
    platform sent it; ``None``: the session's :class:`Transcript` holds it)."""

    turn: int
    user_text: str
    messages: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    """The reply in flight, or the last one, was cut: ``heard`` is what the caller
    heard of it (``None``: the platform did not say)."""

    heard: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """A frame to send back at once (a keep-alive's answer)."""

    frame: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Ignore:
    """A frame of a type callgate does not act on (counted, logged at debug)."""

    kind: str


@dataclass(frozen=True, slots=True)
class PlatformNote:
    """The platform reports an error of its own (logged)."""

    text: str


@dataclass(frozen=True, slots=True)
class Refuse:
    """A frame callgate cannot read: the socket closes with the code's close code."""

    code: FrameCode
    message: str


@dataclass(frozen=True, slots=True)
class LimitHit:
    """A bound of ``limits:`` was applied to what the platform sent (``limit``: its key)."""

    limit: str


DoorEvent = Attach | Details | StartTurn | Cancel | Answer | Ignore | PlatformNote | Refuse | LimitHit


@dataclass(frozen=True, slots=True)
class SpeechOut:
    """Speakable text of turn ``turn``, to say now."""

    turn: int
    text: str


@dataclass(frozen=True, slots=True)
class TurnDone:
    """Turn ``turn`` is complete; ``hangup`` / ``transfer_to`` (the callee): the call
    control acted on in it, with its control event's id."""

    turn: int
    hangup: str | None = None  # the hangup event's id
    transfer_to: str | None = None
    transfer_id: str | None = None


@dataclass(frozen=True, slots=True)
class TurnFailed:
    """Turn ``turn`` could not be answered (``kind``: the error's class name, for the platform's log)."""

    turn: int
    kind: str


DoorOut = SpeechOut | TurnDone | TurnFailed


@dataclass(slots=True)
class Transcript:
    """The conversation of one call as callgate keeps it: ``turns`` of
    ``{"role": "user" | "assistant", "content"}``, the caller's utterances and what
    they heard of each reply."""

    turns: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, turns: Iterable[tuple[str, str]]) -> Transcript:
        """Rebuilt from a call's turns, each ``(user_text, heard)``."""
        t = cls()
        for said, heard in turns:
            t.said(said)
            t.heard(heard)
        return t

    def said(self, text: str) -> None:
        """The caller said ``text``."""
        if text:
            self.turns.append({"role": "user", "content": text})

    def heard(self, text: str) -> None:
        """The caller heard ``text`` of the last reply."""
        if text:
            self.turns.append({"role": "assistant", "content": text})

    def heard_instead(self, text: str) -> None:
        """The caller heard only ``text`` of the last reply (cut after it was sent)."""
        last = self.turns[-1] if self.turns else None
        if last is not None and last["role"] == "assistant":
            if text:
                last["content"] = text
            else:
                self.turns.pop()
        else:
            self.heard(text)

    def messages(self, system_prompt: str) -> list[dict[str, str]]:
        """The chat completion ``messages``: the system prompt (when not empty), then the conversation."""
        head = [{"role": "system", "content": system_prompt}] if system_prompt else []
        return head + [dict(t) for t in self.turns]
