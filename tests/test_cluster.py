"""Three ``callgate serve`` instances on one PostgreSQL database, behind nginx
round-robin, so that a call's turns land on different instances.

* 50 calls with turns spread over all three; each call's hangup turn sent to all
  three at once: every instance shows the same record with exactly one ``hangup``,
  one ``call.ended``, the others ``command.rejected``; the end function ran once per
  call (one idempotency key per step at the receiver).
* An SSE follower on C gets the events produced on A, in ``seq`` order;
  ``Last-Event-ID`` on B resumes.
* kill -9 of one instance mid-stream: the next turn through nginx lands elsewhere
  with the earlier turns intact; kill -9 mid-step: after its lease runs out a
  survivor finishes the step with the same key, and no step ran on two instances at
  once.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.demo import nginx
from proxy.storage import open_store, ops

from .conftest import serve_app
from .lab import CallLayer, llm_app, turn, until
from .process import ServeProcess

CALLS = 50


class Cluster:
    def __init__(self, servers: list[ServeProcess], front: str, layer: CallLayer, pg_url: str) -> None:
        self.servers, self.front, self.layer, self.pg_url = servers, front, layer, pg_url

    async def record(self, url: str, call_id: str) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/v1/calls/{call_id}") as r:
                assert r.status == 200, await r.text()
                return await r.json()

    def db(self, op: Any, *args: Any) -> Any:
        store = open_store("", url=self.pg_url, pool_size=1)
        try:
            return store.run_sync(op, *args)
        finally:
            store.close_sync()


@pytest.fixture
async def cluster(pg_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    assert nginx.available(), "nginx is not installed: `.ci/run` installs it (apt-get install nginx-light)"
    layer = CallLayer()
    async with serve_app(llm_app()) as up, serve_app(layer.app()) as hooks:
        cfg = tmp_path / "callgate.yaml"
        cfg.write_text(f"""
upstream: {{base_url: "{up}/v1", timeout_s: 20}}
storage: {{url: "{pg_url}"}}
control: {{webhook: {{url: "{hooks}/events", backoff_s: 0.1, max_backoff_s: 0.5}}}}
end_function:
  after_hangup_s: 0.5
  sweep_s: 0.5
  lease_s: 3
  poll_s: 0.2
  steps:
    - {{name: crm, kind: webhook, url: "{hooks}/crm", timeout_s: 30, retry: {{attempts: 5, backoff_s: 0.2}}}}
