"""The request bodies the platforms document, replayed through their profiles against an
upstream that rejects unknown fields as api.openai.com does; and the profile
mechanics: call ids, metadata, argument shapes, the goodbye window, generations.

Bodies: Alibaba IMS "LLM standard interface" (``extendData`` with ``userData`` as a
JSON string), Vapi custom LLM (``call``, ``phoneNumber``, ``customer``,
``metadata``), ElevenLabs custom LLM (``user_id``, ``elevenlabs_extra_body``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from proxy.cli import main
from proxy.config import parse_config
from proxy.core.commands import Command
from proxy.core.function_map import FunctionMap, FunctionSpec
from proxy.core.sse import SSEDecoder
from proxy.core.tool_calls import ToolCall
from proxy.demo.scripted_upstream import OPENAI_FIELDS, ScriptedReply
from proxy.profiles import resolve_profiles


def tool(name: str, args: dict[str, Any], call_id: str = "call_1") -> list[dict[str, Any]]:
    """A streamed tool call: the head, then the arguments in two pieces."""
    text = json.dumps(args, ensure_ascii=False)
    cut = len(text) // 2
    return [
        {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}},
        {"index": 0, "function": {"arguments": text[:cut]}},
        {"index": 0, "function": {"arguments": text[cut:]}},
    ]


async def replay(url: str, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    """POST the body as the platform sends it; what the runtime receives."""
    async with aiohttp.ClientSession() as http:
        async with http.post(url + path, json=body, headers=headers or {}) as resp:
            raw = await resp.read()
            assert resp.status == 200, raw
            call_id = resp.headers["X-Call-Id"]
    dec = SSEDecoder()
    content, calls, finish, mixed = "", [], None, 0
    for ev in dec.feed(raw) + dec.close():
        if not ev.data or ev.data == "[DONE]":
            continue
        for ch in json.loads(ev.data).get("choices", []):
            delta = ch.get("delta") or {}
            content += delta.get("content") or ""
            calls += delta.get("tool_calls") or []
            finish = ch.get("finish_reason") or finish
            mixed += bool(delta.get("content") and delta.get("tool_calls"))
    return {"content": content, "tool_calls": assembled(calls), "finish": finish, "call_id": call_id, "mixed": mixed}


def assembled(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    calls: dict[int, dict[str, Any]] = {}
    for e in entries:
        c = calls.setdefault(e.get("index", 0), {"name": "", "arguments": ""})
        fn = e.get("function") or {}
        c["name"] = c["name"] or fn.get("name", "")
        c["arguments"] += fn.get("arguments") or ""
    return [{"name": c["name"], "arguments": json.loads(c["arguments"] or "{}")} for _, c in sorted(calls.items())]


async def events_until_end(url: str, call_id: str, timeout: float = 5) -> list[dict[str, Any]]:
    """The call's control events, read from its SSE stream until ``call.ended``."""
    async def read() -> list[dict[str, Any]]:
        out = []
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/v1/calls/{call_id}/events") as resp:
                async for line in resp.content:
                    if line.startswith(b"data: "):
                        out.append(json.loads(line[6:]))
        return out

    return await asyncio.wait_for(read(), timeout)


async def get_record(url: str, call_id: str, query: str = "") -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/v1/calls/{call_id}{query}") as resp:
            assert resp.status == 200
            return await resp.json()


def upstream_fields(s: Any) -> set[str]:
    return {k for r in s.upstream.requests for k in r.body}


WINDOW = {"after_hangup_s": 0.2}

# -- IMS -----------------------------------------------------------------------------

IMS_EXTEND = {
    "instanceId": "68e00b6640e3e943332fee7",
    "channelId": "123",
    "sentenceId": "3",
    "callerNumber": "+8613800138000",
    "calleeNumber": "057188886666",
    "userData": '{"crm_id": "A-17", "tier": "gold"}',
}


