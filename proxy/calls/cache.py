"""The calls this process keeps in memory: a bounded cache of the database's rows.

Keyed by record key, least recently active first; the runtime's call id maps to its
newest generation. Only active calls are kept, at most ``cache_calls`` (a call with
a reply in flight or a goodbye window running is never evicted); an ended call
leaves at once. A call missing here is read from the database (:meth:`find`).
Ownership is checked here too: a call belongs to the key that made it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
import time

from ..core.lifecycle import Action, CallEvent
from ..errors import Forbidden
from ..storage import Store, ops
from .model import Call

__all__ = ["CallCache"]


class CallCache:
    """See the module docstring. ``pinned(call)``: whether a call must stay (its
    goodbye window runs)."""

    def __init__(self, store: Store, size: int, pinned: Callable[[Call], bool]) -> None:
        self.store = store
        self.size = size
        self._pinned = pinned
        self._calls: OrderedDict[str, Call] = OrderedDict()  # by record key, least recently active first
        self._latest: dict[str, str] = {}  # the runtime's call id -> its newest record key

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[Call]:
        return iter(list(self._calls.values()))

    def get(self, call_id: str, *, exact: bool = False) -> Call | None:
        """The call if it is in memory: the newest under the runtime's ``call_id``,
        else the one whose record key it is (only that with ``exact``)."""
        return self._calls.get(call_id if exact else self._latest.get(call_id, call_id))

    async def find(self, call_id: str, *, exact: bool = False) -> Call | None:
        """The call from memory, else from the database; ``None`` when unknown. An
        active call is cached; an ended one is not."""
        call = self.get(call_id, exact=exact)
        if call is not None:
            return call
        row = await self.store.read(ops.find_call, call_id, exact)
        if row is None:
            return None
        call = Call.from_record(row)
        return call if call.ended else self.remember(call)

    async def current(self, call_id: str) -> tuple[Call | None, tuple[Action, ...]]:
        """The call as it stands, for a new turn: the cache, else the database, and
        what the database knows that the cached call does not (another instance
        ended it, or accepted its hangup) applied to the cached one; with the
        actions that asks for."""
        cached = self.get(call_id)
        if cached is not None:
            return cached, ()
        row = await self.store.read(ops.find_call, call_id, False)
        cached = self.get(call_id)  # it may have come meanwhile
        if row is None:
            return cached, ()
        if cached is None or cached.key != row.key:
            call = Call.from_record(row)
            return (call if call.ended else self.remember(call)), ()
        actions: tuple[Action, ...] = ()
        if row.ended and not cached.ended:
            actions = cached.move(CallEvent.ENDED_ELSEWHERE)
        elif row.hangup_source is not None and not cached.lifecycle.hung_up and not cached.ended:
            cached.hangup_source = row.hangup_source
            actions = cached.move(CallEvent.HANGUP_ACCEPTED)
        return cached, actions

    @staticmethod
    def check_owner(call: Call, owner: str | None) -> None:
        """:class:`~proxy.errors.Forbidden` when ``call`` belongs to another key."""
        if call.owner != owner and (call.owner or owner):
            raise Forbidden(f"call {call.call_id!r} belongs to another key")

    def remember(self, call: Call) -> Call:
        """Keep ``call`` (the newest under its call id unless a later generation is)."""
        self._calls[call.key] = call
        self._calls.move_to_end(call.key)
        newest = self._calls.get(self._latest.get(call.call_id, ""))
        if newest is None or newest is call or call.generation >= newest.generation:
            self._latest[call.call_id] = call.key
        return call

    def forget(self, call: Call) -> None:
        """Let ``call`` go."""
        if self._calls.get(call.key) is call:
            del self._calls[call.key]
        if self._latest.get(call.call_id) == call.key:
            del self._latest[call.call_id]

    def touch(self, call: Call) -> None:
        """``call`` was active now: last to be evicted."""
        call.last_activity = time.monotonic()
        if call.key in self._calls:
            self._calls.move_to_end(call.key)

    def idle(self, call: Call) -> bool:
        """Whether ``call`` may leave memory: no reply in flight, no window running."""
        return not call.in_flight and not self._pinned(call)

    def trim(self) -> None:
        """Keep at most ``size`` calls: the least recently active idle ones go first."""
        excess = len(self._calls) - self.size
        for call in list(self._calls.values()):
            if excess <= 0:
                break
            if self.idle(call):
                self.forget(call)
                excess -= 1

    def reset(self) -> None:
        """Forget every idle call (after missing other instances' notifications):
        they are read again from the database."""
        for call in list(self._calls.values()):
            if self.idle(call):
                self.forget(call)
