"""A front door's socket that drops on one instance and reconnects to another (two real
``callgate serve`` processes on one SQLite database): the conversation goes on where it
was, the first instance's waiting end does not end the call, and the call ends once its
last socket stays closed (issue 27, bug 2)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from proxy.demo.scripted_upstream import ScriptedReply, ScriptedUpstream

from .conftest import serve_app
from .lab import until
from .process import ServeProcess

SETUP = {"type": "setup", "sessionId": "VX9", "callSid": "CA-R", "from": "+15550001111", "to": "+15550002222"}


async def _turn(ws: aiohttp.ClientWebSocketResponse, said: str) -> str:
    await ws.send_json({"type": "prompt", "voicePrompt": said, "lang": "en-US", "last": True})
    text = ""
    while True:
        async with asyncio.timeout(10):
            msg = await ws.receive_json()
        text += msg["token"]
        if msg["last"]:
            return text


async def _record(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(f"{url}/v1/calls/CA-R") as r:
        assert r.status == 200, await r.text()
        data: dict[str, Any] = await r.json()
        return data


async def test_a_socket_reconnecting_to_another_instance_continues_the_call(tmp_path: Path) -> None:
    up = ScriptedUpstream([ScriptedReply(content=["Sure, ", "one moment."])])
    async with serve_app(up.app()) as up_url, aiohttp.ClientSession() as http:
        cfg = tmp_path / "cg.yaml"
        cfg.write_text(yaml.safe_dump({
            "upstream": {"base_url": f"{up_url}/v1", "timeout_s": 5},
            "storage": {"path": str(tmp_path / "cg.db")},
            "end_function": {"after_hangup_s": 1.0, "sweep_s": 0.3, "poll_s": 0.1},
            "front_doors": {"conversation_relay": {"system_prompt": "Be brief."}},
        }))
        a, b = ServeProcess(cfg), ServeProcess(cfg)
        url_a, url_b = await a.start(), await b.start()
        async with http.ws_connect(f"{url_a}/conversation-relay/v1/ws") as ws:
            await ws.send_json(SETUP)
            assert await _turn(ws, "first") == "Sure, one moment."

        async def first_turn_written() -> bool:
            async with http.get(f"{url_b}/v1/calls/CA-R") as r:
                rec = await r.json() if r.status == 200 else {"turns": []}
            return bool(rec["turns"]) and rec["turns"][0]["status"] == "ok"

        await until(first_turn_written, 10, "A's turn in the database")  # written as A sees the drop; then the platform reconnects elsewhere
        async with http.ws_connect(f"{url_b}/conversation-relay/v1/ws") as ws:
            await ws.send_json(SETUP)
            assert await _turn(ws, "second") == "Sure, one moment."
            # the conversation came from the call, not from A's memory
            assert up.requests[1].body["messages"] == [
                {"role": "system", "content": "Be brief."}, {"role": "user", "content": "first"},
                {"role": "assistant", "content": "Sure, one moment."}, {"role": "user", "content": "second"},
            ]
            await until(lambda: any("not ended: its socket opened again" in line for line in a.log), 15, "A's waiting end: " + "".join(a.log[-15:]))
            rec = await _record(http, url_b)
            assert rec["ended_at"] is None and rec["generation"] == 1
            assert await _turn(ws, "third") == "Sure, one moment."  # B goes on: A ended nothing

        async def ended() -> bool:
            return (await _record(http, url_a))["ended_at"] is not None

        await until(ended, 20, "the call's end once its last socket stayed closed")
        rec = await _record(http, url_a)
        assert (rec["end_reason"], rec["generation"], len(rec["turns"])) == ("socket_closed", 1, 3)
        assert [e["type"] for e in rec["events"]] == ["call.ended"]
        assert await a.stop() == 0 and await b.stop() == 0
