"""Built-in end-function steps, one module each, and what they share.

A step runner is ``async run(cfg, conv, fx) -> StepResult``: ``cfg`` its config
model (:mod:`proxy.config`), ``conv`` the
:class:`~proxy.endfn.conversation.Conversation`, ``fx`` the
:class:`~proxy.endfn.effects.Effects` through which every side effect goes (real,
or a recorder in the sandbox), the :class:`~.result.StepResult` (``result``) what
one try came to. :data:`RUNNERS` maps each ``kind`` to its runner: ``webhook``,
``python``, ``summary``, ``outcome``, ``sms``, ``analytics``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..conversation import Conversation
from ..effects import Effects
from . import analytics, outcome, python, sms, summary, webhook
from .result import StepResult

__all__ = ["RUNNERS", "StepResult"]

# Each runner takes its own config model as `cfg` (WebhookStep, SmsStep, ...).
RUNNERS: dict[str, Callable[[Any, Conversation, Effects], Awaitable[StepResult]]] = {
    "webhook": webhook.run,
    "python": python.run,
    "summary": summary.run,
    "outcome": outcome.run,
    "sms": sms.run,
    "analytics": analytics.run,
}
