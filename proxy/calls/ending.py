"""A call's end: ending once, the goodbye window after a hangup, state patches.

:meth:`Ending.act` carries out what a move of the call's state machine asks
(:class:`~proxy.core.lifecycle.Action`): start or cancel the goodbye window, end the
call. The end itself (:meth:`Ending.end`) is one transaction: the call marked
ended, its ``call.ended`` event and the end function's jobs, committed before it
returns, after the call's earlier writes (the storage orders a call's writes). A
failed write leaves the call as it was (``END_FAILED``); the sweep tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..core.lifecycle import Action, CallEvent, CallState
from ..metrics import CALLS_ENDED, CONTROL_EVENTS, end_reason_label, labelled
from ..storage import Store, ops
from .cache import CallCache
from .events import CallEndedEvent
from .followers import Followers
from .model import Call, EndReason
from .tasks import Background

__all__ = ["Ending"]

log = logging.getLogger("callgate.calls")


class Ending:
    """See the module docstring. ``steps``: the end function's ``(name, kind,
    after)``, written as jobs when a call ends; ``deliver``: queue the event for the
    webhook; ``after_hangup_s``: the goodbye window (s); ``on_end``: called after
    each end (wakes the end function)."""

    def __init__(
        self,
        store: Store,
        cache: CallCache,
        followers: Followers,
        background: Background,
        *,
        after_hangup_s: float,
        steps: Iterable[tuple[str, str, list[str]]] = (),
        deliver: bool = False,
    ) -> None:
        self.store = store
        self.cache = cache
        self.followers = followers
        self.background = background
        self.after_hangup_s = after_hangup_s
        self.steps = list(steps)
        self.deliver = deliver
        self.on_end: Callable[[], None] | None = None
        self._windows: dict[str, asyncio.TimerHandle] = {}
        self._ending: dict[str, asyncio.Future[bool]] = {}  # record key -> its end being written

    def window_running(self, call: Call) -> bool:
        """Whether ``call``'s goodbye window is running."""
        return call.key in self._windows

    def act(self, call: Call, actions: tuple[Action, ...], reason: str = EndReason.AGENT_HANGUP, source: str | None = None,
            state: Mapping[str, Any] | None = None, *, if_detached: bool = False, grouped: bool = False) -> asyncio.Future[bool] | None:
        """Carry out ``actions`` for ``call``; an asked end is written with ``reason``
        and ``source`` (the hangup's, by default) and returned as a future
        (``if_detached``: only while a front door's socket for it stays closed;
        ``grouped``: nobody waits for it, so it shares a group commit with the writes
        queued around it rather than waking the writer at once)."""
        ended = None
        for action in actions:
            if action is Action.CANCEL_WINDOW:
                self._cancel_window(call)
            elif action is Action.START_WINDOW:
                self._start_window(call)
            else:
                ended = self._write_end(call, reason, source or call.hangup_source or "text_command", state, if_detached, grouped)
        return ended

    async def end(self, call: Call, reason: str, source: str, state: Mapping[str, Any] | None = None,
                  event: CallEvent = CallEvent.END_ASKED, *, if_detached: bool = False) -> bool:
        """End ``call`` once (``event``: ``END_ASKED`` or ``LIMITS_REACHED``):
        ``call.ended`` and the end function's jobs are committed before this returns
        ``True``; ``False`` when it had already ended (or another end of it is being
        written: this waits for that one), or, ``if_detached``, a front door's socket
        for it opened again (on any instance)."""
        if call.state is CallState.ENDED:
            return False
        running = self._ending.get(call.key)
        ended = self.act(call, call.move(event), reason, source, state, if_detached=if_detached)
        if ended is None:
            if running is not None:
                await asyncio.shield(running)
            return False
        return await ended

    def end_soon(self, call: Call, reason: str, source: str) -> None:
        """End ``call`` (as :meth:`end`, ``grouped``) without waiting: the write is kept
        by the background tasks, its failure logged (a call without an id, after its reply)."""
        if call.state is CallState.ENDED:
            return
        ended = self.act(call, call.move(CallEvent.END_ASKED), reason, source, grouped=True)
        if ended is not None:
            self.background.keep(ended)

    async def end_key(self, key: str, reason: str, source: str, *, if_detached: bool = False) -> bool:
        """End the call with record key ``key`` (the sweep; the call may not be in memory)."""
        call = self.cache.get(key, exact=True)
        if call is None:
            row = await self.store.read(ops.find_call, key, True)
            if row is None:
                return False
            call = Call.from_record(row)
        return await self.end(call, reason, source, if_detached=if_detached)

    def ended_elsewhere(self, key: str) -> None:
        """Another instance ended the call ``key``: this one forgets it."""
        call = self.cache.get(key, exact=True)
        if call is not None:
            self.act(call, call.move(CallEvent.ENDED_ELSEWHERE))
            self.cache.forget(call)

    async def patch_state(self, call: Call, patch: Mapping[str, Any]) -> dict[str, Any] | None:
        """RFC 7386 merge patch into the call's ``state``; the new state, or ``None``
        when the call has ended."""
        state: dict[str, Any] | None = await self.store.write(ops.patch_state, call.key, patch, time.time(), order_key=call.key)
        self.cache.touch(call)
        return state

    def stop_windows(self) -> None:
        """Cancel every goodbye window (the process stops; the sweep of the next
        start, or another instance, ends those calls)."""
        for timer in self._windows.values():
            timer.cancel()
        self._windows.clear()

    # -- internals -------------------------------------------------------------------------

    def _write_end(
        self, call: Call, reason: str, source: str, state: Mapping[str, Any] | None, if_detached: bool = False, grouped: bool = False,
    ) -> asyncio.Future[bool]:
        fut = asyncio.ensure_future(self._commit_end(call, reason, source, state, if_detached, grouped))
        self._ending[call.key] = fut
        fut.add_done_callback(lambda f: self._ending.pop(call.key, None) if self._ending.get(call.key) is f else None)
        return fut

    async def _commit_end(
        self, call: Call, reason: str, source: str, state: Mapping[str, Any] | None, if_detached: bool = False, grouped: bool = False,
    ) -> bool:
        event = CallEndedEvent(call_id=call.call_id, generation=call.generation, source=source, reason=str(reason))  # type: ignore[arg-type]
        write = self.store.submit if grouped else self.store.write  # both resolve after the commit
        try:
            stored = await write(
                ops.end_call, call.key, event.model_dump(mode="json"), state, self.steps, self.deliver, time.time(),
                if_detached=if_detached, order_key=call.key,
            )
        except BaseException:
            call.move(CallEvent.END_FAILED)
            raise
        self.cache.forget(call)
        if stored is None:  # ended by someone else meanwhile
            call.move(CallEvent.ENDED_ELSEWHERE)
            return False
        call.move(CallEvent.END_WRITTEN)
        log.info("call ended call_id=%s generation=%d reason=%s source=%s", call.call_id, call.generation, reason, source)
        labelled(CALLS_ENDED, end_reason_label(str(reason))).inc()
        labelled(CONTROL_EVENTS, "call.ended").inc()
        self.followers.published(call.key, [stored])
        if self.on_end is not None and self.steps:  # jobs were queued: the end function looks for them
            self.on_end()
        return True

    def _start_window(self, call: Call) -> None:
        """No reply of the hung-up call is in flight: it ends once no request has come
        for ``after_hangup_s`` (at once when that is 0)."""
        self._cancel_window(call)
        loop = asyncio.get_running_loop()
        self._windows[call.key] = loop.call_later(max(self.after_hangup_s, 0.0), self._window_elapsed, call)

    def _window_elapsed(self, call: Call) -> None:
        self._windows.pop(call.key, None)
        if call.ended:
            return
        ended = self.act(call, call.move(CallEvent.WINDOW_ELAPSED), EndReason.AGENT_HANGUP)
        if ended is not None:
            self.background.keep(ended)

    def _cancel_window(self, call: Call) -> None:
        timer = self._windows.pop(call.key, None)
        if timer is not None:
            timer.cancel()
