"""SIGHUP reloads the config file in a real ``callgate serve``: a key and a FunctionMap
entry added are used by the next request while a reply in flight finishes under the
old config; a secret rotated out is refused while its key's calls go on under the
new one; an invalid file keeps the old config serving; ``/healthz`` shows the
fingerprint of the config in place."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from proxy.demo.scripted_upstream import ScriptedReply, ScriptedUpstream, by_last_message

from .conftest import serve_app
from .lab import until
from .process import ServeProcess

K1, K2 = "sk-ims-0123456789abcdef", "sk-vapi-0123456789abcdef"
SLOW = ["One, ", "two, ", "three, ", "four, ", "five."]
SCOPES = ["relay", "calls:read"]


def _upstream() -> web.Application:
    """"slow": five pieces 0.3 s apart; "tool": a tool call ``bye_now``; else "Sure."."""
    tool = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "bye_now", "arguments": "{}"}}
    replies = {"slow": ScriptedReply(content=SLOW, ttft_s=0.3, interval_s=0.3), "tool": ScriptedReply(tool_calls=[tool], finish_reason="tool_calls")}
    return ScriptedUpstream(by_last_message(replies, ScriptedReply(content=["Sure."]))).app()


def _config(tmp_path: Path, up: str, keys: list[dict[str, Any]], function_map: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "upstream": {"base_url": f"{up}/v1"}, "storage": {"path": str(tmp_path / "cg.db")},
        "auth": {"keys": keys}, "commands": {"function_map": function_map},
    }


async def _turn(http: aiohttp.ClientSession, url: str, secret: str, call_id: str, said: str = "hi") -> tuple[int, bytes]:
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": said}]}
    async with http.post(f"{url}/v1/chat/completions", json=body, headers={"X-Call-Id": call_id, "Authorization": f"Bearer {secret}"}) as r:
        return r.status, await r.read()


async def _events(http: aiohttp.ClientSession, url: str, secret: str, call_id: str) -> list[str]:
    async with http.get(f"{url}/v1/calls/{call_id}", headers={"Authorization": f"Bearer {secret}"}) as r:
        assert r.status == 200, await r.text()
        return [e["type"] for e in (await r.json())["events"]]


async def _fingerprint(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(f"{url}/healthz") as r:
        return str((await r.json())["config"]["fingerprint"])


async def _reload(server: ServeProcess, cfg: Path, data: dict[str, Any] | str, expect: str) -> None:
    cfg.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    seen = sum(expect in line for line in server.log)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    await until(lambda: sum(expect in line for line in server.log) > seen, 10, f"the log line {expect!r}")


async def test_a_reload_adds_a_key_and_a_function_the_next_request_uses(tmp_path: Path) -> None:
    async with serve_app(_upstream()) as up, aiohttp.ClientSession() as http:
        cfg = tmp_path / "c.yaml"
        before = _config(tmp_path, up, [{"name": "ims", "key": K1, "scopes": SCOPES}], [{"Function": "hangup", "MatchFunction": "hangup"}])
        cfg.write_text(yaml.safe_dump(before))
        server = ServeProcess(cfg)
        await server.start()
        try:
            assert (await _turn(http, server.url, K2, "r-0"))[0] == 401
            assert (await _turn(http, server.url, K1, "r-1", "tool"))[0] == 200
            assert await _events(http, server.url, K1, "r-1") == []  # bye_now is no built-in function yet
            first = await _fingerprint(http, server.url)
            in_flight = asyncio.create_task(_turn(http, server.url, K1, "r-2", "slow"))
            after = _config(tmp_path, up, [{"name": "ims", "key": K1, "scopes": SCOPES}, {"name": "vapi", "key": K2, "scopes": SCOPES}],
                            [{"Function": "hangup", "MatchFunction": "hangup"}, {"Function": "hangup", "MatchFunction": "bye_now"}])
            await _reload(server, cfg, after, "config reloaded")
            assert not in_flight.done()
            assert (await _turn(http, server.url, K2, "r-3", "tool"))[0] == 200  # the new key, the new FunctionMap entry
            assert await _events(http, server.url, K2, "r-3") == ["hangup"]
            status, body = await in_flight  # began before the reload: finished, whole
            assert status == 200 and body.endswith(b"data: [DONE]\n\n") and all(p.encode() in body for p in SLOW)
            assert await _fingerprint(http, server.url) != first
        finally:
            assert await server.stop() == 0


async def test_a_secret_rotated_out_is_refused_and_its_calls_go_on_under_the_new_one(tmp_path: Path) -> None:
    async with serve_app(_upstream()) as up, aiohttp.ClientSession() as http:
        cfg = tmp_path / "c.yaml"
        fm = [{"Function": "hangup", "MatchFunction": "hangup"}]
        cfg.write_text(yaml.safe_dump(_config(tmp_path, up, [{"name": "ims", "key": [K1, K2], "scopes": SCOPES}], fm)))
        server = ServeProcess(cfg)
        await server.start()
        try:
            assert (await _turn(http, server.url, K1, "rot-1"))[0] == 200  # the runtime on the old secret
            assert (await _turn(http, server.url, K2, "rot-1"))[0] == 200  # moved to the new one: the same call
            await _reload(server, cfg, _config(tmp_path, up, [{"name": "ims", "key": K2, "scopes": SCOPES}], fm), "config reloaded")
            assert (await _turn(http, server.url, K1, "rot-1"))[0] == 401
            assert (await _turn(http, server.url, K2, "rot-1"))[0] == 200
        finally:
            assert await server.stop() == 0


async def test_an_invalid_reload_keeps_the_running_config(tmp_path: Path) -> None:
    async with serve_app(_upstream()) as up, aiohttp.ClientSession() as http:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump(_config(tmp_path, up, [{"name": "ims", "key": K1, "scopes": SCOPES}], [])))
        server = ServeProcess(cfg)
        await server.start()
        try:
            first = await _fingerprint(http, server.url)
            await _reload(server, cfg, "auth: {keys: [{name: ims}]\n", "reload refused")  # not even YAML
            await _reload(server, cfg, yaml.safe_dump({"auth": {"keys": [{"name": "ims", "key": K1, "scopes": ["nope"]}]}}), "reload refused")
            assert (await _turn(http, server.url, K1, "inv-1"))[0] == 200
            assert await _fingerprint(http, server.url) == first
            refused = [line for line in server.log if "reload refused" in line]
            assert f'in "{cfg}", line 2' in refused[0]  # the YAML error names the file
            assert "auth.keys[0].scopes" in refused[1]
        finally:
            assert await server.stop() == 0
