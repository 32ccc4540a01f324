"""A restart under load with real processes, on SQLite and on PostgreSQL: 100 callers
with three turns each; a second ``callgate serve`` on the same port and database
takes over the listening socket (:mod:`proxy.server.handoff`), the first gets
SIGTERM and drains. No connection is refused, no reply is cut, every turn is
recorded, and both servers answered."""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from proxy.demo.scripted_upstream import ScriptedReply, ScriptedUpstream
from proxy.storage import OpenMode, open_store, ops

from .conftest import serve_app
from .lab import until
from .process import ServeProcess

PIECES = ["One, ", "two, ", "three, ", "four, ", "five."]
CALLS, TURNS = 100, 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spoken(body: bytes) -> str:
    text = ""
    for event in body.split(b"\n\n"):
        if event.startswith(b"data: {"):
            for choice in json.loads(event[6:])["choices"]:
                text += choice["delta"].get("content") or ""
    return text


async def _caller(http: aiohttp.ClientSession, url: str, i: int, outcomes: collections.Counter[str]) -> None:
    for t in range(TURNS):
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": f"turn {t}"}]}
        try:
            async with http.post(f"{url}/v1/chat/completions", json=body, headers={"X-Call-Id": f"restart-{i}"}) as r:
                got = await r.read()
                whole = r.status == 200 and got.endswith(b"data: [DONE]\n\n") and _spoken(got) == "".join(PIECES)
                outcomes["ok" if whole else f"cut ({r.status})"] += 1
        except aiohttp.ClientConnectorError as e:
            outcomes[f"refused: {e.os_error}"] += 1
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            outcomes[f"error: {type(e).__name__}: {e}"] += 1
        await asyncio.sleep(0.1)  # the caller speaks again


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_a_restart_under_load_refuses_nothing_and_cuts_nothing(tmp_path: Path, engine: str, request: pytest.FixtureRequest) -> None:
    pg_url = request.getfixturevalue("pg_url") if engine == "postgres" else None
    upstream = ScriptedUpstream([ScriptedReply(content=PIECES, ttft_s=0.6, interval_s=0.6)])  # 3 s each
    async with serve_app(upstream.app()) as up_url:
        storage: dict[str, Any] = {"url": pg_url} if pg_url else {"path": str(tmp_path / "cg.db")}
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump({"upstream": {"base_url": f"{up_url}/v1"}, "storage": storage, "server": {"drain_s": 20}}))
        port = _free_port()
        old = ServeProcess(cfg, port=port)
        url = await old.start()
        outcomes: collections.Counter[str] = collections.Counter()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            callers = [asyncio.create_task(_caller(http, url, i, outcomes)) for i in range(CALLS)]
            await until(lambda: upstream.count >= CALLS, 20, "every caller's first turn upstream")  # then restart, under load
            new = ServeProcess(cfg, port=port)
            assert await new.start() == url
            assert any("taken over" in line for line in new.log)
            sigterm = time.monotonic()
            assert await old.stop() == 0  # lets its replies finish, then exits
            old_exit_s = time.monotonic() - sigterm
            await asyncio.wait_for(asyncio.gather(*callers), 60)
        assert await new.stop() == 0
    assert dict(outcomes) == {"ok": CALLS * TURNS}
    store = open_store(tmp_path / "cg.db", url=pg_url, pool_size=1, mode=OpenMode.READ)
    try:
        records = [store.run_sync(ops.call_record, f"restart-{i}") for i in range(CALLS)]
    finally:
        store.close_sync()
    turns = [t for r in records for t in r["turns"]]
    assert len(turns) == CALLS * TURNS and {t["status"] for t in turns} == {"ok"}
    pids = collections.Counter(t["instance"].split(":")[1] for t in turns)
    # both answered: after SIGTERM each open connection brings the old one a last
    # request (answered with Connection: close); the turns after it go to the new one
    assert set(pids) == {str(old.pid), str(new.pid)}, pids
    print(f"\n{engine}: {dict(outcomes)}; turns old/new {pids[str(old.pid)]}/{pids[str(new.pid)]}; old exited {old_exit_s:.1f} s after SIGTERM")
