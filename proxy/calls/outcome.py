"""Outcome rules: tags for an ended call, from its record (sans-IO).

Rule tags: ``agent_hangup`` (the model hung up), ``user_hangup`` (the call layer
reported the caller hanging up), ``transferred`` / ``failed_transfer``,
``no_response`` (the caller never said anything), ``idle_timeout``, ``completed``
(the agent ended the call without a transfer). A command attribute
``outcome="lead_collected"`` (or a tool-call argument ``outcome``; several
separated by commas) adds its tags, and so does a list in ``state.outcome_tags``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["USER_REASONS", "add_tags", "rule_tags"]

USER_REASONS = ("caller", "user", "customer", "remote")


def add_tags(tags: list[str], new: Iterable[str]) -> None:
    """Append the stripped, non-empty tags of ``new`` not in ``tags`` yet."""
    for t in new:
        t = t.strip()
        if t and t not in tags:
            tags.append(t)


def rule_tags(record: dict[str, Any]) -> list[str]:
    """Tags for a call record by the rules in the module docstring."""
    tags: list[str] = []
    add_tags(tags, _end_tags(record))
    add_tags(tags, _transfer_tags(record))
    if record.get("end_reason") == "idle_timeout":
        add_tags(tags, ["idle_timeout"])
    if not any(t.get("role") == "user" and t.get("text") for t in record.get("transcript") or []):
        add_tags(tags, ["no_response"])
    kinds = {e.get("type") for e in record.get("events") or []}
    if record.get("end_reason") == "agent_hangup" and "transfer" not in kinds:
        add_tags(tags, ["completed"])
    add_tags(tags, _written_tags(record))
    return tags


def _end_tags(record: dict[str, Any]) -> list[str]:
    """Who ended the call: the agent or the caller."""
    reason = record.get("end_reason") or ""
    tags = []
    if reason == "agent_hangup":
        tags.append("agent_hangup")
    if record.get("end_source") == "call_layer" and any(w in reason.lower() for w in USER_REASONS):
        tags.append("user_hangup")
    return tags


def _transfer_tags(record: dict[str, Any]) -> list[str]:
    """``transferred`` or ``failed_transfer``."""
    events = record.get("events") or []
    reason = (record.get("end_reason") or "").lower()
    state = record.get("state") or {}
    tags = []
    if any(e.get("type") == "transfer" for e in events):
        tags.append("failed_transfer" if "fail" in reason or state.get("transfer_failed") else "transferred")
    if any(e.get("type") == "command.rejected" and e.get("function") == "transfer" for e in events):
        tags.append("failed_transfer")
    return tags


def _written_tags(record: dict[str, Any]) -> list[str]:
    """Tags the model wrote in a command, and ``state.outcome_tags``."""
    tags: list[str] = []
    for e in record.get("events") or []:
        attrs = e.get("attrs") or {}
        for key in ("outcome", "outcome_tags", "tags"):
            if attrs.get(key):
                tags += re.split(r"[,\s]+", str(attrs[key]))
    extra = (record.get("state") or {}).get("outcome_tags")
    if isinstance(extra, list):
        tags += [str(t) for t in extra]
    return tags
