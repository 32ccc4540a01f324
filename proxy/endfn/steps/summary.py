"""``summary`` step: a structured call summary written by an LLM.

Calls an OpenAI-compatible API through the official ``openai`` client
(``chat.completions.parse`` with :class:`CallSummary` as the structured output;
prompt in ``prompts/summary.md``). When the LLM cannot be reached or answers with
something unusable, a rule-based record is produced instead, marked
``"generated_by": "rules"`` with the reason.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from pydantic import BaseModel, Field

from ...config import SummaryStep
from ...prompts import prompts_dir
from ..conversation import Conversation
from ..effects import Effects
from .result import StepResult

__all__ = ["CallSummary", "rule_summary", "run", "transcript_text"]

log = logging.getLogger("callgate.steps.summary")


Resolution = Literal["resolved", "unresolved", "transferred", "abandoned"]


class CallSummary(BaseModel):
    """The summary the model is asked for (``response_format``, prompts/summary.md)."""

    summary: str = Field(description="two or three sentences on what happened in the call")
    topic: str = Field(description="the main topic, a few words")
    caller_intent: str = Field(description="what the caller wanted")
    sentiment: Literal["positive", "neutral", "negative", "mixed"]
    resolution: Resolution
    outcome_tags: list[str] = Field(description="short snake_case tags, e.g. lead_collected")
    follow_up_required: bool
    follow_up_time: str | None = Field(description="when to follow up (ISO 8601 or words), or null")


def transcript_text(conv: Conversation) -> str:
    """The model's input: ``role: text`` per turn, then the call's facts as JSON."""
    lines = [f"{t['role']}: {t['text']}" for t in conv.transcript]
    facts = {"end_reason": conv.end_reason, "outcome_tags": conv.outcome_tags, "state": conv.state,
             "events": [{k: v for k, v in e.items() if k in ("type", "callee", "endword", "reason")} for e in conv.events]}
    return "\n".join(lines) + "\n\nCall facts (JSON):\n" + json.dumps(facts, ensure_ascii=False, default=str)


def rule_summary(conv: Conversation, reason: str) -> dict[str, Any]:
    """The fallback: what can be said without a model."""
    users = [t["text"] for t in conv.transcript if t["role"] == "user"]
    agents = [t["text"] for t in conv.transcript if t["role"] == "assistant"]
    tags = conv.outcome_tags
    resolution: Resolution
    if "transferred" in tags:
        resolution = "transferred"
    elif "no_response" in tags or "user_hangup" in tags:
        resolution = "abandoned"
    elif "completed" in tags:
        resolution = "resolved"
    else:
        resolution = "unresolved"
    summary = CallSummary(
        summary=f"{len(users)} caller turn(s). First: {users[0][:200]!r}. Last reply: {agents[-1][:200]!r}." if users and agents else "No conversation recorded.",
        topic="unknown",
        caller_intent=users[0][:200] if users else "",
        sentiment="neutral",
        resolution=resolution,
        outcome_tags=list(tags),
        follow_up_required=resolution in ("unresolved", "abandoned"),
        follow_up_time=None,
    )
    return {**summary.model_dump(), "generated_by": "rules", "fallback_reason": reason}


async def run(cfg: SummaryStep, conv: Conversation, fx: Effects) -> StepResult:
    """Output a :class:`CallSummary` plus ``generated_by`` (``llm`` or ``rules``);
    the rules' summary (:func:`rule_summary`) when the model fails, so the step never fails."""
    client = fx.llm(cfg.llm)
    if client is None:
        return StepResult(ok=True, output=rule_summary(conv, "sandbox: no LLM call"))
    prompt = (prompts_dir() / "summary.md").read_text(encoding="utf-8")
    try:
        completion = await client.chat.completions.parse(
            model=cfg.llm.model,
            messages=[{"role": "system", "content": prompt}, {"role": "user", "content": transcript_text(conv)}],
            response_format=CallSummary,
        )
        parsed = completion.choices[0].message.parsed
        if parsed is None:
            raise ValueError("the model returned no parsable summary")
        return StepResult(ok=True, output={**parsed.model_dump(), "generated_by": "llm", "model": cfg.llm.model})
    except Exception as e:  # unreachable, timed out, refused, unparsable: fall back
        reason = f"{type(e).__name__}: {e}"[:500]
        log.warning("summary LLM failed, rule-based summary used call_id=%s error=%s", conv.id, reason)
        return StepResult(ok=True, output=rule_summary(conv, reason))
    finally:
        await client.close()
