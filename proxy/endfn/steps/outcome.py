"""``outcome`` step: the call's outcome tags (:mod:`proxy.calls.outcome`: rules and
tags the model wrote in a command) plus the configured ``tags``."""

from __future__ import annotations

from ...calls.outcome import add_tags
from ...config import OutcomeStep
from ..conversation import Conversation
from ..effects import Effects
from .result import StepResult

__all__ = ["run"]


async def run(cfg: OutcomeStep, conv: Conversation, fx: Effects) -> StepResult:
    """Output ``{"tags": [...]}``: the call's outcome tags, then ``cfg.tags`` not yet among them."""
    tags = list(conv.outcome_tags)
    add_tags(tags, cfg.tags)
    return StepResult(ok=True, output={"tags": tags})