""")
        servers = [ServeProcess(cfg) for _ in range(3)]
        await asyncio.gather(*(s.start() for s in servers))
        ports = [int(s.url.rsplit(":", 1)[1]) for s in servers]
        proc, port = nginx.start(tmp_path / "nginx", ports)
        try:
            yield Cluster(servers, f"http://127.0.0.1:{port}", layer, pg_url)
        finally:
            proc.terminate()
            proc.wait(10)
            for s in servers:
                if s.proc is not None and s.proc.returncode is None:
                    await s.stop()


async def test_one_hangup_one_end_one_end_function_whichever_instance(cluster: Cluster) -> None:
    a, b, c = (s.url for s in cluster.servers)
    async with aiohttp.ClientSession() as http:
        for _ in range(3):  # turns through nginx, round-robin over the three
            assert all(await asyncio.gather(*(turn(http, cluster.front, f"k-{i}", "hello") for i in range(CALLS))))
        # each call's hangup turn to all three instances at once
        await asyncio.gather(*(turn(http, url, f"k-{i}", "bye") for i in range(CALLS) for url in (a, b, c)))
    for i in range(CALLS):
        ended = await _ended(cluster, a, f"k-{i}")
        records = [ended, await cluster.record(b, f"k-{i}"), await cluster.record(c, f"k-{i}")]
        kinds = [e["type"] for e in ended["events"]]
        assert Counter(kinds) == {"hangup": 1, "command.rejected": 2, "call.ended": 1}, kinds
        assert all(r["events"] == ended["events"] for r in records)  # the same record on every instance
        assert len({t["instance"] for t in ended["turns"]}) >= 2  # the turns landed on more than one instance
    await until(lambda: len(cluster.layer.delivered("crm")) >= CALLS, 30)
    keys = Counter(s["key"] for s in cluster.layer.delivered("crm"))
    assert keys == {f"k-{i}:crm": 1 for i in range(CALLS)}  # the end function ran once per call
    hangups = [json.loads(s["body"]) for s in cluster.layer.delivered("events")]
    assert Counter(h["call_id"] for h in hangups if h["type"] == "hangup") == {f"k-{i}": 1 for i in range(CALLS)}


async def test_sse_follows_a_call_served_by_another_instance(cluster: Cluster) -> None:
    a, b, c = (s.url for s in cluster.servers)
    got: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{c}/v1/calls/sse-1/events") as follower:  # on C, before the call begins
            await turn(http, a, "sse-1", "transfer")  # served by A
            await turn(http, a, "sse-1", "bye")
            async for line in follower.content:
                if line.startswith(b"data: "):
                    got.append(json.loads(line[6:]))
        assert [(e["seq"], e["type"]) for e in got] == [(1, "transfer"), (2, "hangup"), (3, "call.ended")]
        async with http.get(f"{b}/v1/calls/sse-1/events", headers={"Last-Event-ID": "1"}) as resumed:
            text = (await resumed.read()).decode()
    assert [line[4:] for line in text.splitlines() if line.startswith("id: ")] == ["2", "3"]


async def test_kill_9_mid_stream_and_mid_step(cluster: Cluster) -> None:
    a = cluster.servers[0]
    async with aiohttp.ClientSession() as http:
        assert await turn(http, cluster.front, "kill-1", "hello")
        slow = asyncio.create_task(turn(http, a.url, "kill-1", "slow"))  # A streams for 10 s
        await until(lambda: len(a.log) > 0, 5)
        await asyncio.sleep(0.5)  # noqa: ASYNC110 - let A be half-way through the reply
        await a.kill()
        assert not await slow  # the runtime saw the stream break
        for _ in range(3):  # the next turns through nginx land on B or C
            assert await turn(http, cluster.front, "kill-1", "hello")
    record = await _until_record(cluster, cluster.servers[1].url, "kill-1", lambda r: r["turns"][1]["status"] == "interrupted")
    assert [t["status"] for t in record["turns"]] == ["ok", "interrupted", "ok", "ok", "ok"]
    assert record["turns"][0]["spoken_text"] == "Sure, one moment."

    # mid-step: the survivors hold the crm step; kill the one running it
    gate = cluster.layer.gates["crm"] = asyncio.Event()
    cluster.layer.arrived.clear()
    async with aiohttp.ClientSession() as http:
        assert await turn(http, cluster.servers[1].url, "kill-2", "bye")
    await until(lambda: any(s["key"] == "kill-2:crm" for s in cluster.layer.seen), 15)
    [job] = cluster.db(ops.jobs_for_call, "kill-2")
    holder = next(s for s in cluster.servers[1:] if job.locked_by and f":{s.pid}:" in job.locked_by)
    await holder.kill()
    gate.set()  # the receiver answers now; the dead holder is gone, its try counts for nothing
    survivor = next(s for s in cluster.servers[1:] if s is not holder)
    await until(lambda: cluster.db(ops.jobs_for_call, "kill-2")[0].status == "done", 30)
    done = cluster.db(ops.jobs_for_call, "kill-2")[0]
    assert done.attempts == 2 and done.locked_by is None
    tries = [s for s in cluster.layer.seen if s["key"] == "kill-2:crm"]
    assert [t["gone"] for t in tries] == [True, False]  # the first try died with its process
    assert tries[0]["end"] <= tries[1]["start"]  # never on two instances at once
    assert (await cluster.record(survivor.url, "kill-2"))["end_function"]["status"] == "done"


async def _ended(cluster: Cluster, url: str, call_id: str) -> dict[str, Any]:
    return await _until_record(cluster, url, call_id, lambda r: r["status"] == "ended")


async def _until_record(cluster: Cluster, url: str, call_id: str, ok: Any, timeout: float = 30) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        record = await cluster.record(url, call_id)
        if ok(record):
            return record
        assert loop.time() < deadline, f"{call_id}: {record['status']}"
        await asyncio.sleep(0.2)

