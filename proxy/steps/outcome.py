"""``outcome`` step: outcome tags from rules, plus tags the model wrote in a command.

Rule tags (sans-IO, :func:`rule_tags`): ``agent_hangup`` (the model hung up),
``user_hangup`` (the call layer reported the caller hanging up), ``transferred`` /
``failed_transfer``, ``no_response`` (the caller never said anything), ``idle_timeout``,
``completed`` (the agent ended the call without a transfer). A command attribute
``outcome="lead_collected"`` (or a tool-call argument ``outcome``; several separated by
commas) adds its tags, and so does a list in ``state.outcome_tags``.
"""

from __future__ import annotations

import re
from typing import Any

from .result import StepResult

USER_REASONS = ("caller", "user", "customer", "remote")


def _add(tags: list[str], *new: str) -> None:
    for t in new:
        t = t.strip()
        if t and t not in tags:
            tags.append(t)


def rule_tags(record: dict[str, Any]) -> list[str]:
    """Tags for a call record by the rules in the module docstring."""
    tags: list[str] = []
    reason = record.get("end_reason") or ""
    source = record.get("end_source") or ""
    events = record.get("events") or []
    state = record.get("state") or {}
    kinds = [e.get("type") for e in events]
    if reason == "agent_hangup":
        _add(tags, "agent_hangup")
    if source == "call_layer" and any(w in reason.lower() for w in USER_REASONS):
        _add(tags, "user_hangup")
    rejected_transfer = any(e.get("type") == "command.rejected" and e.get("function") == "transfer" for e in events)
    if "transfer" in kinds:
        if "fail" in reason.lower() or state.get("transfer_failed"):
            _add(tags, "failed_transfer")
        else:
            _add(tags, "transferred")
    if rejected_transfer:
        _add(tags, "failed_transfer")
    if reason == "idle_timeout":
        _add(tags, "idle_timeout")
    if not any(t.get("role") == "user" and t.get("text") for t in record.get("transcript") or []):
        _add(tags, "no_response")
    if reason == "agent_hangup" and "transfer" not in kinds:
        _add(tags, "completed")
    for e in events:
        attrs = e.get("attrs") or {}
        for key in ("outcome", "outcome_tags", "tags"):
            if attrs.get(key):
                _add(tags, *re.split(r"[,\s]+", str(attrs[key])))
    extra = state.get("outcome_tags")
    if isinstance(extra, list):
        _add(tags, *(str(t) for t in extra))
    return tags


async def run(cfg: Any, conv: Any, fx: Any) -> StepResult:
    tags = list(conv.outcome_tags)
    _add(tags, *cfg.tags)
    return StepResult(ok=True, output={"tags": tags})
