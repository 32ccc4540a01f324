"""The drain on SIGTERM, with a real ``callgate serve``: replies in flight finish within
``server.drain_s``; one still open after it gets the ``server_shutting_down`` error
event and ``[DONE]``, and its turn is recorded ``shut_down``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiohttp
import yaml

from proxy.demo.scripted_upstream import ScriptedReply, ScriptedUpstream, Stall

from .conftest import serve_app
from .process import ServeProcess


async def _serve(tmp_path: Path, up_url: str, drain_s: float) -> ServeProcess:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "upstream": {"base_url": f"{up_url}/v1"}, "storage": {"path": str(tmp_path / "cg.db")}, "server": {"drain_s": drain_s},
    }))
    server = ServeProcess(cfg)
    await server.start()
    return server


async def _stream(http: aiohttp.ClientSession, url: str, call_id: str, started: asyncio.Event) -> bytes:
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(f"{url}/v1/chat/completions", json=body, headers={"X-Call-Id": call_id}) as r:
        out = await r.content.readany()
        started.set()
        while chunk := await r.content.readany():
            out += chunk
        return out


def _turn_status(tmp_path: Path, call_id: str) -> str:
    cfg = tmp_path / "c.yaml"
    shown = subprocess.run([sys.executable, "-m", "proxy.cli", "calls", "show", call_id, "--json", "--config", str(cfg)],
                           capture_output=True, text=True, timeout=60, check=True)
    return str(json.loads(shown.stdout)["turns"][-1]["status"])


async def test_a_reply_in_flight_finishes_within_drain_s(tmp_path: Path) -> None:
    up = ScriptedUpstream([ScriptedReply(content=["One, ", "two, ", "three."], interval_s=0.4)])
    async with serve_app(up.app()) as up_url, aiohttp.ClientSession() as http:
        server = await _serve(tmp_path, up_url, drain_s=20)
        started = asyncio.Event()
        reply = asyncio.create_task(_stream(http, server.url, "drain-ok", started))
        await asyncio.wait_for(started.wait(), 10)
        assert await server.stop() == 0
        body = await reply
    assert body.endswith(b"data: [DONE]\n\n") and b"three." in body and b"server_shutting_down" not in body
    assert _turn_status(tmp_path, "drain-ok") == "ok"


async def test_a_reply_open_past_drain_s_gets_the_error_event_and_is_shut_down(tmp_path: Path) -> None:
    up = ScriptedUpstream([ScriptedReply(content=["Hello ", "never"], stall=Stall(after=1))])
    async with serve_app(up.app()) as up_url, aiohttp.ClientSession() as http:
        server = await _serve(tmp_path, up_url, drain_s=0.5)
        started = asyncio.Event()
        reply = asyncio.create_task(_stream(http, server.url, "drain-cut", started))
        await asyncio.wait_for(started.wait(), 10)
        assert await server.stop() == 0
        body = await reply
        up.release()
    events = [e for e in body.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    assert json.loads(events[-2][6:])["error"]["code"] == "server_shutting_down"
    assert _turn_status(tmp_path, "drain-cut") == "shut_down"  # callgate cut it: not the runtime, not a dead process
