"""What one try of a step comes to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["StepResult"]


@dataclass(slots=True)
class StepResult:
    """``ok``; ``output`` (JSON-ready, visible to later steps); ``error``;
    ``response_code`` (HTTP, when the step made a request); ``retryable``: whether
    another try may succeed (a 4xx refusal will not)."""

    ok: bool
    output: Any = None
    error: str | None = None
    response_code: int | None = None
    retryable: bool = True
