"""Logs an operator can use, from a real ``callgate serve``: one access line per
request, every line written while serving it carrying its ``request_id`` and
``call_id``, and an upstream failure at warning with its URL and no secret."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from proxy.demo.scripted_upstream import ScriptedReply, ScriptedUpstream

from .conftest import serve_app
from .lab import until
from .process import ServeProcess


def _json_lines(server: ServeProcess) -> list[dict[str, Any]]:
    out = []
    for line in server.log:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


async def test_access_and_request_lines_carry_request_id_and_call_id(tmp_path: Path) -> None:
    failing, healthy = ScriptedUpstream([ScriptedReply(status=503)], name="a"), ScriptedUpstream([ScriptedReply(content=["Hi."])], name="b")
    async with serve_app(failing.app()) as a_url, serve_app(healthy.app()) as b_url:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump({
            "upstreams": [
                {"name": "a", "base_url": f"{a_url}/v1?key=sk-in-the-query", "api_key": "sk-secret-upstream-key"},
                {"name": "b", "base_url": f"{b_url}/v1"},
            ],
            "storage": {"path": str(tmp_path / "cg.db")},
            "log_format": "json",
        }))
        server = ServeProcess(cfg)
        url = await server.start()
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/v1/chat/completions", json=body, headers={"X-Call-Id": "log-call-1"}) as r:
                assert r.status == 200
                await r.read()
            async with http.get(f"{url}/v1/calls/log-call-1") as r:
                record = await r.json()
        turn_id = record["turns"][0]["request_id"]

        def access(route: str) -> list[dict[str, Any]]:
            return [x for x in _json_lines(server) if x["logger"] == "callgate.access" and x.get("route") == route]

        await until(lambda: access("/v1/calls/{call_id}"), 10, "the call API's access line")
        await server.stop()
    line = access("/v1/chat/completions")[0]
    assert line["request_id"] == turn_id and line["call_id"] == "log-call-1"
    assert line["status"] == 200 and line["profile"] == "openai" and line["upstream"] == "b" and line["key"] == "-"
    assert line["bytes"] > 0 and line["duration_ms"] >= line["ttft_ms"] > 0
    assert access("/v1/calls/{call_id}")[0]["call_id"] == "log-call-1"
    warning = next(x for x in _json_lines(server) if x["logger"] == "callgate.relay" and "failed an attempt" in x["message"])
    assert warning["level"] == "warning" and warning["request_id"] == turn_id and warning["call_id"] == "log-call-1"
    assert warning["upstream_url"] == f"{a_url}/v1/chat/completions" and "503" in warning["message"]
    assert [ln for ln in server.log if "sk-secret-upstream-key" in ln or "sk-in-the-query" in ln] == []


async def test_log_access_false_writes_no_access_line(tmp_path: Path) -> None:
    up = ScriptedUpstream([ScriptedReply(content=["Hello", " there."])], name="a")
    async with serve_app(up.app()) as a_url:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump({"upstream": {"base_url": f"{a_url}/v1"}, "storage": {"path": str(tmp_path / "cg.db")},
                                       "log_access": False}))
        server = ServeProcess(cfg)
        url = await server.start()
        async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as r:
            assert r.status == 200
        await server.stop()
    assert not any("callgate.access" in ln for ln in server.log)
