"""Sideband event scripts for the scripted OpenAI (:mod:`.scripted_openai`), both APIs,
and signed incoming-call webhooks.

Every event is written from ``shared/reference/realtime-sip.md`` (§1 the webhook
bodies and headers, §4 the server events, §7 the usage objects); the field names are
the reference's (openai-python's types). A script is a list of steps:

==================  =============================================================
:class:`Emit`       send a server event (or build it from the last client event)
:class:`Expect`     wait for the client to send an event of a type
:class:`Gate`       wait until the test opens the gate of that name
:class:`Pause`      wait that long (s)
:class:`Drop`       drop the socket without a close frame; the script goes on at the
                    next attach
:class:`CallerHangup`  the caller hangs up: Live ``session.closed``
                    (``remote_hangup``); Realtime: the socket drops and the call is gone
==================  =============================================================
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

__all__ = [
    "CallerHangup", "Drop", "Emit", "Expect", "Gate", "Pause", "Step", "incoming", "live_caller", "live_delegation",
    "live_says", "live_started", "live_usage", "rt_barge_in", "rt_closing_response", "rt_response", "rt_session",
    "rt_user", "signed",
]


@dataclass(frozen=True)
class Emit:
    """Send ``event`` (a dict, or a function of the last client event received; a string
    is sent as it is: a frame that is not JSON)."""

    event: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]] | str


@dataclass(frozen=True)
class Expect:
    """Wait (``timeout_s`` at most) for a client event of ``type``."""

    type: str
    timeout_s: float = 10.0


@dataclass(frozen=True)
class Gate:
    """Wait until the test opens the gate ``name``."""

    name: str


@dataclass(frozen=True)
class Pause:
    """Wait ``seconds``."""

    seconds: float


@dataclass(frozen=True)
class Drop:
    """Drop the socket (no close frame)."""


@dataclass(frozen=True)
class CallerHangup:
    """The caller hangs up."""


Step = Emit | Expect | Gate | Pause | Drop | CallerHangup

# -- the webhook ----------------------------------------------------------------------------


def incoming(api: str, call_id: str, caller: str = "+14255551212", callee: str = "+18005551212", kind: str = "") -> dict[str, Any]:
    """An incoming-call webhook body (reference §1): ``realtime.call.incoming`` with
    ``data.call_id``, or ``live.transport.incoming`` (``kind`` may say
    ``live.call.incoming``) with ``data.session_id``."""
    headers = [
        {"name": "From", "value": f'"Caller" <sip:{caller}@sip.example.com>;tag=9fxced76sl'},
        {"name": "To", "value": f"<sip:{callee}@sip.example.com>"},
        {"name": "Call-ID", "value": f"03782086-4ce9-44bf-8b2d-{call_id[-12:]:>012}"},
    ]
    if api == "realtime":
        data: dict[str, Any] = {"call_id": call_id, "sip_headers": headers}
        kind = kind or "realtime.call.incoming"
    else:
        kind = kind or "live.transport.incoming"
        data = {"session_id": call_id, "sip_headers": headers}
        if kind == "live.transport.incoming":
            data = {"type": "sip", **data}
    return {"object": "event", "id": f"evt_{call_id}", "type": kind, "created_at": int(time.time()), "data": data}


def signed(secret: str, body: dict[str, Any], msg_id: str, at: float | None = None) -> tuple[bytes, dict[str, str]]:
    """The raw body and the Standard Webhooks headers (``webhook-id``,
    ``webhook-timestamp``, ``webhook-signature``) signed with ``secret`` at ``at`` (Unix s)."""
    raw = json.dumps(body).encode()
    when = datetime.fromtimestamp(at if at is not None else time.time(), UTC)
    sig = Webhook(secret).sign(msg_id, when, raw)
    return raw, {
        "webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())), "webhook-signature": sig,
        "content-type": "application/json", "user-agent": "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)",
    }


# -- Realtime (reference §4 [RT]) -----------------------------------------------------------------


def rt_session(model: str = "gpt-realtime") -> list[Step]:
    """``session.created``."""
    return [Emit({"type": "session.created", "event_id": "event_1", "session": {"type": "realtime", "model": model}})]


def rt_user(item_id: str, text: str) -> list[Step]:
    """The caller's utterance: committed, then its transcript."""
    return [
        Emit({"type": "input_audio_buffer.speech_started", "audio_start_ms": 100, "item_id": item_id}),
        Emit({"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": None}),
        Emit({"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id, "content_index": 0,
              "transcript": text, "usage": {"type": "duration", "seconds": 2}}),
    ]


def _args(args: Any) -> str:
    return args if isinstance(args, str) else json.dumps(args)


def _usage(text_in: int = 20, audio_in: int = 80, cached: int = 10, text_out: int = 10, audio_out: int = 40) -> dict[str, Any]:
    return {
        "total_tokens": text_in + audio_in + text_out + audio_out, "input_tokens": text_in + audio_in, "output_tokens": text_out + audio_out,
        "input_token_details": {"text_tokens": text_in, "audio_tokens": audio_in, "image_tokens": 0, "cached_tokens": cached,
                                "cached_tokens_details": {"text_tokens": cached, "audio_tokens": 0, "image_tokens": 0}},
        "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
    }


