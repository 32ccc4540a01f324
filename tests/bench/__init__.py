"""Benchmarks (``make bench``); see README, Performance."""

from __future__ import annotations

import json
import resource
from collections.abc import Coroutine
from typing import Any

from proxy.cli import run_event_loop


def run_process(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a benchmark process's main coroutine: file descriptor limit raised to the
    hard limit (1,000 streams need a few thousand sockets), uvloop when installed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return run_event_loop(coro)


def emit(result: Any, out: str | None) -> None:
    """A load generator's result as JSON: to the file ``out`` (a result over 64 KiB
    printed to a pipe the event loop made non-blocking comes out cut), else stdout."""
    text = json.dumps(result)
    if out:
        with open(out, "w") as f:
            f.write(text)
    else:
        print(text)