def ims_body(text: str, sentence: str) -> dict[str, Any]:
    return {
        "model": "qwen-plus",
        "stream": True,
        "messages": [{"role": "system", "content": "你是宽带客服。"}, {"role": "user", "content": text}],
        "extendData": {**IMS_EXTEND, "sentenceId": sentence},
    }


async def test_ims_body_through_the_ims_profile(stack: Any) -> None:
    s = await stack(
        [
            ScriptedReply(content=["好的，我帮您转人工。"], tool_calls=tool("transfer_call", {"callee": "10086", "msg": "正在为您转接"}), finish_reason="tool_calls"),
            ScriptedReply(content=["不客气，", '<imsagent_hang', 'up endword="再见！"/>']),
        ],
        strict=True,
        end_function=WINDOW,
    )
    first = await replay(s.url, "/ims/v1/chat/completions", ims_body("帮我转人工", "3"))
    second = await replay(s.url, "/ims/v1/chat/completions", ims_body("谢谢，没事了", "4"))
    # IMS carries out the tags itself: the transfer tool call reaches it as the canonical tag
    assert first["content"] == '好的，我帮您转人工。<imsagent_transfer_call callee="10086" msg="正在为您转接"/>'
    assert first["tool_calls"] == [] and first["finish"] == "stop"
    assert second["content"] == '不客气，<imsagent_hangup endword="再见！"/>'
    call_id = first["call_id"]
    assert call_id == second["call_id"] == IMS_EXTEND["instanceId"]
    events = await events_until_end(s.url, call_id)
    assert [(e["type"], e.get("callee"), e.get("closing_text")) for e in events] == [
        ("transfer", "10086", "正在为您转接"),
        ("hangup", None, "再见！"),
        ("call.ended", None, None),
    ]
    assert upstream_fields(s) <= OPENAI_FIELDS and "extendData" not in upstream_fields(s)
    record = await get_record(s.url, call_id)
    assert [t["user_text"] for t in record["turns"]] == ["帮我转人工", "谢谢，没事了"]
    meta = record["metadata"]
    assert (meta["caller_number"], meta["callee_number"], meta["runtime_call_id"]) == ("+8613800138000", "057188886666", IMS_EXTEND["instanceId"])
    assert meta["userData"] == {"crm_id": "A-17", "tier": "gold"}  # IMS sends it as a JSON string
    assert meta["channelId"] == "123"


async def test_without_the_profile_the_strict_upstream_refuses_ims_bodies(stack: Any) -> None:
    """What a user saw before profiles: extendData reaches the provider, which answers 400."""
    s = await stack([ScriptedReply(content=["hi"])], strict=True)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{s.url}/v1/chat/completions", json=ims_body("hi", "1")) as resp:
            assert resp.status == 400
            assert "Unrecognized request argument supplied: extendData" in (await resp.json())["error"]["message"]


# -- Vapi ----------------------------------------------------------------------------

VAPI_TOOLS = [
    {"type": "function", "function": {"name": "endCall", "description": "End the call.", "parameters": {"type": "object", "properties": {}}}},
    {
        "type": "function",
        "function": {
            "name": "transferCall",
            "description": "Transfer the call.",
            "parameters": {"type": "object", "properties": {"destination": {"type": "object"}}, "required": ["destination"]},
        },
    },
]


def vapi_body(text: str) -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": "You are a receptionist."}, {"role": "user", "content": text}],
        "temperature": 0.7,
        "max_tokens": 250,
        "stream": True,
        "tools": VAPI_TOOLS,
        "call": {"id": "vapi-call-8f2", "orgId": "org-1", "type": "inboundPhoneCall", "customer": {"number": "+14155550100"}},
        "phoneNumber": {"id": "pn-1", "number": "+14155550199"},
        "customer": {"number": "+14155550100"},
        "metadata": {"crm": "A-17"},
    }


