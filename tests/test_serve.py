"""`callgate serve` as a real process: starts, relays, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

from openai import AsyncOpenAI

from proxy.demo.scripted_upstream import ScriptedReply, ScriptedUpstream

from .conftest import serve_app


async def test_serve_relays_and_stops_on_sigterm(tmp_path: Path) -> None:
    upstream = ScriptedUpstream([ScriptedReply(content=["Bye <imsagent_hangup endword='see you'/>"])])
    async with serve_app(upstream.app()) as up:
        cfg = tmp_path / "callgate.yaml"
        cfg.write_text(
            f"upstream: {{base_url: '{up}/v1', api_key: '${{TEST_KEY:-sk-test}}'}}\n"
            f"storage: {{path: '{tmp_path / 'callgate.db'}'}}\n"
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy.cli", "serve", "--config", str(cfg), "--port", "0",
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            url = None
            while url is None:  # the process says where it listens
                line = await asyncio.wait_for(proc.stderr.readline(), 20)
                assert line, "callgate serve exited before listening"
                m = re.search(rb"listening on (http://\S+),", line)
                url = m and m.group(1).decode()
            client = AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
            reply = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            assert reply.choices[0].message.content == "Bye see you"
            assert upstream.requests[0]["headers"]["Authorization"] == "Bearer sk-test"
            await client.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = await asyncio.wait_for(proc.wait(), 20)
        assert rc == 0
