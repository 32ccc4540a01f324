"""The end function: post-call steps, run once per call after it ended.

Steps come from ``end_function.steps`` and run in order:

* ``python``: ``module:function`` is imported and called with a
  :class:`Conversation` (as PolyAI's ``end_function(conv)``); sync functions run in
  a worker thread, async ones are awaited. A JSON-serializable return value is
  kept in the step result.
* ``webhook``: the call record (``GET /v1/calls/{id}``'s JSON) is POSTed to ``url``.

A failing step (exception, timeout, non-2xx answer) is logged with the call id and
recorded as ``failed`` with its error; it never affects the call or another step.
Each step result: ``{"name", "kind", "status": "ok"|"failed", "error", "duration_ms",
"http_status", "result"}``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from .calls import Call
from .config import PythonStep, WebhookStep
from .webhook import post_json

log = logging.getLogger("callgate.end_function")


@dataclass
class Conversation:
    """What a ``python`` step receives.

    ``transcript``: ``[{"role", "text"}]`` as spoken; ``events``: the control events
    as dicts; ``state``: what the call layer set (``POST /end`` ``state``);
    ``results``: the results of the steps that ran before this one, by name.
    """

    id: str
    state: dict[str, Any]
    transcript: list[dict[str, str]]
    events: list[dict[str, Any]]
    end_reason: str | None
    started_at: datetime
    ended_at: datetime | None
    record: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)


def load_function(spec: str) -> Callable[..., Any]:
    """Import ``module:function`` (dotted attribute path allowed after the colon)."""
    module_name, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{spec} is not callable")
    return obj


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


async def run_step(
    step: WebhookStep | PythonStep, call: Call, conv: Conversation, session: aiohttp.ClientSession
) -> dict[str, Any]:
    """Run one step; never raises (the outcome is in the returned result)."""
    started = time.perf_counter()
    result: dict[str, Any] = {"name": step.name, "kind": step.kind, "status": "ok", "error": None}
    try:
        if isinstance(step, PythonStep):
            fn = load_function(step.function)
            if inspect.iscoroutinefunction(fn):
                value = await asyncio.wait_for(fn(conv), step.timeout_s)
            else:
                value = await asyncio.wait_for(asyncio.to_thread(fn, conv), step.timeout_s)
                if inspect.isawaitable(value):
                    value = await asyncio.wait_for(value, step.timeout_s)
            result["result"] = _jsonable(value)
        else:
            delivery = await post_json(
                session, step.url, conv.record, headers=step.headers, timeout_s=step.timeout_s
            )
            result["http_status"] = delivery.status
            if not delivery.ok:
                result["status"], result["error"] = "failed", delivery.error
    except TimeoutError:
        result["status"], result["error"] = "failed", f"timed out after {step.timeout_s} s"
    except Exception as e:  # the user's code may raise anything
        result["status"], result["error"] = "failed", f"{type(e).__name__}: {e}"
    result["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
    if result["status"] != "ok":
        log.error("end function step failed call_id=%s step=%s error=%s", call.id, step.name, result["error"])
    return result


async def run_end_function(
    call: Call, steps: list[WebhookStep | PythonStep], session: aiohttp.ClientSession
) -> None:
    """Run every step in order, appending each result to ``call.end_function``."""
    if not steps:
        return
    record = call.to_record()
    conv = Conversation(
        id=call.id,
        state=call.state,
        transcript=record["transcript"],
        events=record["events"],
        end_reason=call.end_reason,
        started_at=call.started_at,
        ended_at=call.ended_at,
        record=record,
    )
    for step in steps:
        result = await run_step(step, call, conv, session)
        call.end_function.append(result)
        conv.results[step.name] = result.get("result")
