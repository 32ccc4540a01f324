"""Built-in end-function steps, one module each, and what they share.

A step runner is ``async run(cfg, conv, fx) -> StepResult``: ``cfg`` its config
model, ``conv`` the :class:`~proxy.end_function.Conversation`, ``fx`` the
:class:`~proxy.effects.Effects` through which every side effect goes (real, or a
recorder in the sandbox).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from . import analytics, outcome, python, sms, summary, webhook
from .result import StepResult

RUNNERS: dict[str, Callable[..., Awaitable[StepResult]]] = {
    "webhook": webhook.run,
    "python": python.run,
    "summary": summary.run,
    "outcome": outcome.run,
    "sms": sms.run,
    "analytics": analytics.run,
}

__all__ = ["RUNNERS", "StepResult", "Any"]
