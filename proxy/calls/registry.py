"""The call registry: the one facade the server calls for every call's lifecycle.

It holds the call domain's parts and hands each request to the one that owns it:

=============  ==============================================================
``cache``      the calls in memory (LRU, generations, ownership)
``turns``      begin a turn, its commands as control events, finish it; limits
``ending``     end once, the goodbye window, state patches
``sweeper``    heartbeat, recovery, due ends, retention
``followers``  SSE wake-ups
``tasks``      the background work, drained on stop
=============  ==============================================================

The database is the source of truth. One hangup per call is decided twice, on
purpose: by :meth:`CallRegistry.hangup_policy`, which the reply inspector asks the
moment it finds a hangup (the call's state machine refuses a second one, so this
process never speaks it), and by a unique index in the database, which holds
across processes (the loser's event is stored as ``command.rejected``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..config import LimitsConfig
from ..core.analyzer import HangupPolicy
from ..core.commands import AnyCommand, RejectReason
from ..core.lifecycle import CallEvent
from ..storage import Store, ops
from .cache import CallCache
from .ending import Ending
from .events import ControlEvent
from .followers import Followers, Signal
from .model import Call, Turn, TurnOutcome
from .sweeper import Sweeper
from .tasks import Background
from .turns import Turns

__all__ = ["CallRegistry", "OneHangupPerCall", "Signal"]


class OneHangupPerCall:
    """The hangup policy of one call: at most one hangup per call, none after its
    end. An accepted hangup (choice 0) moves the call to ``hung_up``."""

    __slots__ = ("call", "ending")

    def __init__(self, call: Call, ending: Ending | None = None) -> None:
        self.call = call
        self.ending = ending

    def refuse_hangup(self, source: str, act: bool) -> RejectReason | None:
        """``duplicate_hangup`` or ``call_ended``, else ``None`` (and, with ``act``,
        the hangup is the call's)."""
        if self.call.ended:
            return RejectReason.CALL_ENDED
        if not self.call.lifecycle.allows(CallEvent.HANGUP_ACCEPTED):
            return RejectReason.DUPLICATE_HANGUP
        if act:
            self.call.hangup_source = source
            actions = self.call.move(CallEvent.HANGUP_ACCEPTED)
            if self.ending is not None:
                self.ending.act(self.call, actions)
        return None


class CallRegistry:
    """Every call this process serves; see the module docstring.

    ``steps``: the end function's ``(name, kind, after)``, written as jobs when a
    call ends; ``deliver``: queue each event for the webhook; ``on_events``: called
    with each batch of committed events; ``on_end``: called after each call ends
    (wakes the end function). Times in seconds.
    """

    def __init__(
        self,
        store: Store,
        *,
        idle_timeout_s: float,
        after_hangup_s: float = 0.0,
        sweep_s: float = 5.0,
        cache_calls: int = 10_000,
        limits: LimitsConfig | None = None,
        retention_s: float | None = None,
        steps: Iterable[tuple[str, str, list[str]]] = (),
        deliver: bool = False,
        on_events: Callable[[list[dict[str, Any]]], None] | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.limits = limits or LimitsConfig()
        self.followers = Followers()
        self.background = Background()
        self.cache = CallCache(store, cache_calls, lambda call: self.ending.window_running(call))
        self.ending = Ending(
            store, self.cache, self.followers, self.background, after_hangup_s=after_hangup_s, steps=steps, deliver=deliver
        )
        self.turns = Turns(
            store, self.cache, self.ending, self.followers, instance=self.instance, limits=self.limits, deliver=deliver
        )
        self.sweeper = Sweeper(
            store, self.cache, self.ending, instance=self.instance, idle_timeout_s=idle_timeout_s,
            after_hangup_s=after_hangup_s, sweep_s=sweep_s, retention_s=retention_s,
        )
        self.on_events = on_events
        self.on_end = on_end

    @property
    def on_events(self) -> Callable[[list[dict[str, Any]]], None] | None:
        """Called with each batch of events committed here."""
        return self.followers.on_events

    @on_events.setter
    def on_events(self, fn: Callable[[list[dict[str, Any]]], None] | None) -> None:
        self.followers.on_events = fn

    @property
    def on_end(self) -> Callable[[], None] | None:
        """Called after each call ends."""
        return self.ending.on_end

    @on_end.setter
    def on_end(self, fn: Callable[[], None] | None) -> None:
        self.ending.on_end = fn

    def __len__(self) -> int:
        return len(self.cache)

    # -- finding calls ---------------------------------------------------------------

    def get(self, call_id: str, *, exact: bool = False) -> Call | None:
        """The call if it is in memory (:meth:`CallCache.get`)."""
        return self.cache.get(call_id, exact=exact)

    async def find(self, call_id: str, *, exact: bool = False) -> Call | None:
        """The call from memory, else from the database; ``None`` when unknown."""
        return await self.cache.find(call_id, exact=exact)

    async def record(self, call_id: str, *, exact: bool = False) -> dict[str, Any] | None:
        """The call record, once the writes queued for the call are done."""
        call = await self.find(call_id, exact=exact)
        if call is None:
            return None
        await self.store.settled(call.key)
        record: dict[str, Any] | None = await self.store.read(ops.call_record, call.key)
        return record

    async def events_after(self, key: str, seq: int) -> list[dict[str, Any]]:
        """The call's events after ``seq``, from the database."""
        events: list[dict[str, Any]] = await self.store.read(ops.events_after, key, seq)
        return events

    def subscribe(self, key: str) -> Signal:
        """A wake-up for the events of the call ``key``; :meth:`unsubscribe` it after."""
        return self.followers.subscribe(key)

    def unsubscribe(self, signal: Signal) -> None:
        """Drop a wake-up."""
        self.followers.unsubscribe(signal)

    def wake(self, key: str) -> None:
        """Events of ``key`` were committed (here, or by another instance)."""
        self.followers.wake(key)

    def reset_cache(self) -> None:
        """Forget every call this process is not serving right now (after missing
        other instances' notifications): they are read again from the database."""
        self.cache.reset()

    def ended_elsewhere(self, key: str) -> None:
        """Another instance ended the call ``key``: this one forgets it."""
        self.ending.ended_elsewhere(key)

    # -- a turn -----------------------------------------------------------------------

    async def begin_turn(
        self, call_id: str | None, *, stream: bool, user_text: str, metadata: Mapping[str, Any] | None = None,
        owner: str | None = None, profile: str | None = None, request_id: str | None = None,
    ) -> tuple[Call, Turn]:
        """A chat completion request arrived (:meth:`Turns.begin`)."""
        return await self.turns.begin(
            call_id, stream=stream, user_text=user_text, metadata=metadata, owner=owner, profile=profile, request_id=request_id
        )

    def hangup_policy(self, call: Call) -> HangupPolicy:
        """What a reply's inspector asks when it finds a hangup."""
        return OneHangupPerCall(call, self.ending)

    def add_commands(self, call: Call, turn: Turn, cmds: list[AnyCommand], reply_text: str) -> list[ControlEvent]:
        """The reply's commands become control events (:meth:`Turns.commands`)."""
        return self.turns.commands(call, turn, cmds, reply_text)

    def finish_turn(self, call: Call, turn: Turn, outcome: TurnOutcome) -> None:
        """The reply is over (:meth:`Turns.finish`)."""
        self.turns.finish(call, turn, outcome)

    # -- front doors ----------------------------------------------------------------------

    async def attach_door(self, call_id: str) -> Call | None:
        """A front door's socket opened for ``call_id``: its call (``None`` when it has
        none yet, or it ended), whose end no longer waits for a reconnect, on any
        instance (the database says so)."""
        call, actions = await self.cache.current(call_id)
        if call is None or call.ended:
            return None
        self.ending.act(call, actions)
        self.store.post(ops.attach, call.key, time.time(), order_key=call.key)
        return call

    async def detach_door(self, call: Call, source: str) -> None:
        """A front door's socket for ``call`` closed (``source``: the door): any
        instance ends the call ``after_hangup_s`` from now unless one opens again.
        Committed at once, with the call's writes queued before it (its last turn): the
        platform may reconnect to another instance, which reads the conversation back."""
        await self.store.write(ops.detach, call.key, source, time.time(), order_key=call.key)

    def heard(self, call: Call, turn: Turn, heard: str) -> None:
        """The caller heard only ``heard`` of ``turn``'s reply (the platform said so after it ended)."""
        self.store.post(ops.set_heard, call.key, turn.request_id, heard, time.time(), order_key=call.key)

    async def conversation(self, call: Call) -> list[tuple[str, str]]:
        """``call``'s turns, each ``(what the caller said, what they heard)``, once the
        writes queued for it here are done."""
        await self.store.settled(call.key)
        texts: list[tuple[str, str]] = await self.store.read(ops.turn_texts, call.key)
        return texts

    # -- state and the end ----------------------------------------------------------------

    async def patch_state(self, call: Call, patch: Mapping[str, Any]) -> dict[str, Any] | None:
        """RFC 7386 merge patch into the call's ``state``; ``None`` when it has ended."""
        return await self.ending.patch_state(call, patch)

    async def end(self, call: Call, reason: str, source: str, state: Mapping[str, Any] | None = None, *, if_detached: bool = False) -> bool:
        """End ``call`` once (:meth:`Ending.end`; ``if_detached``: only while a front door's socket for it stays closed)."""
        return await self.ending.end(call, reason, source, state, if_detached=if_detached)

    async def end_key(self, key: str, reason: str, source: str) -> bool:
        """End the call with record key ``key``."""
        return await self.ending.end_key(key, reason, source)

    # -- the sweep and stopping -----------------------------------------------------------

    async def start(self) -> None:
        """Register this instance, recover, sweep once (:meth:`Sweeper.start`)."""
        await self.sweeper.start()

    async def sweep(self) -> int:
        """One sweep; how many calls it ended."""
        return await self.sweeper.sweep()

    async def run_sweeper(self) -> None:
        """Sweep every ``sweep_s`` until cancelled."""
        await self.sweeper.run()

    async def drain(self, timeout: float = 10.0) -> None:
        """Stop the goodbye windows; wait for the ends in progress and for every
        write queued."""
        self.ending.stop_windows()
        await self.background.drain(timeout)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):  # never wait_for: on 3.11 it can swallow a cancel
                await self.store.settled()
