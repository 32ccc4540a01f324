"""Benchmarks (``make bench``); see README, Performance."""

from __future__ import annotations

import json
import resource
from collections.abc import Coroutine
from typing import Any

from proxy.cli import run_event_loop


def run_process(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a benchmark process's main coroutine: file descriptor limit raised to the
    hard limit (1,000 streams need a few thousand sockets), uvloop when installed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return run_event_loop(coro)


def emit(result: Any, out: str | None) -> None:
    """A load generator's result as JSON: to the file ``out`` (a result over 64 KiB
    printed to a pipe the event loop made non-blocking comes out cut), else stdout."""
    text = json.dumps(result)
    if out:
        with open(out, "w") as f:
            f.write(text)
    else:
        print(text)


# -- request bodies ------------------------------------------------------------------------

# A voice agent's system prompt (about 4 KB), six tools and 20 turns of history: what a
# runtime resends every turn by the middle of a call.
_PROMPT = (
    "You are Maya, the scheduling assistant of Northside Dental. You speak with callers on the phone. "
    "Keep every answer short: one or two sentences, no lists, no markdown, plain words a voice can say. "
    "Confirm names, dates and times by repeating them. Never give medical advice; offer a call back from "
    "a dentist instead. Office hours are Monday to Friday, 8 am to 6 pm, and Saturday 9 am to 1 pm. "
) * 11
_TOOLS = [
    {"type": "function", "function": {
        "name": name, "description": f"{name.replace('_', ' ')} for the caller, as the office's calendar allows",
        "parameters": {"type": "object", "properties": {
            "patient_name": {"type": "string", "description": "full name as the caller spelled it"},
            "date": {"type": "string", "description": "ISO 8601 date"},
            "time": {"type": "string", "description": "24-hour HH:MM"},
            "reason": {"type": "string", "enum": ["checkup", "cleaning", "pain", "other"]},
        }, "required": ["patient_name"]},
    }}
    for name in ("book_appointment", "move_appointment", "cancel_appointment", "find_slots", "lookup_patient", "transfer_call")
]
_HISTORY = [
    m for i in range(20) for m in (
        {"role": "user", "content": f"Turn {i}: yes, I'd like to move my cleaning to a morning next week if there is one."},
        {"role": "assistant", "content": f"Turn {i}: I have Tuesday at nine or Thursday at ten thirty; which one suits you better?"},
    )
]


def chat_body(spec: dict[str, Any], *, real: bool) -> bytes:
    """A streaming chat completion request for the benchmark upstream: ``spec`` (its
    ``chunks``, ``interval_ms``, ``ttft_ms``, ``command``) travels in the last user
    message (``bench:{json}``; every proxy forwards messages as they are) and, for the
    small body, also as the top-level ``bench`` key. ``real``: the system prompt, six
    tools and 20 turns of history above (about 13 KB)."""
    last = {"role": "user", "content": "hello bench:" + json.dumps(spec, separators=(",", ":"))}
    if not real:
        return json.dumps({"model": "bench", "stream": True, "messages": [last], "bench": spec}).encode()
    return json.dumps({
        "model": "bench", "stream": True, "tools": _TOOLS,
        "messages": [{"role": "system", "content": _PROMPT}, *_HISTORY, last],
    }).encode()
