"""What the scripted upstream answers, as data, and the bytes it writes.

A :class:`ScriptedReply` is one answer to ``POST /v1/chat/completions``: its status,
headers and content type; its pieces (reasoning, content and tool-call deltas, one
chat completion chunk each, or the raw bytes of a recorded stream split at byte
offsets); when they go (a delay before the head, the time to the first piece, the
interval between pieces, a :class:`Stall`); and how the stream ends (a finish
chunk, a usage chunk when the request asked for one, ``[DONE]``, an error event, or
a :class:`Cut`). A request that is not streamed (or ``whole=True``) gets one chat
completion. The shapes are OpenAI's (API reference, "The chat completion chunk
object" and "The chat completion object").

:meth:`ScriptedReply.body` encodes a streamed reply once (compact JSON, as
api.openai.com writes it) and keeps the bytes, so serving a piece costs one write.
Times are in seconds; :data:`FOREVER` waits until the upstream is released.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..core.json_codec import dumps

__all__ = ["DONE", "FOREVER", "Body", "Cut", "ScriptedReply", "Stall", "chunk_event", "completion", "error_body", "stream_body"]

FOREVER = math.inf  # a wait that ends only when the upstream is released (ScriptedUpstream.release)
DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class Stall:
    """Stop sending after ``after`` pieces (the role chunk is not one; ``after`` equal
    to the number of pieces: before the finish) for ``seconds`` (s; :data:`FOREVER`:
    until released). The next piece goes at the stall's end, the ones after it
    ``interval_s`` apart from there."""

    after: int
    seconds: float = FOREVER


@dataclass(frozen=True)
class Cut:
    """End the body early: after ``after`` pieces (nothing more: no finish, no
    ``[DONE]``) and/or after byte ``at_byte`` of the body as encoded (stamps not
    counted). ``close``: close the connection there, so the client sees a broken
    transfer; otherwise the body ends cleanly, just short."""

    after: int | None = None
    at_byte: int | None = None
    close: bool = False


@dataclass(frozen=True)
class Body:
    """A streamed reply's bytes: ``head`` goes with the response head, then each piece
    at its time, then ``tail``. A piece is kept as two parts: where a stamp goes
    between them (a content piece of a stamped reply: its content's start), else the
    whole piece and ``b""``."""

    head: bytes
    parts: tuple[tuple[bytes, bytes], ...]
    tail: bytes

    @property
    def pieces(self) -> tuple[bytes, ...]:
        """Each piece whole (unstamped)."""
        return tuple(a + b for a, b in self.parts)


@dataclass(frozen=True)
class ScriptedReply:
    """One answer. ``status`` other than 200: that status with ``error`` (default:
    OpenAI's error shape naming the upstream) or ``raw`` as the body, and ``headers``
    (``Retry-After``, ...). Otherwise a stream: the role chunk (``role``), then the
    pieces ``reasoning`` (``delta.reasoning_content``), ``content``, ``tool_calls``
    (``delta.tool_calls`` entries), one chunk each, or ``raw`` split at ``split_at``
    (byte offsets); then ``error_event`` (an SSE ``{"error": ...}`` event) or a chunk
    with ``finish_reason`` (``None``: no such chunk) and, when the request asked
    (``stream_options.include_usage``), a usage chunk; then ``[DONE]`` (``done``).

    Timing (s): ``head_delay_s`` before the head, ``ttft_s`` from the head to the
    first piece, ``interval_s`` between pieces (scheduled from the first, so there is
    no drift), a ``stall``, a ``cut``. ``stamp`` (benchmarks): each content piece
    starts with ``t<time.monotonic_ns() at send> `` and the first also with
    ``r<time.monotonic_ns() at arrival> `` (content pieces only: ``ValueError``
    with raw bytes, reasoning, tool calls or a cut). ``id``, ``model``, ``created`` (Unix s),
    ``fingerprint`` (``system_fingerprint``): the chunks' own fields.
    """

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None  # default: text/event-stream, application/json when whole
    error: Mapping[str, Any] | None = None
    reasoning: Sequence[str] = ()
    content: Sequence[str] = ()
    tool_calls: Sequence[Mapping[str, Any]] = ()
    raw: bytes | None = None
    split_at: Sequence[int] = ()
    finish_reason: str | None = "stop"
    usage: Mapping[str, Any] | None = None
    error_event: Mapping[str, Any] | None = None
    done: bool = True
    whole: bool = False  # one chat completion (JSON) even to a streamed request
    head_delay_s: float = 0.0
    ttft_s: float = 0.0
    interval_s: float = 0.0
    stall: Stall | None = None
    cut: Cut | None = None
    id: str = "chatcmpl-scripted"
    model: str = "scripted-1"
    created: int = 1727346168
    fingerprint: str | None = None
    role: bool = True
    stamp: bool = False

    def __post_init__(self) -> None:
        if self.stamp and (self.raw is not None or self.reasoning or self.tool_calls or self.cut is not None):
            raise ValueError("stamp: a reply of content pieces only (no raw, reasoning, tool_calls or cut)")

    def body(self, usage_asked: bool = False) -> Body:
        """The streamed bytes, encoded on first use and kept (with the usage chunk when
        ``usage_asked`` and there is ``usage``)."""
        return self._with_usage if usage_asked and self.usage is not None else self._plain

    @cached_property
    def _plain(self) -> Body:
        return _encode(self, False)

    @cached_property
    def _with_usage(self) -> Body:
        return _encode(self, True)


def _chunk(r: ScriptedReply, delta: Mapping[str, Any], finish: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": r.id, "object": "chat.completion.chunk", "created": r.created, "model": r.model}
    if r.fingerprint is not None:
        out["system_fingerprint"] = r.fingerprint
    out["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    return out


def _event(obj: Any) -> bytes:
    return b"data: " + dumps(obj) + b"\n\n"


def chunk_event(delta: Mapping[str, Any], finish_reason: str | None = None, reply: ScriptedReply = ScriptedReply()) -> bytes:
    """One SSE event (``data: {...}`` and a blank line) carrying one chat completion
    chunk with ``delta``, ``finish_reason`` and ``reply``'s id, model and created."""
    return _event(_chunk(reply, delta, finish_reason))


def _tail(r: ScriptedReply, usage: bool) -> bytes:
    if r.error_event is not None:
        out = _event({"error": r.error_event})
    else:
        out = _event(_chunk(r, {}, r.finish_reason)) if r.finish_reason is not None else b""
        if usage and r.usage is not None:
            head = {k: v for k, v in _chunk(r, {}).items() if k != "choices"}
            out += _event({**head, "choices": [], "usage": r.usage})
    return out + (DONE if r.done else b"")


_CONTENT_AT = b'"delta":{"content":"'


def _split(piece: bytes) -> tuple[bytes, bytes]:
    at = piece.find(_CONTENT_AT) + len(_CONTENT_AT)
    return piece[:at], piece[at:]


def _encode(r: ScriptedReply, usage: bool) -> Body:
    if r.raw is not None:
        edges = sorted({0, len(r.raw), *(p for p in r.split_at if 0 < p < len(r.raw))})
        head, pieces, tail = b"", [r.raw[a:b] for a, b in zip(edges, edges[1:])], b""
    else:
        deltas: list[dict[str, Any]] = [{"reasoning_content": p} for p in r.reasoning] + [{"content": p} for p in r.content]
        deltas += [{"tool_calls": [tc]} for tc in r.tool_calls]
        head = _event(_chunk(r, {"role": "assistant", "content": ""})) if r.role else b""
        pieces, tail = [_event(_chunk(r, d)) for d in deltas], _tail(r, usage)
    if r.cut is not None:
        head, pieces, tail = _cut(head, pieces, tail, r.cut)
    return Body(head, tuple(_split(p) if r.stamp else (p, b"") for p in pieces), tail)


def _cut(head: bytes, pieces: list[bytes], tail: bytes, cut: Cut) -> tuple[bytes, list[bytes], bytes]:
    if cut.after is not None:
        pieces, tail = pieces[: cut.after], b""
    if cut.at_byte is None:
        return head, pieces, tail
    left = cut.at_byte
    head = head[:left]
    left -= len(head)
    kept = []
    for piece in pieces:
        if left <= 0:
            break
        kept.append(piece[:left])
        left -= len(kept[-1])
    return head, kept, tail[: max(left, 0)]


def stream_body(reply: ScriptedReply, usage_asked: bool = False) -> bytes:
    """All the bytes a streamed ``reply`` writes (unstamped), in one: for sans-IO tests."""
    b = reply.body(usage_asked)
    return b.head + b"".join(b.pieces) + b.tail


def completion(reply: ScriptedReply) -> dict[str, Any]:
    """The reply as one non-streamed chat completion: its content joined, its
    tool-call deltas merged by index, ``usage`` when it has one."""
    calls: dict[int, dict[str, Any]] = {}
    for tc in reply.tool_calls:
        call = calls.setdefault(tc.get("index", 0), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
        call["id"] = call["id"] or tc.get("id")
        fn = tc.get("function", {})
        call["function"]["name"] = call["function"]["name"] or fn.get("name", "")
        call["function"]["arguments"] += fn.get("arguments", "")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(reply.content) or None}
    if reply.reasoning:
        message["reasoning_content"] = "".join(reply.reasoning)
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    out: dict[str, Any] = {
        "id": reply.id, "object": "chat.completion", "created": reply.created, "model": reply.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}],
    }
    if reply.usage is not None:
        out["usage"] = reply.usage
    return out


def error_body(reply: ScriptedReply, upstream: str) -> bytes:
    """An error answer's body: ``raw``, else ``error``, else OpenAI's error shape with
    the message ``"<upstream> says <status>"``."""
    if reply.raw is not None:
        return reply.raw
    error = reply.error or {"error": {"message": f"{upstream} says {reply.status}", "type": "scripted", "param": None, "code": None}}
    return dumps(error)
