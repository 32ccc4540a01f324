"""``make bench``, writes: what the call record costs per turn, on SQLite.

Calls shaped like calls write what the relay writes, in the relay's way and nothing
else (no HTTP): each turn queues its row as it begins (``post``, nobody waits) and
its outcome when the reply ends (``post``); the last turn's hangup is a control
event (``submit``: its followers wait for the commit); the call's end is awaited
(``write``: nothing is sent before it is written). ``--calls`` calls are in flight
(each ``--turns`` turns, ``--reply-s`` of reply and ``--pause-s`` of caller speech
between them, ±50 %) for ``--seconds``.

Reported per turn: CPU µs of the writer thread (``pthread_getcpuclockid``: the
thread that holds the GIL against the event loop while it runs Python), CPU µs of the
event-loop thread (which here also runs the simulated calls' timers), commits and
operations per commit. ``--burst`` queues every turn of every call at once instead
(the most a batch can hold).

Run: ``python -m tests.bench.writes [--calls 200] [--seconds 10] [--burst] [--group-commit-ms 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from proxy.storage import CallStart, CommandRecord, NewEvent, SqliteStore, TurnOutcome, TurnStart, TurnStatus, ops

from . import run_process

USER = "Yes, I'd like to move my appointment to Thursday afternoon if that works. " * 2
REPLY = "Of course. I can move it to Thursday at three o'clock; you'll get a text to confirm it. " * 4
ATTEMPT = {"upstream": "primary", "model": "gpt-4o-mini", "outcome": "won", "ttft_ms": 312.5, "status": 200, "hedge": False}


def _outcome() -> TurnOutcome:
    return TurnOutcome(TurnStatus.OK, None, REPLY, REPLY, "", (), 312.5, 1840.0, (ATTEMPT,))


def _hangup(key: str, n: int) -> tuple[list[CommandRecord], NewEvent]:
    eid = f"evt_{key}_{n}"
    payload = {"id": eid, "type": "hangup", "call_id": key, "generation": 1, "source": "text_command",
               "created_at": "2026-12-07T10:00:00Z", "attrs": {"endword": "Goodbye!"}, "raw": '<imsagent_hangup endword="Goodbye!"/>'}
    cmd = CommandRecord("hangup", "text_command", {"endword": "Goodbye!"}, payload["raw"], True, event_id=eid)
    return [cmd], NewEvent(payload)


class Sim:
    """The calls' writes against one store; counts turns."""

    def __init__(self, store: SqliteStore, args: argparse.Namespace) -> None:
        self.store, self.args, self.turns, self.calls = store, args, 0, 0
        self.rng = random.Random(1)

    async def call(self, n: int) -> None:
        key = f"call-{n}"
        start = CallStart(key, key, started_at=time.time())
        for t in range(self.args.turns):
            await self.store.room()
            rid = f"req-{n}-{t}"
            self.store.post(ops.begin_turn, start, TurnStart(rid, "bench", time.time(), True, USER), None, time.time(), order_key=key)
            await self._pause(self.args.reply_s)
            cmds: list[CommandRecord] = []
            if t == self.args.turns - 1:
                cmds, event = _hangup(key, t)
                self.store.submit(ops.add_events, key, [event], False, time.time(), order_key=key)
            self.store.post(ops.finish_turn, key, rid, _outcome(), cmds, [], time.time(), order_key=key)
            self.turns += 1
            if t < self.args.turns - 1:
                await self._pause(self.args.pause_s)
        ended = {"id": f"evt_end_{key}", "type": "call.ended", "call_id": key, "generation": 1, "source": "text_command",
                 "reason": "agent_hangup"}
        await self.store.write(ops.end_call, key, ended, None, [], False, time.time(), order_key=key)
        self.calls += 1

    async def _pause(self, mean: float) -> None:
        if not self.args.burst:
            await asyncio.sleep(mean * self.rng.uniform(0.5, 1.5))


def thread_cpu(thread_id: int) -> float:
    """CPU seconds of one thread of this process."""
    return time.clock_gettime(time.pthread_getcpuclockid(thread_id))


async def run(args: argparse.Namespace, path: Path) -> dict[str, Any]:
    store = SqliteStore(path, group_commit_ms=args.group_commit_ms)
    store.migrate()
    await store.start()
    assert store._writer is not None and store._writer.ident is not None
    writer = store._writer.ident
    sim = Sim(store, args)
    length = args.turns * args.reply_s + (args.turns - 1) * args.pause_s
    w0, l0, c0, t0 = thread_cpu(writer), time.thread_time(), store.commits, time.monotonic()
    if args.burst:
        await asyncio.gather(*(sim.call(i) for i in range(args.calls)))
    else:
        # calls keep arriving at the rate that holds `calls` in flight, the first ones already under way
        tasks, n, end = [], 0, t0 + args.seconds
        for _ in range(args.calls):
            tasks.append(asyncio.create_task(_later(sim, n, sim.rng.uniform(0, length))))
            n += 1
        while time.monotonic() < end:
            await asyncio.sleep(sim.rng.expovariate(args.calls / length))
            tasks.append(asyncio.create_task(sim.call(n)))
            n += 1
        await asyncio.gather(*tasks)
    await store.settled()
    w1, l1, c1, t1 = thread_cpu(writer), time.thread_time(), store.commits, time.monotonic()
    await store.close()
    ops_n = sim.turns * 2 + sim.calls * 2  # begin, finish; the hangup event, the end
    return {"turns": sim.turns, "calls": sim.calls, "seconds": t1 - t0, "writer_s": w1 - w0, "loop_s": l1 - l0,
            "commits": c1 - c0, "ops": ops_n}


async def _later(sim: Sim, n: int, delay: float) -> None:
    await asyncio.sleep(delay)
    await sim.call(n)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=200, help="calls in flight")
    p.add_argument("--seconds", type=float, default=10, help="how long new calls arrive")
    p.add_argument("--turns", type=int, default=4)
    p.add_argument("--reply-s", type=float, default=1.2)
    p.add_argument("--pause-s", type=float, default=2.0)
    p.add_argument("--burst", action="store_true", help="every turn of every call queued at once")
    p.add_argument("--group-commit-ms", type=float, default=20.0, help="storage.group_commit_ms (0: a commit per wake-up)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="callgate-writes-") as tmp:
        r = run_process(run(args, Path(tmp) / "writes.db"))
    turns = r["turns"] or 1
    shape = "burst" if args.burst else f"{args.calls} calls in flight for {args.seconds:g} s"
    shape += f", group_commit_ms {args.group_commit_ms:g}"
    print(f"\nwrites per turn ({shape}; {r['turns']} turns, {r['calls']} calls, {r['seconds']:.1f} s):")
    print(f"  writer thread CPU   {r['writer_s'] / turns * 1e6:8.1f} µs per turn")
    print(f"  event loop CPU      {r['loop_s'] / turns * 1e6:8.1f} µs per turn (the simulated calls' timers included)")
    print(f"  commits             {r['commits'] / turns:8.3f} per turn   ({r['ops'] / max(r['commits'], 1):.1f} operations per commit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
