"""``python`` step: the user's own ``end_function(conv)``, sync or async.

Sync functions run in a worker thread. A JSON-serializable return value becomes the
step's output (others are kept as their ``repr``). An exception fails the try.

The module is imported once per process, in a worker thread (its top level never
runs on the event loop), at the step's first try; a failed import is tried again at
the next try. A reload (SIGHUP) calls :func:`forget`: a module whose file changed
since it was imported is imported again (``importlib.reload``) at its step's next
try, so an edited end function takes effect without a restart; an unchanged one is
kept (a key rotation does not run a module's top level again). ``importlib.reload``'s
limits apply: the module's old globals stay unless it sets them again, and the
modules it imports are not imported again.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ...config import PythonStep
from ..conversation import Conversation
from ..effects import Effects
from .result import StepResult

__all__ = ["forget", "load_function", "run"]


class _Imported:
    """This process's step functions by spec, and what :func:`forget` marked to look at again."""

    def __init__(self) -> None:
        self.functions: dict[str, Callable[..., Any]] = {}  # read and written on the event loop
        self.generation = 0  # +1 on each forget: a load that began before it is not kept
        self.lock = threading.Lock()  # the rest, read and written by loads in worker threads
        self.stamps: dict[str, tuple[int, int] | None] = {}  # module -> its file's (mtime ns, bytes) when imported
        self.stale: set[str] = set()  # modules to look at again: imported again if their file changed


_IMPORTED = _Imported()


def _stamp(module: ModuleType) -> tuple[int, int] | None:
    path = getattr(module, "__file__", None)
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size) if st is not None else None


def _module(name: str) -> ModuleType:
    """``name`` imported (again, when :func:`forget` marked it and its file changed)."""
    with _IMPORTED.lock:
        module, stamps = sys.modules.get(name), _IMPORTED.stamps
        if module is None:
            module = importlib.import_module(name)
            stamps[name] = _stamp(module)
        elif name in _IMPORTED.stale and _stamp(module) != stamps.get(name):
            module = importlib.reload(module)
            stamps[name] = _stamp(module)
        stamps.setdefault(name, _stamp(module))  # imported before, by someone else
        _IMPORTED.stale.discard(name)
        return module


def forget() -> None:
    """A reload: each step's function is looked up again at its next try, its module
    imported again if its file changed (see the module docstring). On the event loop."""
    with _IMPORTED.lock:
        _IMPORTED.stale.update(_IMPORTED.stamps)
    _IMPORTED.functions.clear()
    _IMPORTED.generation += 1


def load_function(spec: str) -> Callable[..., Any]:
    """Import ``module:function`` (a dotted attribute path is allowed after the colon).
    Blocking (the module's top level runs): call it in a worker thread. Raises
    ``ImportError``/``AttributeError``/``TypeError``, and what the module raises."""
    module_name, _, attr = spec.partition(":")
    obj: Any = _module(module_name)
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
    fn = _IMPORTED.functions.get(cfg.function)
    if fn is None:
        generation = _IMPORTED.generation
        fn = await asyncio.to_thread(load_function, cfg.function)
        if generation == _IMPORTED.generation:  # no reload meanwhile
            _IMPORTED.functions[cfg.function] = fn
    if inspect.iscoroutinefunction(fn):
        value = await fn(conv)
    else:
        value = await asyncio.to_thread(fn, conv)
        if inspect.isawaitable(value):
            value = await value
    return StepResult(ok=True, output=_jsonable(value))
