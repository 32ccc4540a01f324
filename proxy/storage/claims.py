"""The loop every worker on claimed rows runs (end-function jobs, control-event
deliveries): claim what is due, then sleep until woken (:meth:`asyncio.Event.set`:
a NOTIFY, a kick, capacity freed) or until the next row falls due; a heartbeat
extends the leases of what is held meanwhile. A failed claim is logged and tried
again: the database stays the source of truth, the loop only polls it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

__all__ = ["claim_loop"]


async def claim_loop(
    dispatch: Callable[[], Awaitable[None]],
    wait_s: Callable[[], Awaitable[float]],
    heartbeat: Callable[[], Coroutine[Any, Any, None]],
    wake: asyncio.Event,
    what: str,
    log: logging.Logger,
    running: Callable[[], bool] = lambda: True,
) -> None:
    """Run until cancelled or ``running()`` is false. ``dispatch`` claims and starts
    what is due; ``wait_s`` says how long to sleep (s) when nothing wakes it;
    ``heartbeat`` runs beside it for as long as the loop does; ``what`` names the
    rows in the log line of a failed claim."""
    heart: asyncio.Task[None] = asyncio.get_running_loop().create_task(heartbeat())
    try:
        while running():
            try:
                await dispatch()
            except Exception:
                log.exception("claiming %s failed; trying again", what)
            sleep_s = await wait_s()  # before wake.wait() is made: a cancel here leaves no coroutine behind
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(sleep_s):  # not wait_for: on 3.11 it can swallow a cancel that meets a wake-up
                    await wake.wait()
            wake.clear()
    finally:
        heart.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heart
