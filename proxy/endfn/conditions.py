"""``when:`` conditions on end-function steps (declarative, no code evaluated).

A condition is a :class:`~proxy.config.When`; every clause given must hold against
the step context (:meth:`~proxy.endfn.conversation.Conversation.context`):
``end_reason``, ``outcome_tags`` (see :mod:`proxy.calls.outcome`) and ``state``
(dotted paths).
"""

from __future__ import annotations

from typing import Any

from ..config import When
from ..core.call_id import body_path

__all__ = ["unmet"]


def unmet(when: When | None, ctx: dict[str, Any]) -> str | None:
    """The first clause of ``when`` that does not hold, as text for the job record;
    ``None`` when every clause holds (or there is no condition)."""
    if when is None:
        return None
    return _reason_unmet(when, ctx.get("end_reason")) or _tags_unmet(when, set(ctx.get("outcome_tags") or ())) or _state_unmet(
        when, ctx.get("state") or {}
    )


def _reason_unmet(when: When, reason: Any) -> str | None:
    if when.end_reason is not None and reason not in when.end_reason:
        return f"end_reason {reason!r} not in {when.end_reason}"
    if when.not_end_reason is not None and reason in when.not_end_reason:
        return f"end_reason {reason!r} is excluded"
    return None


def _tags_unmet(when: When, tags: set[str]) -> str | None:
    if when.outcome_tags_any is not None and not tags & set(when.outcome_tags_any):
        return f"none of the outcome tags {when.outcome_tags_any}"
    if when.outcome_tags_all is not None and not set(when.outcome_tags_all) <= tags:
        return f"not all of the outcome tags {when.outcome_tags_all}"
    if when.outcome_tags_none is not None and tags & set(when.outcome_tags_none):
        return f"an excluded outcome tag of {when.outcome_tags_none}"
    return None


def _state_unmet(when: When, state: dict[str, Any]) -> str | None:
    for key, value in (when.state or {}).items():
        if body_path(state, key) != value:
            return f"state.{key} != {value!r}"
    for key in when.state_set or ():
        if not body_path(state, key):
            return f"state.{key} is not set"
    return None
