"""`callgate serve` as a real process: starts, relays, stops cleanly on SIGTERM."""

from __future__ import annotations

from pathlib import Path

from openai import AsyncOpenAI

from proxy.demo.scripted_upstream import ScriptedReply, ScriptedUpstream

from .conftest import serve_app
from .process import ServeProcess


async def test_serve_relays_and_stops_on_sigterm(tmp_path: Path) -> None:
    upstream = ScriptedUpstream([ScriptedReply(content=["Bye <imsagent_hangup endword='see you'/>"])])
    async with serve_app(upstream.app()) as up:
        cfg = tmp_path / "callgate.yaml"
        cfg.write_text(
            f"upstream: {{base_url: '{up}/v1', api_key: '${{TEST_KEY:-sk-test}}'}}\n"
            f"storage: {{path: '{tmp_path / 'callgate.db'}'}}\n"
        )
        server = ServeProcess(cfg)
        url = await server.start()
        try:
            client = AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
            reply = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            assert reply.choices[0].message.content == "Bye see you"
            assert upstream.requests[0].headers["Authorization"] == "Bearer sk-test"
            await client.close()
        finally:
            rc = await server.stop()
        assert rc == 0