def rt_response(
    rid: str, text: str = "", calls: Sequence[tuple[str, str, Any]] = (), status: str = "completed",
    audio: bool = True, stop: bool = True, reason: str | None = None,
) -> list[Step]:
    """One response ``rid``: audio started, its transcript, its function calls
    (``(call_id, name, arguments)``, arguments as JSON unless given as a string; each
    item ``completed`` unless ``status`` says otherwise), ``response.done`` with usage, and (``stop``) its audio drained."""
    item = f"item_{rid}"
    steps: list[Step] = [Emit({"type": "response.created", "response": {"id": rid, "status": "in_progress", "output": []}})]
    if audio and text:
        steps += [
            Emit({"type": "output_audio_buffer.started", "response_id": rid}),
            Emit({"type": "response.output_audio_transcript.delta", "response_id": rid, "item_id": item, "output_index": 0, "content_index": 0, "delta": text}),
            Emit({"type": "response.output_audio_transcript.done", "response_id": rid, "item_id": item, "output_index": 0, "content_index": 0, "transcript": text}),
        ]
    items = []
    for i, (call_id, name, args) in enumerate(calls, 1):
        fc = {"id": f"fc_{call_id}", "type": "function_call", "call_id": call_id, "name": name, "arguments": _args(args),
              "status": "completed" if status == "completed" else "incomplete"}
        items.append(fc)
        steps += [
            Emit({"type": "response.function_call_arguments.done", "response_id": rid, "item_id": fc["id"], "output_index": i,
                  "call_id": call_id, "name": name, "arguments": fc["arguments"]}),
            Emit({"type": "response.output_item.done", "response_id": rid, "output_index": i, "item": fc}),
        ]
    done = {"id": rid, "status": status, "status_details": {"reason": reason} if reason else None, "output": items, "usage": _usage()}
    steps.append(Emit({"type": "response.done", "response": done}))
    if audio and text and stop:
        steps.append(Emit({"type": "output_audio_buffer.stopped", "response_id": rid}))
    return steps


def rt_closing_response(rid: str, text: str, play_s: float = 0.3) -> list[Step]:
    """callgate's closing response: after its ``response.create``, ``response.created``
    echoing the request's ``metadata``, the words, ``response.done``, and the audio
    drained ``play_s`` later (playback lags generation over SIP)."""

    def created(last: dict[str, Any]) -> dict[str, Any]:
        meta = (last.get("response") or {}).get("metadata")
        return {"type": "response.created", "response": {"id": rid, "status": "in_progress", "metadata": meta, "output": []}}

    return [
        Expect("response.create"), Emit(created), Emit({"type": "output_audio_buffer.started", "response_id": rid}),
        Emit({"type": "response.output_audio_transcript.done", "response_id": rid, "item_id": f"item_{rid}", "transcript": text}),
        Emit({"type": "response.done", "response": {"id": rid, "status": "completed", "output": [], "usage": _usage(0, 0, 0, 5, 20)}}),
        Pause(play_s), Emit({"type": "output_audio_buffer.stopped", "response_id": rid}),
    ]


def rt_barge_in(rid: str, audio_end_ms: int) -> list[Step]:
    """The caller speaks over response ``rid``: its audio cleared, its item truncated."""
    return [
        Emit({"type": "input_audio_buffer.speech_started", "audio_start_ms": 5000, "item_id": "item_barge"}),
        Emit({"type": "output_audio_buffer.cleared", "response_id": rid}),
        Emit({"type": "conversation.item.truncated", "item_id": f"item_{rid}", "content_index": 0, "audio_end_ms": audio_end_ms}),
    ]


# -- GPT-Live (reference §4 [Live]) -----------------------------------------------------------------


def live_started(model: str = "gpt-live-1") -> list[Step]:
    """``session.started``."""
    return [Emit({"type": "session.started", "event_id": "ev_1", "session": {"id": "s", "model": model, "status": "active"}})]


def live_caller(text: str) -> list[Step]:
    """The caller's words, as input transcript pieces (one per word)."""
    return [Emit({"type": "session.input_transcript.delta", "delta": w, "start_ms": 0, "end_ms": 0}) for w in _pieces(text)]


def live_says(text: str) -> list[Step]:
    """The model's words, as output transcript pieces (one per word)."""
    return [Emit({"type": "session.output_transcript.delta", "delta": w, "start_ms": 0, "end_ms": 0}) for w in _pieces(text)]


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


def live_delegation(
    did: str, calls: Sequence[tuple[str, str, Any]] = (), status: str = "completed", model: str = "gpt-5-mini",
) -> list[Step]:
    """A delegation ``did`` whose backend calls functions: ``session.delegation.created``,
    the Responses stream wrapped in ``response.event`` (``response.created`` with an
    empty output, ``response.output_item.done`` per call, then ``response.completed``
    or, for another ``status``, ``response.incomplete``)."""
    wrap = lambda e: {"type": "response.event", "delegation_id": did, "event": e}  # noqa: E731
    steps: list[Step] = [
        Emit({"type": "session.delegation.created", "offset_ms": 1000, "delegation": {"id": did, "type": "delegation", "target": "responses"}}),
        Emit(wrap({"type": "response.created", "response": {"id": f"resp_{did}", "status": "in_progress", "output": []}})),
    ]
    items = []
    for call_id, name, args in calls:
        item = {"type": "function_call", "id": f"fc_{call_id}", "call_id": call_id, "name": name, "arguments": _args(args),
                "status": "completed" if status == "completed" else "incomplete"}
        items.append(item)
        steps.append(Emit(wrap({"type": "response.output_item.done", "output_index": len(items) - 1, "item": item})))
    kind = "response.completed" if status == "completed" else "response.incomplete"
    usage = {"input_tokens": 300, "output_tokens": 40, "input_tokens_details": {"cached_tokens": 100}, "total_tokens": 340}
    steps.append(Emit(wrap({"type": kind, "response": {"id": f"resp_{did}", "status": status, "model": model, "output": items, "usage": usage}})))
    return steps


def live_usage(seconds: float) -> list[Step]:
    """``session.usage.updated`` (cumulative seconds)."""
    return [Emit({"type": "session.usage.updated", "usage": {"seconds": seconds}})]
