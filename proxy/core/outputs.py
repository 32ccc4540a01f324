"""What the reply inspector hands on (sans-IO): typed, frozen outputs, and the stages
that take them.

:class:`~proxy.core.inspector.ReplyInspector` turns each SSE event of a streamed
chat completion into a list of outputs, in the order the runtime receives them:

* :class:`Forward`: a piece of the upstream's stream that goes on exactly as it came
  (``event.raw``), with the chunk's JSON it was read into (``chunk``; ``None`` for a
  comment, a keep-alive or ``[DONE]``), so nothing after it decodes it again;
* :class:`Rewrite`: a chunk the inspector changed (a command removed or rendered,
  thinking dropped): its new JSON object, encoded once by the SSE stage;
* :class:`Speech`: the speakable text choice 0 carried to the runtime in the
  chunks before it (what a voice runtime says; never thinking, never a command);
* :class:`CommandFound`: a control command of choice 0, valid or rejected, to act on.

The stages after it: :func:`encode` (the SSE encoder of the HTTP reply),
:func:`spoken` (the front doors' text), :func:`commands_of`, and :func:`continued`
(a continuation's outputs made part of the first attempt's stream). Format: the
OpenAI API reference's chat completion chunk, as Server-Sent Events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import json_codec
from .capped import CappedText
from .commands import AnyCommand
from .sse import DONE, SSEEvent

__all__ = [
    "DONE", "CommandFound", "Forward", "Output", "Rewrite", "Speech", "SpeechLog", "commands_of", "continued", "encode",
    "error_event", "finish", "spoken",
]


@dataclass(frozen=True, slots=True)
class Forward:
    """An SSE event sent as received (``event.raw``); ``chunk``: its decoded JSON, or
    ``None`` when it carries no JSON (a comment, ``[DONE]``)."""

    event: SSEEvent
    chunk: Any = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Rewrite:
    """A chunk sent as callgate wrote it: ``chunk`` (a chat completion chunk object),
    under the SSE ``event:`` ``name`` the upstream's event had (``None``: none)."""

    chunk: dict[str, Any] = field(compare=False)
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Speech:
    """Speakable text of choice 0 (chars), in the order the runtime receives it."""

    text: str


@dataclass(frozen=True, slots=True)
class CommandFound:
    """A control command of choice 0 (valid or rejected), to act on."""

    command: AnyCommand


Output = Forward | Rewrite | Speech | CommandFound


class SpeechLog(CappedText):
    """Choice 0's spoken text for the record (capped), each piece also handed to
    ``said`` (uncapped, emptied by the inspector after each event) for the
    :class:`~proxy.core.outputs.Speech` outputs."""

    __slots__ = ("said",)

    def __init__(self, limit: int, said: list[str]) -> None:
        super().__init__(limit)
        self.said = said

    def append(self, piece: str) -> None:
        """Record ``piece`` and hand it on."""
        if piece:
            self.said.append(piece)
        CappedText.append(self, piece)


def _chunk_bytes(item: Rewrite) -> bytes:
    head = b"event: " + item.name.encode() + b"\n" if item.name is not None else b""
    return head + b"data: " + json_codec.dumps(item.chunk) + b"\n\n"


def encode(items: Iterable[Output]) -> bytes:
    """The SSE bytes of ``items`` (speech and commands carry none): a forwarded
    event's own bytes, a rewritten chunk encoded as one ``data:`` line."""
    parts = []
    for item in items:
        kind = type(item)
        if kind is Forward:
            parts.append(item.event.raw)  # type: ignore[union-attr]
        elif kind is Rewrite:
            parts.append(_chunk_bytes(item))  # type: ignore[arg-type]
    return b"".join(parts)


def spoken(items: Iterable[Output]) -> str:
    """The speech among ``items``, joined."""
    return "".join(item.text for item in items if type(item) is Speech)


def commands_of(items: Iterable[Output]) -> list[AnyCommand]:
    """The commands among ``items``, in order."""
    return [item.command for item in items if type(item) is CommandFound]


def error_event(body: dict[str, Any]) -> bytes:
    """An SSE event carrying an OpenAI error object (``{"error": {...}}``), then ``[DONE]``."""
    return b"data: " + json_codec.dumps(body) + b"\n\n" + DONE


def finish(chunk_id: str | None) -> Rewrite:
    """A last chunk ending choice 0 with ``finish_reason: "stop"`` (``id``: ``chunk_id``),
    for a reply callgate ends itself."""
    return Rewrite({"id": chunk_id or "chatcmpl-callgate", "object": "chat.completion.chunk", "created": 0, "model": "",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})


def continued(items: Iterable[Output], chunk_id: str | None) -> list[Output]:
    """A continuation's outputs made part of the first attempt's stream: every chunk
    carries ``chunk_id`` (when known) and no ``role``; chunks left with nothing to say
    are dropped; comments, ``[DONE]``, speech and commands stay. Reads the chunks'
    decoded JSON: nothing is decoded again."""
    out: list[Output] = []
    for item in items:
        kind = type(item)
        if kind is Rewrite:
            obj: Any = item.chunk  # type: ignore[union-attr]
        elif kind is Forward and isinstance(item.chunk, dict):  # type: ignore[union-attr]
            obj = item.chunk  # type: ignore[union-attr]
        else:
            out.append(item)
            continue
        keep = _continued_choices(obj)
        if not keep and obj.get("usage") is None and obj.get("choices"):
            continue
        new = {**obj, "choices": keep} if "choices" in obj else dict(obj)
        if chunk_id is not None:
            new["id"] = chunk_id
        out.append(Rewrite(new, item.name if kind is Rewrite else item.event.event))  # type: ignore[union-attr]
    return out


def _continued_choices(obj: dict[str, Any]) -> list[Any]:
    keep = []
    for choice in obj.get("choices") or []:
        if not isinstance(choice, dict):
            keep.append(choice)
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict) and "role" in delta:
            delta = {k: v for k, v in delta.items() if k != "role"}
            choice = {**choice, "delta": delta}
        said = isinstance(delta, dict) and any(v not in (None, "", []) for v in delta.values())
        if said or choice.get("finish_reason") is not None:
            keep.append(choice)
    return keep
