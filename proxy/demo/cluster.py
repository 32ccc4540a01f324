"""``callgate demo --cluster``: the demo's call through three instances.

A throwaway PostgreSQL server (``initdb``/``pg_ctl``), three ``callgate serve``
processes sharing it, nginx in front of them round-robin (so the call's turns land
on different instances), the scripted LLM and the "CRM" of the plain demo. Prints
which instance served each turn, the control events as an instance that served no
turn sees them, and the end function's steps. Says what is missing when PostgreSQL
or nginx is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from . import nginx, pgtemp
from .run import (
    CALL_ID,
    SCRIPT,
    _subscribe,
    crm_receiver,
    demo_config,
    report,
    talk,
)
from .scripted_upstream import ScriptedUpstream, serve_app

__all__ = ["run_cluster_demo"]

INSTANCES = 3


def missing() -> list[str]:
    """What ``--cluster`` needs and this machine lacks."""
    out = []
    if not pgtemp.available():
        out.append("PostgreSQL (initdb, pg_ctl): apt-get install postgresql")
    if not nginx.available():
        out.append("nginx: apt-get install nginx-light")
    return out


class _Instance:
    def __init__(self, name: str, cfg: Path) -> None:
        self.name, self.cfg = name, cfg
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy.cli", "serve", "--config", str(self.cfg), "--port", "0", "--workers", "1",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        while not self.url:
            async with asyncio.timeout(30):
                line = await self.proc.stderr.readline()
            if not line:
                raise RuntimeError(f"instance {self.name} exited before listening")
            m = re.search(rb"listening on (http://\S+),", line)
            self.url = m.group(1).decode() if m else ""
        asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while await self.proc.stderr.readline():
            pass

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(20):
                    await self.proc.wait()


async def run_cluster_demo() -> int:
    """``callgate demo --cluster``: three instances on a throwaway PostgreSQL behind
    nginx; the exit code (2 when nginx or PostgreSQL's binaries are missing)."""
    lacking = missing()
    if lacking:
        print("callgate demo --cluster needs:\n  " + "\n  ".join(lacking), file=sys.stderr)
        return 2
    with pgtemp.cluster() as server, pgtemp.database(server) as db_url:
        return await _run(db_url)


async def _run(db_url: str) -> int:
    async with serve_app(ScriptedUpstream(SCRIPT).app()) as up_url, crm_receiver() as (crm_url, crm):
        return await _cluster(db_url, up_url, crm_url, crm)


async def _cluster(db_url: str, up_url: str, crm_url: str, crm: list[dict[str, Any]]) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="callgate-cluster-"))
    cfg = tmp / "callgate.yaml"
    cfg.write_text(yaml.safe_dump(demo_config(up_url, crm_url, {"url": db_url})))
    instances = [_Instance(name, cfg) for name in "ABC"[:INSTANCES]]
    front = None
    try:
        await asyncio.gather(*(i.start() for i in instances))
        front, port = nginx.start(tmp / "nginx", [int(i.url.rsplit(":", 1)[1]) for i in instances])
        base = f"http://127.0.0.1:{port}"
        names = {str(i.proc.pid): i.name for i in instances if i.proc is not None}
        print(f"callgate demo --cluster: PostgreSQL {db_url.rsplit('@', 1)[-1]}, instances "
              + ", ".join(f"{i.name} {i.url}" for i in instances) + f", nginx round-robin at {base}\n")
        events: list[dict[str, Any]] = []
        ready = asyncio.Event()
        follower = asyncio.create_task(_subscribe(instances[-1].url, events, ready))  # C follows the call
        async with asyncio.timeout(10):
            await ready.wait()

        async def served_by(turn: int) -> str:
            record = await _record(instances[0].url)
            for _ in range(50):  # the serving instance writes the turn as it goes: wait for it
                if len(record.get("turns", [])) >= turn:
                    break
                await asyncio.sleep(0.1)
                record = await _record(instances[0].url)
            instance = record["turns"][turn - 1]["instance"]  # host:pid:random
            pid = instance.split(":")[1]
            return f"instance {names.get(pid, '?')} (pid {pid})"

        await talk(base, served_by)
        async with asyncio.timeout(20):  # cancels the follower too, as wait_for did
            await follower
        print(f"(events followed on instance {instances[-1].name}, from the shared database)\n")
        record = await _finished(instances[1].url)
        return 0 if report(events, record["end_function"]["steps"], crm) else 1
    finally:
        if front is not None:
            front.terminate()
            front.wait(10)
        await asyncio.gather(*(i.stop() for i in instances))
        shutil.rmtree(tmp, ignore_errors=True)


async def _record(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/v1/calls/{CALL_ID}") as r:
            return json.loads(await r.read())


async def _finished(url: str, timeout: float = 20) -> dict[str, Any]:
    """The call record once its end function finished."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        record = await _record(url)
        if record.get("end_function", {}).get("status") in ("done", "failed"):
            return record
        if loop.time() > deadline:
            return record
        await asyncio.sleep(0.2)
