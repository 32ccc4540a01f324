"""``when:`` conditions on end-function steps (sans-IO, declarative, no code evaluated).

A condition is a :class:`~proxy.config.When`; every clause given must hold against
the step context: ``end_reason``, ``outcome_tags`` (rule-based tags, see
:mod:`proxy.steps.outcome`) and ``state`` (dotted paths).
"""

from __future__ import annotations

from typing import Any

from .call_id import body_path
from .config import When


def check(when: When | None, ctx: dict[str, Any]) -> str | None:
    """``None`` when ``when`` holds (or is absent); otherwise the first clause that
    failed, as text for the job record."""
    if when is None:
        return None
    reason = ctx.get("end_reason")
    tags = set(ctx.get("outcome_tags") or ())
    state = ctx.get("state") or {}
    if when.end_reason is not None and reason not in when.end_reason:
        return f"end_reason {reason!r} not in {when.end_reason}"
    if when.not_end_reason is not None and reason in when.not_end_reason:
        return f"end_reason {reason!r} is excluded"
    if when.outcome_tags_any is not None and not tags & set(when.outcome_tags_any):
        return f"none of the outcome tags {when.outcome_tags_any}"
    if when.outcome_tags_all is not None and not set(when.outcome_tags_all) <= tags:
        return f"not all of the outcome tags {when.outcome_tags_all}"
    if when.outcome_tags_none is not None and tags & set(when.outcome_tags_none):
        return f"an excluded outcome tag of {when.outcome_tags_none}"
    for key, value in (when.state or {}).items():
        if body_path(state, key) != value:
            return f"state.{key} != {value!r}"
    for key in when.state_set or ():
        if not body_path(state, key):
            return f"state.{key} is not set"
    return None
