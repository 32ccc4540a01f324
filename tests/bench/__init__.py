"""Benchmarks (``make bench``); see README, Performance."""

from __future__ import annotations

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