async def test_vapi_body_through_the_vapi_profile(stack: Any) -> None:
    destination = {"type": "number", "number": "+14155550123"}
    s = await stack(
        [
            ScriptedReply(content=["Let me connect you."], tool_calls=tool("transferCall", {"destination": destination}), finish_reason="tool_calls"),
            ScriptedReply(content=["Thanks for calling."], tool_calls=tool("endCall", {}, "call_2"), finish_reason="tool_calls"),
        ],
        strict=True,
        end_function=WINDOW,
    )
    first = await replay(s.url, "/vapi/v1/chat/completions", vapi_body("Put me through to sales."))
    second = await replay(s.url, "/vapi/v1/chat/completions", vapi_body("Actually, never mind. Bye."))
    assert first["content"] == "Let me connect you."
    assert first["tool_calls"] == [{"name": "transferCall", "arguments": {"destination": destination}}]
    assert first["finish"] == "tool_calls" and first["mixed"] == 0
    assert second["content"] == "Thanks for calling."
    assert second["tool_calls"] == [{"name": "endCall", "arguments": {}}]
    call_id = first["call_id"]
    assert call_id == second["call_id"] == "vapi-call-8f2"
    events = await events_until_end(s.url, call_id)
    assert [(e["type"], e.get("callee"), e["source"]) for e in events] == [
        ("transfer", "+14155550123", "tool_call"),
        ("hangup", None, "tool_call"),
        ("call.ended", None, "tool_call"),
    ]
    assert not upstream_fields(s) & {"call", "phoneNumber", "customer", "metadata"}
    record = await get_record(s.url, call_id)
    assert len(record["turns"]) == 2
    assert (record["metadata"]["caller_number"], record["metadata"]["callee_number"]) == ("+14155550100", "+14155550199")
    assert record["metadata"]["metadata"] == {"crm": "A-17"}


# -- ElevenLabs ------------------------------------------------------------------------

def elevenlabs_body(text: str) -> dict[str, Any]:
    return {
        "messages": [{"role": "system", "content": "You are a support agent."}, {"role": "user", "content": text}],
        "model": "gpt-4o",
        "temperature": 0.5,
        "max_tokens": 5000,
        "stream": True,
        "user_id": "user-77",
        "tools": [
            {"type": "function", "function": {"name": "end_call", "parameters": {"type": "object", "properties": {"reason": {"type": "string"}, "message": {"type": "string"}}, "required": ["reason"]}}},
            {"type": "function", "function": {"name": "transfer_to_number", "parameters": {"type": "object", "properties": {}}}},
        ],
        "elevenlabs_extra_body": {"conversation_id": "conv_el_1", "caller_number": "+447700900123"},
    }


async def test_elevenlabs_body_through_the_elevenlabs_profile(stack: Any) -> None:
    transfer = {"reason": "Complex billing issue", "transfer_number": "+15551234567", "client_message": "Connecting you now.", "agent_message": "Billing dispute."}
    s = await stack(
        [
            ScriptedReply(tool_calls=tool("transfer_to_number", transfer), finish_reason="tool_calls"),
            ScriptedReply(tool_calls=tool("end_call", {"reason": "Task completed", "message": "Goodbye!"}, "call_2"), finish_reason="tool_calls"),
        ],
        strict=True,
        end_function=WINDOW,
    )
    first = await replay(s.url, "/elevenlabs/v1/chat/completions", elevenlabs_body("I was billed twice."))
    second = await replay(s.url, "/elevenlabs/v1/chat/completions", elevenlabs_body("Thanks, that's all."))
    # ElevenLabs executes its system tools itself: they reach it in their own shape
    assert first["tool_calls"] == [{"name": "transfer_to_number", "arguments": transfer}]
    assert second["tool_calls"] == [{"name": "end_call", "arguments": {"reason": "Task completed", "message": "Goodbye!"}}]
    assert first["call_id"] == second["call_id"] == "conv_el_1"
    events = await events_until_end(s.url, "conv_el_1")
    assert [(e["type"], e.get("callee"), e.get("closing_text")) for e in events] == [
        ("transfer", "+15551234567", "Connecting you now."),
        ("hangup", None, "Goodbye!"),
        ("call.ended", None, None),
    ]
    assert not upstream_fields(s) & {"user_id", "elevenlabs_extra_body"}
    record = await get_record(s.url, "conv_el_1")
    assert record["metadata"]["caller_number"] == "+447700900123" and record["metadata"]["user_id"] == "user-77"
    assert len(record["turns"]) == 2


