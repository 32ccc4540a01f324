"""``python`` step: the user's own ``end_function(conv)``, sync or async.

Sync functions run in a worker thread. A JSON-serializable return value becomes the
step's output (others are kept as their ``repr``). An exception fails the try.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
from collections.abc import Callable
from typing import Any

from ...config import PythonStep
from ..conversation import Conversation
from ..effects import Effects
from .result import StepResult

__all__ = ["load_function", "run"]


def load_function(spec: str) -> Callable[..., Any]:
    """Import ``module:function`` (a dotted attribute path is allowed after the colon).
    Raises ``ImportError``/``AttributeError``/``TypeError``."""
    module_name, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{spec} is not callable")
    return obj


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


async def run(cfg: PythonStep, conv: Conversation, fx: Effects) -> StepResult:
    """Call ``cfg.function(conv)`` (see the module docstring); its return value is the
    output. Raises what the function raises (the try fails and is retried)."""
    fn = load_function(cfg.function)
    if inspect.iscoroutinefunction(fn):
        value = await fn(conv)
    else:
        value = await asyncio.to_thread(fn, conv)
        if inspect.isawaitable(value):
            value = await value
    return StepResult(ok=True, output=_jsonable(value))
