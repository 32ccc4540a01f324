"""``analytics`` step: one transaction record per call, shaped like Parloa's hangup
transaction (``transactionId``, ``requestTimestamp``, ``responseTime``,
``userContextId``, ``requesterId``, ``intent``, ``meta``, ``platform``, ``request``
with ``callMeta`` and ``event: "HANGUP"``, ``response``), with callgate's additions
under ``callgate`` (who ended the call, end reason, outcome tags, duration, turns).
Sent to ``url`` or appended to the JSONL file ``path``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ... import __version__
from ...config import AnalyticsStep
from ...outbound import encode_json
from ..conversation import Conversation
from ..effects import Effects
from .result import StepResult

__all__ = ["ended_by", "run", "transaction"]


def ended_by(conv: Conversation) -> str:
    """``agent`` (the model hung up), ``caller`` (reported by the call layer as the
    caller's), or ``system`` (idle timeout, errors, anything else)."""
    if conv.end_reason == "agent_hangup":
        return "agent"
    if "user_hangup" in conv.outcome_tags:
        return "caller"
    return "system"


def transaction(conv: Conversation) -> dict[str, Any]:
    """The call's transaction record (the shape in the module docstring; times in ms)."""
    record = conv.record
    started, ended = conv.started_at, conv.ended_at
    duration_ms = round((ended - started).total_seconds() * 1000) if isinstance(started, datetime) and isinstance(ended, datetime) else None
    turns = record.get("turns") or []
    meta = conv.metadata
    caller = meta.get("caller_number") or meta.get("callerNumber", "")
    call_meta = {
        "instanceId": meta.get("runtime_call_id") or meta.get("instanceId", conv.id),
        "callId": conv.id,
        "callerId": caller,
        "calleeId": meta.get("callee_number") or meta.get("calleeNumber", ""),
        "sessionId": meta.get("channelId", conv.id),
    }
    errors = [t.get("error") for t in turns if t.get("error")]
    return {
        "transactionId": conv.idempotency_key,
        "requestTimestamp": record.get("ended_at"),
        "responseTime": (turns[-1].get("duration_ms") if turns else None),
        "userContextId": conv.id,
        "releaseId": f"callgate-{__version__}",
        "requesterId": caller,
        "intent": {"name": "CALLGATE.EndConversation", "handled": "locally", "explicitlyHandled": conv.end_reason != "idle_timeout"},
        "meta": {"errors": {"occurrences": len(errors), "affectedSteps": errors}, "warnings": {"occurrences": 0, "affectedSteps": []}},
        "variables": [{"name": k, "value": v} for k, v in conv.state.items() if k != "tool_calls"],
        "platform": "phone",
        "request": {"callMeta": call_meta, "event": "HANGUP"},
        "response": {"callControlMessages": [e for e in conv.events if e.get("type") in ("hangup", "transfer")], "callMeta": call_meta},
        "callgate": {
            "endedBy": ended_by(conv),
            "endReason": conv.end_reason,
            "outcomeTags": conv.outcome_tags,
            "durationMs": duration_ms,
            "turns": len(turns),
            "startedAt": record.get("started_at"),
            "endedAt": record.get("ended_at"),
        },
    }


async def run(cfg: AnalyticsStep, conv: Conversation, fx: Effects) -> StepResult:
    """Append the call's :func:`transaction` to ``cfg.path`` (JSONL) or POST it to
    ``cfg.url`` (the config holds exactly one); output ``{path | status, transactionId}``."""
    tx = transaction(conv)
    if cfg.path:
        await fx.append_jsonl(cfg.path, tx)
        return StepResult(ok=True, output={"path": cfg.path, "transactionId": tx["transactionId"]})
    assert cfg.url is not None  # AnalyticsStep._target: one of the two
    headers = {"Content-Type": "application/json", "Idempotency-Key": conv.idempotency_key, **cfg.headers}
    d = await fx.post(cfg.url, encode_json(tx), headers, cfg.timeout_s)
    return StepResult(ok=d.ok, error=d.error, response_code=d.status, retryable=d.retryable, output={"status": d.status, "transactionId": tx["transactionId"]})