async def test_elevenlabs_end_call_message_is_spoken_in_strip_mode(stack: Any) -> None:
    """With the profile's FunctionMap but output strip, "Goodbye!" is spoken by callgate."""
    s = await stack(
        [ScriptedReply(content=["All set. "], tool_calls=tool("end_call", {"reason": "done", "message": "Goodbye!"}), finish_reason="tool_calls")],
        strict=True,
        profiles={"elevenlabs": {"output": "strip"}},
    )
    got = await replay(s.url, "/elevenlabs/v1/chat/completions", elevenlabs_body("bye"))
    assert got["content"] == "All set. Goodbye!" and got["tool_calls"] == [] and got["finish"] == "stop"


# -- profile mechanics -------------------------------------------------------------------

async def test_livekit_room_header_is_the_call_and_session_header_is_not(stack: Any) -> None:
    s = await stack([ScriptedReply(content=["one"]), ScriptedReply(content=["two"])])
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    a = await replay(s.url, "/livekit/v1/chat/completions", body, {"X-LiveKit-Room-ID": "RM_abc", "X-LiveKit-Session-ID": "inference_1"})
    b = await replay(s.url, "/livekit/v1/chat/completions", body, {"X-LiveKit-Room-ID": "RM_abc", "X-LiveKit-Session-ID": "inference_2"})
    assert a["call_id"] == b["call_id"] == "RM_abc"


async def test_user_is_not_a_call_id(stack: Any) -> None:
    s = await stack([ScriptedReply(content=["one"])])
    body = {"model": "m", "stream": True, "user": "customer-7", "messages": [{"role": "user", "content": "hi"}]}
    a = await replay(s.url, "/v1/chat/completions", body)
    b = await replay(s.url, "/v1/chat/completions", body)
    assert a["call_id"] != b["call_id"] and "customer-7" not in (a["call_id"], b["call_id"])


async def test_unknown_profile_is_a_404_in_openai_shape(stack: Any) -> None:
    s = await stack([ScriptedReply(content=["x"])])
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{s.url}/nope/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "profile_not_found"


async def test_upstream_drop_fields_apply_to_every_profile(stack: Any) -> None:
    s = await stack([ScriptedReply(content=["x"])], strict=True, upstream={"drop_fields": ["session_vars"]})
    body = {"model": "m", "stream": True, "session_vars": {"a": 1}, "messages": [{"role": "user", "content": "x"}]}
    got = await replay(s.url, "/v1/chat/completions", body, {"X-Call-Id": "drop-1"})
    assert got["content"] == "x"
    assert (await get_record(s.url, "drop-1"))["metadata"]["session_vars"] == {"a": 1}


async def test_goodbye_turn_inside_the_window_is_a_turn_of_the_call(stack: Any) -> None:
    s = await stack(
        [ScriptedReply(tool_calls=tool("end_call", {}), finish_reason="tool_calls"), ScriptedReply(content=["Goodbye!"])],
        end_function={"after_hangup_s": 0.3},
    )
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "bye"}]}
    headers = {"X-Call-Id": "win-1"}
    first = await replay(s.url, "/livekit/v1/chat/completions", body, headers)
    second = await replay(s.url, "/livekit/v1/chat/completions", body, headers)
    assert first["tool_calls"] == [{"name": "end_call", "arguments": {}}] and second["content"] == "Goodbye!"
    events = await events_until_end(s.url, "win-1")
    assert [e["type"] for e in events] == ["hangup", "call.ended"]
    record = await get_record(s.url, "win-1")
    assert [t["spoken_text"] for t in record["turns"]] == ["", "Goodbye!"]
    assert record["transcript"][-1] == {"role": "assistant", "text": "Goodbye!"}


