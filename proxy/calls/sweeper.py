"""The sweep, at start and every ``sweep_s`` on every instance, on the database
rather than memory: this instance's heartbeat; turns of processes that stopped
become ``interrupted`` and their leased jobs and deliveries free; calls that should
have ended (idle, a hangup recorded but not its end, a call without an id whose
reply is over) end, each exactly once whichever instance gets there first; ended
calls past ``storage.retention_days`` are deleted; memory is trimmed."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

from ..storage import Store, ops
from .cache import CallCache
from .ending import Ending

__all__ = ["Sweeper", "pid_running", "stopped_here"]

log = logging.getLogger("callgate.calls")


class Sweeper:
    """See the module docstring. Times in seconds."""

    def __init__(
        self, store: Store, cache: CallCache, ending: Ending, *, instance: str, idle_timeout_s: float, after_hangup_s: float,
        sweep_s: float, retention_s: float | None,
    ) -> None:
        self.store = store
        self.cache = cache
        self.ending = ending
        self.instance = instance
        self.idle_timeout_s = idle_timeout_s
        self.after_hangup_s = after_hangup_s
        self.sweep_s = sweep_s
        self.retention_s = retention_s

    async def _heartbeat(self, now: float) -> None:
        await self.store.write(ops.heartbeat, self.instance, socket.gethostname(), os.getpid(), now)

    async def _recover(self, now: float) -> dict[str, int]:
        """Free what dead processes left: those silent for three sweeps, and (on a
        store of one machine) those whose pid no longer runs, at once."""
        gone = await stopped_here(self.store, self.instance)
        found: dict[str, int] = await self.store.write(ops.recover, self.instance, now, now - 3 * self.sweep_s, gone)
        return found

    async def start(self) -> None:
        """Register this instance; recover what stopped processes left; one sweep."""
        now = time.time()
        await self._heartbeat(now)
        found = await self._recover(now)
        if any(found.values()):
            log.warning("recovered after a stop: %d turn(s) interrupted, %d step(s) and %d delivery(ies) resumed",
                        found["turns"], found["jobs"], found["deliveries"])
        await self.sweep()

    async def sweep(self) -> int:
        """One round (see the module docstring). Returns how many calls it ended."""
        now = time.time()
        await self._heartbeat(now)
        await self._recover(now)
        due = await self.store.read(ops.due_ends, now, self.idle_timeout_s, self.after_hangup_s)
        ended = 0
        for end in due:
            live = self.cache.get(end.key, exact=True)
            if live is not None and not self.cache.idle(live):
                continue  # this process is still on it
            ended += await self.ending.end_key(end.key, end.reason, end.source, if_detached=end.if_detached)
        if self.retention_s is not None:
            purged = await self.store.write(ops.purge, now - self.retention_s)
            if purged:
                log.info("retention: deleted %d ended calls older than %.0f s", purged, self.retention_s)
        self.cache.trim()
        return ended

    async def run(self) -> None:
        """Sweep every ``sweep_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.sweep_s)
            try:
                await self.sweep()
            except Exception:
                log.exception("the sweep failed; the next one tries again")


async def stopped_here(store: Store, instance: str) -> list[str]:
    """The instances of this machine, but ``instance``, whose process no longer runs
    (an older instance with this process's pid too: a container restarted, pid 1 both
    times); none for a store other machines share."""
    if not store.local:
        return []
    host, me = socket.gethostname(), os.getpid()
    rows = await store.read(ops.processes)
    return [i for i, h, pid in rows if h == host and i != instance and (pid == me or not pid_running(pid))]


def pid_running(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie does not): what tells
    a stopped process of a database on this machine (SQLite) at once."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[-1].split()[0]
        return state not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
