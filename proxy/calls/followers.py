"""Followers of a call's control events (``GET /v1/calls/{id}/events``): a wake-up
per subscriber, set when events of its call commit, here or on another instance (a
database notification). Followers re-read the database when woken, so a missed
wake-up only delays an event."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["Followers", "Signal"]


class Signal:
    """A follower's wake-up: set when events of its call commit."""

    __slots__ = ("key", "event")

    def __init__(self, key: str) -> None:
        self.key = key
        self.event = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        """``True`` when woken, ``False`` after ``timeout`` s; clears itself."""
        try:
            async with asyncio.timeout(timeout):  # wait_for on 3.11 can swallow a cancel
                await self.event.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self.event.clear()


class Followers:
    """Every subscriber of this process, by call record key. ``on_events``: called
    with each batch of events committed here (the webhook delivery's kick)."""

    def __init__(self) -> None:
        self._signals: dict[str, set[Signal]] = {}
        self.on_events: Callable[[list[dict[str, Any]]], None] | None = None

    def subscribe(self, key: str) -> Signal:
        """A wake-up for the events of the call ``key``; :meth:`unsubscribe` it after."""
        signal = Signal(key)
        self._signals.setdefault(key, set()).add(signal)
        return signal

    def unsubscribe(self, signal: Signal) -> None:
        """Drop a wake-up."""
        subs = self._signals.get(signal.key)
        if subs is not None:
            subs.discard(signal)
            if not subs:
                del self._signals[signal.key]

    def wake(self, key: str) -> None:
        """Events of ``key`` were committed (here, or by another instance)."""
        for signal in self._signals.get(key, ()):
            signal.event.set()

    def published(self, key: str, events: list[dict[str, Any]]) -> None:
        """Events of ``key`` committed here: wake its followers and the delivery."""
        self.wake(key)
        if self.on_events is not None and events:
            self.on_events(events)

    def after(self, key: str, fut: asyncio.Future[Any]) -> None:
        """Publish the events ``fut`` stores, once it has (its failure is logged by
        the store)."""

        def done(f: asyncio.Future[Any]) -> None:
            if not f.cancelled() and f.exception() is None:
                self.published(key, f.result())

        fut.add_done_callback(done)