async def test_post_end_inside_the_window_ends_at_once(stack: Any) -> None:
    s = await stack([ScriptedReply(content=['<imsagent_hangup endword="Bye"/>'])], end_function={"after_hangup_s": 60})
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "bye"}]}
    await replay(s.url, "/v1/chat/completions", body, {"X-Call-Id": "win-2"})
    assert not s.registry.get("win-2").ended
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{s.url}/v1/calls/win-2/end", json={"reason": "caller_hangup"}) as resp:
            assert (await resp.json())["already_ended"] is False
    assert [e["type"] for e in await events_until_end(s.url, "win-2")] == ["hangup", "call.ended"]


async def test_an_id_whose_call_ended_starts_a_new_call_and_the_old_one_stays_readable(stack: Any) -> None:
    s = await stack([ScriptedReply(content=["first"]), ScriptedReply(content=["second"])])
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    await replay(s.url, "/v1/chat/completions", body, {"X-Call-Id": "gen"})
    async with aiohttp.ClientSession() as http:
        await (await http.post(f"{s.url}/v1/calls/gen/end", json={"reason": "caller_hangup"})).read()
    again = await replay(s.url, "/v1/chat/completions", body, {"X-Call-Id": "gen"})
    assert again["call_id"] == "gen"  # the runtime's id, not callgate's record key
    newest = await get_record(s.url, "gen")
    assert (newest["id"], newest["call_id"], newest["generation"], newest["status"]) == ("gen", "gen", 2, "active")
    assert newest["key"] == "gen~2"
    assert [t["spoken_text"] for t in newest["turns"]] == ["second"]
    first = await get_record(s.url, "gen", "?generation=1")
    assert (first["id"], first["generation"], first["status"], [t["spoken_text"] for t in first["turns"]]) == (
        "gen", 1, "ended", ["first"]
    )
    assert (await get_record(s.url, "gen", "?generation=2"))["key"] == "gen~2"


# -- argument shapes, without HTTP ----------------------------------------------------------

def test_vapi_transfer_shape_reads_and_writes() -> None:
    spec = next(e for e in resolve_profiles(parse_config({}))["vapi"].settings.function_map if e.function == "transfer")
    fmap = FunctionMap([spec])
    args = {"destination": {"type": "number", "number": "+14155550123", "message": "One moment."}}
    cmd = fmap.command(ToolCall(0, "c1", "transferCall", json.dumps(args)))
    assert isinstance(cmd, Command) and cmd.args == {"callee": "+14155550123", "msg": "One moment."}
    assert spec.write(cmd) == {"destination": {"type": "number", "number": "+14155550123", "message": "One moment."}}
    # a bare string destination is read too (the alternatives are tried in order)
    cmd2 = fmap.command(ToolCall(0, "c2", "transferCall", '{"destination": "+14155550124"}'))
    assert isinstance(cmd2, Command) and cmd2.args["callee"] == "+14155550124"


def test_a_text_command_becomes_the_runtimes_tool_call() -> None:
    spec = FunctionSpec("hangup", "end_call", {"endword": ("message",)}, {"reason": "done"})
    cmd = Command("hangup", {"endword": "Bye!", "outcome": "lead"}, "text_command", "<imsagent_hangup .../>")
    assert spec.write(cmd) == {"reason": "done", "message": "Bye!"}


def test_callgate_check_prints_every_profile(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("profiles:\n  vapi: {output: strip}\n  mine: {extends: livekit}\n")
    assert main(["check", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    for name in ("openai", "ims", "vapi", "elevenlabs", "livekit", "pipecat", "mine"):
        assert f"profile {name}" in out
    assert "/vapi/v1" in out and "output strip" in out


def test_a_profile_extending_an_unknown_one_is_a_config_error() -> None:
    from proxy.errors import ConfigError

    with pytest.raises(ConfigError, match="extends"):
        parse_config({"profiles": {"mine": {"extends": "nope"}}})
