"""``callgate serve --workers N`` on one port, and ``callgate demo --cluster``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

import pytest

from proxy.config.sections import ServerConfig
from proxy.storage import OpenMode, open_store, ops

from . import rows

from .conftest import serve_app
from .test_metrics import sample
from .lab import llm_app, turn, until
from .process import ServeProcess


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_two_workers_share_one_port_and_one_database(tmp_path: Path, engine: str, request: pytest.FixtureRequest) -> None:
    pg_url = request.getfixturevalue("pg_url") if engine == "postgres" else ""
    storage = f'{{url: "{pg_url}"}}' if pg_url else f'{{path: "{tmp_path / "cg.db"}"}}'
    async with serve_app(llm_app(ttft_s=0.05)) as up:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f'upstream: {{base_url: "{up}/v1"}}\nstorage: {storage}\nend_function: {{after_hangup_s: 0}}\n')
        server = ServeProcess(cfg, "--workers", "2")
        url = await server.start()
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
                # fresh connections, many at once: the kernel spreads them over both workers
                assert all(await asyncio.gather(*(turn(http, url, f"w-{i}", "hello") for i in range(40))))
                assert all(await asyncio.gather(*(turn(http, url, f"w-{i}", "bye") for i in range(40))))
                # any worker's /metrics sums both (prometheus-client's multiprocess mode); a
                # request is counted when its handler returns, which may be just after the
                # client read the last byte, so wait for the 80th, then hold it on every scrape
                async def answered() -> float:
                    async with http.get(f"{url}/metrics") as r:
                        text = await r.text()
                    return sample(text, "callgate_requests_total", route="/v1/chat/completions", profile="openai", status="200")

                async def all_counted() -> bool:
                    return await answered() >= 80

                await until(all_counted, 10, "the 80 turns counted")
                assert [await answered() for _ in range(4)] == [80] * 4
        finally:
            assert await server.stop() == 0
    store = open_store(tmp_path / "cg.db", url=pg_url or None, pool_size=1, mode=OpenMode.READ)
    try:
        records = [store.run_sync(ops.call_record, f"w-{i}") for i in range(40)]
    finally:
        store.close_sync()
    pids = {t["instance"].split(":")[1] for r in records for t in r["turns"]}
    assert len(pids) == 2 and str(server.pid) not in pids  # two workers served; the parent only supervises
    assert all(r["status"] == "ended" and [e["type"] for e in r["events"]] == ["hangup", "call.ended"] for r in records)


def test_demo_cluster_runs_and_exits_0() -> None:
    done = subprocess.run([sys.executable, "-m", "proxy.cli", "demo", "--cluster"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    served = [line.split("instance ")[1][0] for line in done.stdout.splitlines() if "served by:" in line]
    assert len(served) == 2 and served[0] != served[1]  # round-robin: the turns landed on two instances
    assert "3. call.ended" in done.stdout and "crm (webhook): done" in done.stdout


def test_operations_work_on_postgresql(tmp_path: Path, pg_url: str, capsys: Any) -> None:
    from proxy.cli import main

    store = open_store("", url=pg_url, pool_size=1)
    now = time.time()
    try:
        store.run_sync(ops.begin_turn, rows.call("pg-1", started_at=now), rows.turn("r1", "x", started_at=now), None, now)
        ended = {"id": "e1", "type": "call.ended", "call_id": "pg-1", "source": "call_layer", "reason": "caller_hangup"}
        store.run_sync(ops.end_call, "pg-1", ended, None, [("crm", "webhook", [])], True, now)
        store.run_sync(lambda c: c.execute("UPDATE jobs SET status = 'failed', last_error = 'HTTP 500'"))
        store.run_sync(lambda c: c.execute("UPDATE deliveries SET status = 'failed', last_error = 'stale'"))
    finally:
        store.close_sync()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f'storage: {{url: "{pg_url}"}}\n')
    assert main(["calls", "list", "--config", str(cfg)]) == 0
    assert "pg-1" in capsys.readouterr().out
    assert main(["calls", "show", "pg-1", "--config", str(cfg)]) == 0
    assert "crm (webhook): failed" in capsys.readouterr().out
    assert main(["jobs", "retry", "--all-failed", "--config", str(cfg)]) == 0
    assert "1 job(s) back to pending" in capsys.readouterr().out
    assert main(["deliveries", "list", "--failed", "--config", str(cfg)]) == 0
    assert "call.ended" in capsys.readouterr().out
    assert main(["deliveries", "retry", "--all-failed", "--config", str(cfg)]) == 0
    assert "1 delivery(ies) back to pending" in capsys.readouterr().out


def test_workers_auto_is_one_per_core_and_the_default() -> None:
    cores = len(os.sched_getaffinity(0))
    assert ServerConfig().workers == "auto" and ServerConfig().worker_count() == min(cores, 64)
    assert ServerConfig(workers=3).worker_count() == 3
    for bad in (0, 65, "many"):
        with pytest.raises(ValueError):
            ServerConfig(workers=bad)


def test_serve_refuses_a_bad_workers_flag(tmp_path: Path) -> None:
    for bad in ("0", "many"):
        done = subprocess.run([sys.executable, "-m", "proxy.cli", "serve", "--workers", bad], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "--workers" in done.stderr and "Traceback" not in done.stderr


async def test_serve_runs_one_process_per_core_unless_told(tmp_path: Path) -> None:
    cores = ServerConfig().worker_count()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f'upstream: {{base_url: "http://127.0.0.1:9/v1"}}\nstorage: {{path: "{tmp_path / "cg.db"}"}}\n')
    server = ServeProcess(cfg, workers=None)  # no --workers: server.workers is auto
    await server.start()
    try:
        if cores > 1:  # the parent says so once every worker listens (the workers' own lines come first)
            async def said() -> bool:
                return any(f"{cores} workers" in line for line in server.log)

            await until(said, 30, "the parent's listening line")
        children = [c for task in Path(f"/proc/{server.pid}/task").iterdir() for c in (task / "children").read_text().split()]
        assert len(children) == (cores if cores > 1 else 0)
    finally:
        assert await server.stop() == 0
