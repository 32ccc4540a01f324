"""Sideband server events of both APIs, read into frozen messages.

Sources: ``shared/reference/realtime-sip.md`` §4 (openai-python
``src/openai/types/realtime/*.py`` and ``types/live/*.py``; the server-events
reference pages). :func:`read` never raises: a frame that is not a JSON object is a
:class:`Malformed` (with the :class:`~proxy.core.frames.FrameCode` why), a type callgate
does not know an :class:`Unknown`, a known one it has nothing to do with an
:class:`Ignored`.

A *group* is what a function call belongs to and what completes it: a Realtime
response (``response_id``), or a Live delegation (``delegation_id``, whose
``response.event`` frames wrap the Responses stream of its backend).

=========================================  ==========================================
Realtime                                   message
=========================================  ==========================================
``session.created`` / ``.updated``         :class:`SessionInfo` (its model)
``response.created``                       :class:`GroupStarted` (``metadata.callgate``)
``response.output_item.done`` (function)   :class:`FunctionCall` (complete: status completed)
``response.done``                          :class:`GroupDone` (status, usage, its calls)
``input_audio_buffer.committed``           :class:`UserItem`
``…input_audio_transcription.completed``   :class:`CallerText` (``.failed``: empty text)
``response.output_audio_transcript.*``     :class:`ModelText` (``response.output_text.*`` too)
``output_audio_buffer.*``                  :class:`Playback` (started, stopped, cleared)
``conversation.item.truncated``            :class:`Truncated`
``error``                                  :class:`ServerError`
=========================================  ==========================================

=========================================  ==========================================
GPT-Live                                   message
=========================================  ==========================================
``session.started`` / ``.updated``         :class:`SessionInfo`
``response.event`` › ``response.output_item.done`` (function)  :class:`FunctionCall`
``response.event`` › ``response.completed`` / ``.incomplete`` / ``.failed`` / ``.cancelled``  :class:`GroupDone`
``session.input_transcript.delta``         :class:`CallerText`
``session.output_transcript.delta``        :class:`ModelText`
``session.output_audio.fixture.played``    :class:`FixturePlayed`
``session.usage.updated``                  :class:`SessionUsage` (cumulative seconds)
``session.closed``                         :class:`SessionClosed` (reason, seconds)
``error``                                  :class:`ServerError`
=========================================  ==========================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..frames import FrameCode, FrameError, read_object
from .api import Api
from .usage import TokenUsage

__all__ = [
    "CallerText", "FixturePlayed", "FunctionCall", "GroupDone", "GroupStarted", "Ignored", "Malformed", "ModelText",
    "Playback", "PlaybackState", "ServerEvent", "ServerError", "SessionClosed", "SessionInfo", "SessionUsage", "Truncated",
    "Unknown", "UserItem", "read",
]


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """The session as it runs: its ``model`` (empty when not said)."""

    model: str


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """A function call of ``group``, its arguments whole (a JSON string). ``complete``:
    its item says ``completed`` (an interrupted response's calls say otherwise)."""

    group: str
    call_id: str
    name: str
    arguments: str
    complete: bool = True


@dataclass(frozen=True, slots=True)
class GroupStarted:
    """A Realtime response began; ``tag``: its ``metadata.callgate`` (callgate's own
    responses carry one)."""

    group: str
    tag: str = ""


@dataclass(frozen=True, slots=True)
class GroupDone:
    """A response (Realtime) or a delegation's backend response (Live) ended:
    ``status`` ``completed`` | ``cancelled`` | ``failed`` | ``incomplete``; ``reason``:
    why not completed; ``usage`` its tokens; ``model`` (Live's backend says it);
    ``calls``: the function calls its output holds."""

    group: str
    status: str
    reason: str = ""
    usage: TokenUsage | None = None
    model: str = ""
    calls: tuple[FunctionCall, ...] = ()


@dataclass(frozen=True, slots=True)
class UserItem:
    """Realtime: the caller's audio was committed as ``item_id`` (an utterance)."""

    item_id: str


@dataclass(frozen=True, slots=True)
class CallerText:
    """What the caller said: a whole utterance's transcript (Realtime, ``item_id``
    set) or a piece of it (Live)."""

    text: str
    item_id: str = ""


@dataclass(frozen=True, slots=True)
class ModelText:
    """What the model said: a piece (``final`` false), or an item's whole transcript
    (``final``, Realtime's ``.done``)."""

    group: str
    item_id: str
    text: str
    final: bool = False


class PlaybackState(StrEnum):
    """Realtime's output audio buffer (SIP and WebRTC only)."""

    STARTED = "started"
    STOPPED = "stopped"  # drained: the caller heard it all
    CLEARED = "cleared"  # cut (a barge-in, or a clear)


@dataclass(frozen=True, slots=True)
class Playback:
    """The output audio of response ``group`` started, stopped or was cleared."""

    group: str
    state: PlaybackState


@dataclass(frozen=True, slots=True)
class Truncated:
    """Realtime cut the model's item ``item_id`` at ``audio_end_ms`` (what was heard)."""

    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class FixturePlayed:
    """Live played a recorded audio fixture to its end."""


@dataclass(frozen=True, slots=True)
class SessionUsage:
    """Live: the session's seconds so far (cumulative)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """Live: the session ended (``reason``: ``close_requested``, ``expired``,
    ``content``, ``remote_hangup``, ``connection_lost``); ``seconds`` its last usage."""

    reason: str
    seconds: float | None = None


@dataclass(frozen=True, slots=True)
class ServerError:
    """An ``error`` event; ``client_event_id``: the client event that failed."""

    code: str
    message: str
    client_event_id: str = ""


@dataclass(frozen=True, slots=True)
class Ignored:
    """A known event callgate has nothing to do with."""

    type: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """An event of a type callgate does not know (ignored and counted)."""

    type: str


@dataclass(frozen=True, slots=True)
class Malformed:
    """A frame that is not a JSON object, or an event without its type."""

    code: FrameCode
    detail: str


ServerEvent = (
    SessionInfo | FunctionCall | GroupStarted | GroupDone | UserItem | CallerText | ModelText | Playback | Truncated
    | FixturePlayed | SessionUsage | SessionClosed | ServerError | Ignored | Unknown | Malformed
)


def _s(obj: Any, *path: str) -> str:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj if isinstance(obj, str) else ""


def _f(obj: Any, *path: str) -> float | None:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return float(obj) if isinstance(obj, (int, float)) and not isinstance(obj, bool) and obj >= 0 else None


def _call(group: str, item: Any) -> FunctionCall | None:
    if not isinstance(item, dict) or item.get("type") != "function_call" or not _s(item, "call_id"):
        return None
    status = item.get("status")
    return FunctionCall(group, _s(item, "call_id"), _s(item, "name"), _s(item, "arguments"), status in (None, "completed"))


def _calls(group: str, output: Any) -> tuple[FunctionCall, ...]:
    found = (_call(group, item) for item in (output if isinstance(output, list) else ()))
    return tuple(c for c in found if c is not None)


# -- Realtime ---------------------------------------------------------------------------

def _rt_item_done(d: dict[str, Any]) -> ServerEvent:
    call = _call(_s(d, "response_id"), d.get("item"))
    return call if call is not None else Ignored(_s(d, "type"))


def _rt_done(d: dict[str, Any]) -> ServerEvent:
    r = d.get("response")
    r = r if isinstance(r, dict) else {}
    group = _s(r, "id")
    reason = _s(r, "status_details", "reason")
    return GroupDone(group, _s(r, "status") or "completed", reason, TokenUsage.from_realtime(r.get("usage")), "", _calls(group, r.get("output")))


def _rt_text(final: bool) -> Callable[[dict[str, Any]], ServerEvent]:
    def read(d: dict[str, Any]) -> ServerEvent:
        text = _s(d, "transcript") or _s(d, "text") if final else _s(d, "delta")
        return ModelText(_s(d, "response_id"), _s(d, "item_id"), text, final)

    return read


def _playback(state: PlaybackState) -> Callable[[dict[str, Any]], ServerEvent]:
    return lambda d: Playback(_s(d, "response_id"), state)


_RT: dict[str, Callable[[dict[str, Any]], ServerEvent]] = {
    "session.created": lambda d: SessionInfo(_s(d, "session", "model")),
    "session.updated": lambda d: SessionInfo(_s(d, "session", "model")),
    "response.created": lambda d: GroupStarted(_s(d, "response", "id"), _s(d, "response", "metadata", "callgate")),
    "response.output_item.done": _rt_item_done,
    "response.done": _rt_done,
    "input_audio_buffer.committed": lambda d: UserItem(_s(d, "item_id")),
    "conversation.item.input_audio_transcription.completed": lambda d: CallerText(_s(d, "transcript"), _s(d, "item_id")),
    "conversation.item.input_audio_transcription.failed": lambda d: CallerText("", _s(d, "item_id")),
    "response.output_audio_transcript.delta": _rt_text(False),
    "response.output_audio_transcript.done": _rt_text(True),
    "response.output_text.delta": _rt_text(False),
    "response.output_text.done": _rt_text(True),
    "output_audio_buffer.started": _playback(PlaybackState.STARTED),
    "output_audio_buffer.stopped": _playback(PlaybackState.STOPPED),
    "output_audio_buffer.cleared": _playback(PlaybackState.CLEARED),
    "conversation.item.truncated": lambda d: Truncated(_s(d, "item_id"), int(_f(d, "audio_end_ms") or 0)),
    "error": lambda d: ServerError(_s(d, "error", "code") or _s(d, "error", "type"), _s(d, "error", "message"), _s(d, "error", "event_id")),
}

_RT_KNOWN = frozenset({
    "conversation.created", "conversation.item.added", "conversation.item.created", "conversation.item.done",
    "conversation.item.deleted", "conversation.item.retrieved", "conversation.item.input_audio_transcription.delta",
    "conversation.item.input_audio_transcription.segment", "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped", "input_audio_buffer.cleared", "input_audio_buffer.timeout_triggered",
    "input_audio_buffer.dtmf_event_received", "response.output_item.added", "response.content_part.added",
    "response.content_part.done", "response.output_audio.delta", "response.output_audio.done",
    "response.function_call_arguments.delta", "response.function_call_arguments.done", "rate_limits.updated",
    "transcription_session.updated", "response.mcp_call_arguments.delta", "response.mcp_call_arguments.done",
})

# -- GPT-Live ---------------------------------------------------------------------------

_TERMINAL = {"response.completed": "completed", "response.done": "completed", "response.incomplete": "incomplete",
             "response.failed": "failed", "response.cancelled": "cancelled"}


def _live_wrapped(d: dict[str, Any]) -> ServerEvent:
    """A ``response.event``: the backend's Responses stream event inside it."""
    group, inner = _s(d, "delegation_id"), d.get("event")
    kind = _s(inner, "type")
    if kind == "response.output_item.done":
        call = _call(group, inner.get("item") if isinstance(inner, dict) else None)
        return call if call is not None else Ignored(f"response.event/{kind}")
    if kind in _TERMINAL:
        r = inner.get("response") if isinstance(inner, dict) else None
        r = r if isinstance(r, dict) else {}
        status = _s(r, "status") or _TERMINAL[kind]
        reason = _s(r, "incomplete_details", "reason") or _s(r, "error", "code")
        return GroupDone(group, status, reason, TokenUsage.from_responses(r.get("usage")), _s(r, "model"), _calls(group, r.get("output")))
    return Ignored(f"response.event/{kind}")


_LIVE: dict[str, Callable[[dict[str, Any]], ServerEvent]] = {
    "session.started": lambda d: SessionInfo(_s(d, "session", "model")),
    "session.updated": lambda d: SessionInfo(_s(d, "session", "model")),
    "response.event": _live_wrapped,
    "session.input_transcript.delta": lambda d: CallerText(_s(d, "delta")),
    "session.output_transcript.delta": lambda d: ModelText(_s(d, "delegation_id"), "", _s(d, "delta")),
    "session.output_audio.fixture.played": lambda d: FixturePlayed(),
    "session.usage.updated": lambda d: SessionUsage(_f(d, "usage", "seconds") or 0.0),
    "session.closed": lambda d: SessionClosed(_s(d, "reason") or "closed", _f(d, "usage", "seconds")),
    "error": lambda d: ServerError(_s(d, "error", "code"), _s(d, "error", "message"), _s(d, "error", "client_event_id")),
}

_LIVE_KNOWN = frozenset({
    "session.delegation.created", "info", "session.instructions.appended", "session.thinking.appended",
    "session.commentary.appended", "session.input_audio.muted", "session.input_audio.unmuted",
    "session.input_audio.append", "transport.dtmf.received", "transport.ringing", "transport.answered",
    "transport.failed", "session.output_audio.fixture.playing", "session.paused", "session.resumed",
})


def read(api: Api, frame: str | bytes, max_bytes: int = 16 << 20) -> ServerEvent:
    """One sideband frame as its message (see the module docstring); never raises."""
    try:
        data = read_object(frame, max_bytes)
    except FrameError as e:
        return Malformed(e.code, str(e))
    kind = data.get("type")
    if not isinstance(kind, str) or not kind:
        return Malformed(FrameCode.BAD_FIELD, "the event has no 'type'")
    parsers, known = (_LIVE, _LIVE_KNOWN) if api is Api.LIVE else (_RT, _RT_KNOWN)
    parse = parsers.get(kind)
    if parse is not None:
        return parse(data)
    return Ignored(kind) if kind in known else Unknown(kind)
