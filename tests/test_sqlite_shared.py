"""Several processes on one SQLite file (``storage.path``): a call's events reach a
follower on another process at once (the wake-ups of :mod:`proxy.storage.wakeup`,
not the keep-alive re-read), and the wake-ups themselves."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from proxy.storage.wakeup import Wakeups

from .conftest import serve_app
from .lab import llm_app, turn
from .process import ServeProcess


async def test_a_follower_on_another_process_hears_the_call_at_once(tmp_path: Path) -> None:
    async with serve_app(llm_app(ttft_s=0.01)) as up:
        cfg = tmp_path / "c.yaml"
        # keep-alive far off: only a wake-up can bring the events within the timeout below
        cfg.write_text(f'upstream: {{base_url: "{up}/v1"}}\nstorage: {{path: "{tmp_path / "cg.db"}"}}\n'
                       "control: {sse_keepalive_s: 60}\nend_function: {after_hangup_s: 0}\n")
        a, b = ServeProcess(cfg), ServeProcess(cfg)
        await a.start()
        await b.start()
        got: list[dict[str, Any]] = []
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{b.url}/v1/calls/shared-1/events") as follower:  # on B, before the call begins
                    began = time.monotonic()
                    assert await turn(http, a.url, "shared-1", "transfer")  # served by A
                    assert await turn(http, a.url, "shared-1", "bye")

                    async def read() -> None:
                        async for line in follower.content:
                            if line.startswith(b"data: "):
                                got.append(json.loads(line[6:]))

                    await asyncio.wait_for(read(), 5)
                    took = time.monotonic() - began
        finally:
            assert await a.stop() == 0 and await b.stop() == 0
    assert [(e["seq"], e["type"]) for e in got] == [(1, "transfer"), (2, "hangup"), (3, "call.ended")]
    assert took < 5


async def test_wakeups_reach_the_other_processes_of_the_same_database_only(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    heard: list[str] = []
    other: list[str] = []
    arrived = asyncio.Event()

    def hear(payload: str) -> None:
        heard.append(payload)
        arrived.set()

    listener, stranger, sender = Wakeups(str(tmp_path / "a.db")), Wakeups(str(tmp_path / "b.db")), Wakeups(str(tmp_path / "a.db"))
    listener.listen(loop, hear)
    stranger.listen(loop, other.append)
    try:
        sender.send(["events:k1", "jobs", "events:k1"])
        await asyncio.wait_for(arrived.wait(), 5)
    finally:
        for w in (listener, stranger, sender):
            w.close()
    assert heard == ["events:k1", "jobs"]  # once each, in order
    assert other == []
