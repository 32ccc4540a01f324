"""The body of the accept (and reject) REST call.

Source: ``shared/reference/realtime-sip.md`` §2 (reference pages
``live/subresources/sessions/methods/accept``, openai-python
``types/live/session_accept_params.py``, ``types/realtime/call_accept_params.py``).

* Realtime: the session object itself, flat: ``{"type": "realtime", "model", "instructions",
  "audio": {...}, "tools": [...], ...}``. Input transcription is off unless asked
  for, so callgate asks for it (``audio.input.transcription``, default model
  :data:`TRANSCRIPTION_MODEL`) when the configured session does not: without it there
  is no caller transcript.
* Live: ``{"session": {"type": "live", "model", "instructions", "audio",
  "delegation": {"type": "responses", "responses": {"model", "instructions",
  "tools": [...]}}}}``: the voice model delegates to a Responses model, which calls
  the tools.

``voice`` at the top of the configured session is a shorthand for
``audio.output.voice`` (where both APIs read it).

The tools added are the FunctionMap's (the hangup and transfer functions, named by
their MatchFunction), given in the chat completions shape (``{"type": "function",
"function": {"name", "description", "parameters"}}``, as ``prompts/tools.json``
holds them) and written in the Realtime/Responses shape (``{"type": "function",
"name", "description", "parameters"}``). A tool of the same name in the configured
session is kept as configured.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from .api import Api

__all__ = ["TRANSCRIPTION_MODEL", "accept_body", "function_tools", "reject_body"]

TRANSCRIPTION_MODEL = "gpt-4o-transcribe"


def function_tools(chat_tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Chat completions tool definitions in the Realtime/Responses shape (others
    dropped)."""
    out = []
    for tool in chat_tools:
        fn = tool.get("function")
        if tool.get("type") != "function" or not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
            continue
        entry: dict[str, Any] = {"type": "function", "name": fn["name"]}
        for key in ("description", "parameters"):
            if key in fn:
                entry[key] = copy.deepcopy(fn[key])
        out.append(entry)
    return out


def _with_tools(existing: Any, tools: Sequence[Mapping[str, Any]]) -> list[Any]:
    """``existing`` (a list, or nothing) and the ``tools`` whose name it lacks."""
    have = list(existing) if isinstance(existing, list) else []
    names = {t.get("name") for t in have if isinstance(t, Mapping)}
    return have + [dict(t) for t in tools if t.get("name") not in names]


def _dict(parent: dict[str, Any], key: str) -> dict[str, Any]:
    """``parent[key]`` as a dict (made when it is missing or not one)."""
    value = parent.get(key)
    if not isinstance(value, dict):
        value = parent[key] = {}
    return value


def accept_body(api: Api, session: Mapping[str, Any], tools: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The accept body: ``session`` (the configured one, copied) with ``tools`` (Realtime/
    Responses shape, :func:`function_tools`) added (see the module docstring)."""
    s: dict[str, Any] = copy.deepcopy(dict(session))
    voice = s.pop("voice", None)
    if isinstance(voice, str):  # the shorthand: both APIs take it as audio.output.voice
        _dict(_dict(s, "audio"), "output").setdefault("voice", voice)
    if api is Api.REALTIME:
        s = {"type": "realtime", **s}
        if tools:
            s["tools"] = _with_tools(s.get("tools"), tools)
        audio_in = _dict(_dict(s, "audio"), "input")
        if not audio_in.get("transcription"):
            audio_in["transcription"] = {"model": TRANSCRIPTION_MODEL}
        return s
    s = {"type": "live", **s}
    delegation = _dict(s, "delegation")
    delegation.setdefault("type", "responses")
    if delegation["type"] == "responses" and tools:
        responses = _dict(delegation, "responses")
        responses["tools"] = _with_tools(responses.get("tools"), tools)
    return {"session": s}


def reject_body(status_code: int) -> dict[str, int]:
    """``{"status_code": status_code}`` (a SIP status, 300-699; required by Live)."""
    return {"status_code": status_code}
