"""The WebSocket front doors end to end: a client speaking Retell's custom LLM protocol
and one speaking ConversationRelay (as shared/reference/websocket-platforms.md gives
them), callgate, a scripted upstream on loopback, the call layer's webhook."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from proxy.demo.scripted_upstream import ScriptedReply, ScriptedUpstream, Stall, by_last_message
from proxy.server.services import SERVICES

from .conftest import Receiver, serve_app

KEY = "sk-door-key-0123456789"
AUTH = {"keys": [{"name": "platform", "key": KEY, "scopes": ["relay"]}]}

HANGUP = '<imsagent_hangup endword="Bye."/>'
REPLIES = {
    "bye": ScriptedReply(content=["Thank you for calling. ", '<imsagent_hangup endword="Goodbye!"/>']),
    "transfer": ScriptedReply(content=["One moment. ", '<imsagent_transfer_call callee="+15551234567" msg="Transferring you now."/>']),
    # then stalls until released (the test's gate), then hangs up
    "hold": ScriptedReply(content=["Let me check ", "that for you. ", HANGUP], stall=Stall(after=2)),
    "think": ScriptedReply(content=["<think>The caller wants ", "the hours.</think>", "We open at nine."]),
    # Mistral/Magistral: content as a list of parts, thinking among them (docs.mistral.ai, reasoning)
    "parts": ScriptedReply(raw=b"".join(
        b"data: " + json.dumps({"id": "p", "object": "chat.completion.chunk", "created": 1, "model": "magistral",
                                "choices": [{"index": 0, "delta": d, "finish_reason": f}]}).encode() + b"\n\n"
        for d, f in (({"role": "assistant", "content": ""}, None), ({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]}]}, None),
                     ({"content": [{"type": "text", "text": "In parts, "}]}, None), ({"content": [{"type": "text", "text": "as Mistral sends."}]}, None),
                     ({}, "stop"))
    ) + b"data: [DONE]\n\n"),
}


def upstream() -> ScriptedUpstream:
    """Answers by the last message: ``REPLIES`` or ``"Sure, one moment."``."""
    return ScriptedUpstream(by_last_message(REPLIES, ScriptedReply(content=["Sure, ", "one moment."])))


@pytest.fixture
async def servers() -> AsyncIterator[tuple[aiohttp.ClientSession, ScriptedUpstream, str, Receiver, str]]:
    """The client session, the scripted upstream and the webhook :class:`Receiver`; set up
    before ``stack`` so they outlive callgate (its end function still delivers at teardown)."""
    async with aiohttp.ClientSession() as http, serve_app((up := upstream()).app()) as up_url:
        recv = Receiver()
        async with serve_app(recv.app()) as hook:
            yield http, up, up_url, recv, hook


@pytest.fixture
async def door(servers: Any, stack: Any) -> Any:
    """``await door(**config)``: callgate before :func:`upstream`, with a webhook
    receiver for control events and an end-function step; ``.ws(path)`` opens a socket."""
    http, up, up_url, recv, hook = servers

    async def start(**cfg: Any) -> Any:
        cfg.setdefault("front_doors", {"retell": {"system_prompt": "Be brief."}, "conversation_relay": {"system_prompt": "Be brief."}})
        cfg.setdefault("end_function", {})
        cfg["end_function"] = {"steps": [{"name": "crm", "kind": "webhook", "url": f"{hook}/crm"}], **cfg["end_function"]}
        s = await stack([], upstream_url=f"{up_url}/v1", auth=AUTH, control={"webhook": {"url": f"{hook}/events"}}, **cfg)
        s.up, s.recv, s.http = up, recv, http
        s.ws = lambda path: http.ws_connect(f"{s.url}{path}{'&' if '?' in path else '?'}key={KEY}")
        return s

    return start


async def _retell_turn(ws: Any, rid: int, transcript: list[dict[str, str]]) -> tuple[str, dict[str, Any]]:
    """One ``response_required``: the content for ``rid`` and its last frame."""
    await ws.send_json({"interaction_type": "response_required", "response_id": rid, "transcript": transcript})
    content = ""
    while True:
        msg = await asyncio.wait_for(ws.receive_json(), 5)
        if msg.get("response_id") != rid:
            continue
        content += msg["content"]
        if msg["content_complete"]:
            return content, msg


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_retell_three_turns_ending_in_a_hangup(door: Any) -> None:
    s = await door()
    async with s.ws("/retell/v1/llm-websocket/rt-1") as ws:
        assert await ws.receive_json() == {"response_type": "config", "config": {"auto_reconnect": True, "call_details": True}}
        await ws.send_json({"interaction_type": "call_details", "call": {"call_id": "rt-1", "from_number": "+15550001111", "to_number": "+15550002222"}})
        t: list[dict[str, str]] = [{"role": "user", "content": "hello"}]
        assert await _retell_turn(ws, 1, t) == ("Sure, one moment.", {"response_type": "response", "response_id": 1, "content": "", "content_complete": True})
        t += [{"role": "agent", "content": "Sure, one moment."}, {"role": "user", "content": "and then"}]
        assert (await _retell_turn(ws, 2, t))[0] == "Sure, one moment."
        t += [{"role": "agent", "content": "Sure, one moment."}, {"role": "user", "content": "bye"}]
        content, last = await _retell_turn(ws, 3, t)
        assert content == "Thank you for calling. Goodbye!"
        assert last == {"response_type": "response", "response_id": 3, "content": "", "content_complete": True, "end_call": True}
    await s.recv.wait(lambda r: len(r.on("crm")) == 1 and len(r.on("events")) == 2)
    assert _types([json.loads(g["body"]) for g in s.recv.on("events")]) == ["hangup", "call.ended"]
    assert s.up.requests[2].body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert s.up.requests[2].body["messages"][1:] == [
        {"role": "user", "content": "hello"}, {"role": "assistant", "content": "Sure, one moment."},
        {"role": "user", "content": "and then"}, {"role": "assistant", "content": "Sure, one moment."}, {"role": "user", "content": "bye"},
    ]
    rec = await s.record("rt-1")
    assert [t["status"] for t in rec["turns"]] == ["ok", "ok", "ok"]
    assert all(t["ttft_ms"] is not None and t["duration_ms"] >= t["ttft_ms"] for t in rec["turns"])
    assert (rec["metadata"]["caller_number"], rec["metadata"]["callee_number"]) == ("+15550001111", "+15550002222")
    assert rec["end_reason"] == "agent_hangup" and len(s.recv.on("crm")) == 1


async def test_retell_transfer_sets_the_transfer_number(door: Any) -> None:
    s = await door()
    async with s.ws("/retell/v1/llm-websocket/rt-2") as ws:
        await ws.receive_json()
        content, last = await _retell_turn(ws, 1, [{"role": "user", "content": "transfer"}])
    assert content == "One moment. Transferring you now."
    assert last["transfer_number"] == "+15551234567" and "end_call" not in last
    await s.recv.wait(lambda r: len(r.on("events")) >= 1)
    ev = json.loads(s.recv.on("events")[0]["body"])
    assert (ev["type"], ev["callee"]) == ("transfer", "+15551234567")


async def test_retell_a_newer_response_id_interrupts_the_reply(door: Any) -> None:
    s = await door()
    async with s.ws("/retell/v1/llm-websocket/rt-3") as ws:
        await ws.receive_json()
        await ws.send_json({"interaction_type": "response_required", "response_id": 1, "transcript": [{"role": "user", "content": "hold"}]})
        heard = ""
        while heard != "Let me check that for you. ":  # the caller heard this much, then spoke again
            heard += (await asyncio.wait_for(ws.receive_json(), 5))["content"]
        content, _ = await _retell_turn(ws, 2, [{"role": "user", "content": "hold"}, {"role": "user", "content": "wait"}])
        assert content == "Sure, one moment."
        assert await s.up.wait_gone(0)  # the interrupted reply's upstream request was closed
        s.up.release()  # its hangup would come now: nobody reads it
    rec = await s.record("rt-3")
    assert [t["status"] for t in rec["turns"]] == ["barged_in", "ok"]
    assert rec["turns"][0]["spoken_text"] == "Let me check that for you. "
    assert "hangup" not in _types(rec["events"])


async def test_thinking_is_never_spoken_on_a_front_door(door: Any) -> None:
    s = await door()  # the default profile (openai) forwards thinking on the HTTP path
    async with s.ws("/retell/v1/llm-websocket/rt-8") as ws:
        await ws.receive_json()
        assert (await _retell_turn(ws, 1, [{"role": "user", "content": "think"}]))[0] == "We open at nine."
    async with s.ws("/conversation-relay/v1/ws") as ws:
        await ws.send_json(SETUP)
        assert await _relay_turn(ws, "think") == ("We open at nine.", [])
    assert (await s.record("rt-8"))["turns"][0]["reasoning_text"] == "The caller wants the hours."


async def test_a_platform_gone_mid_reply_is_recorded_as_such(door: Any) -> None:
    from proxy.core.door import StartTurn
    from proxy.core.retell import RetellConnection
    from proxy.server.doors.session import Session
    from proxy.server.doors.turn import run_turn

    s = await door()
    session = Session(s.app, None, "retell", RetellConnection("rt-9", 4096), transcript=False, owner="platform")  # type: ignore[arg-type]
    session.call_id = "rt-9"

    async def gone(turn: int, text: str) -> None:  # the socket's write fails: the platform is gone
        raise ConnectionResetError("Cannot write to closing transport")

    session.speak = gone  # type: ignore[method-assign]
    reply = await run_turn(session, StartTurn(1, "hello", (("user", "hello"),)))
    assert reply.hangup is None
    assert [t["status"] for t in (await s.record("rt-9"))["turns"]] == ["client_disconnected"]


async def test_retell_reconnect_continues_the_call(door: Any) -> None:
    s = await door(end_function={"after_hangup_s": 30})
    for rid in (1, 2):
        async with s.ws("/retell/v1/llm-websocket/rt-4") as ws:
            await ws.receive_json()
            assert (await _retell_turn(ws, rid, [{"role": "user", "content": "hello"}]))[0] == "Sure, one moment."
    await s.registry.drain()
    rec = await s.record("rt-4")
    assert len(rec["turns"]) == 2 and rec["ended_at"] is None and rec["generation"] == 1


def _refused(result: str) -> float:
    return REGISTRY.get_sample_value("callgate_front_door_frames_total", {"door": "retell", "result": result}) or 0.0


async def test_retell_bad_input(door: Any) -> None:
    s = await door(server={"max_body_bytes": 4096})
    unknown = _refused("unknown")
    async with s.ws("/retell/v1/llm-websocket/rt-5") as ws:
        await ws.receive_json()
        await ws.send_json({"interaction_type": "something_new"})
        await ws.send_json({"interaction_type": "ping_pong", "timestamp": 42})
        assert await ws.receive_json() == {"response_type": "ping_pong", "timestamp": 42}
        assert _refused("unknown") == unknown + 1
        async with s.ws("/retell/v1/llm-websocket/rt-5") as second:
            await second.receive()
            assert second.close_code == 4409
        assert (await _retell_turn(ws, 1, [{"role": "user", "content": "hello"}]))[0] == "Sure, one moment."
        await ws.send_str("{not json")
        assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1007
    async with s.ws("/retell/v1/llm-websocket/rt-6") as ws:
        await ws.receive_json()
        await ws.send_str(json.dumps({"interaction_type": "update_only", "transcript": [{"role": "user", "content": "x" * 5000}]}))
        assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1009
    assert [t["status"] for t in (await s.record("rt-5"))["turns"]] == ["ok"]  # what was recorded stays
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await s.http.ws_connect(f"{s.url}/retell/v1/llm-websocket/rt-7?key=wrong")
    assert e.value.status == 401


SETUP = {"type": "setup", "sessionId": "VX1", "callSid": "CA-1", "from": "+15550001111", "to": "+15550002222",
         "direction": "inbound", "customParameters": {}}


async def _relay_turn(ws: Any, said: str) -> tuple[str, list[dict[str, Any]]]:
    """One prompt: the tokens joined, and what came after the ``last`` one (``end``)."""
    await ws.send_json({"type": "prompt", "voicePrompt": said, "lang": "en-US", "last": True})
    text = ""
    while True:
        msg = await asyncio.wait_for(ws.receive_json(), 5)
        assert msg["type"] == "text"
        text += msg["token"]
        if msg["last"]:
            break
    after = []
    if "bye" in said or "transfer" in said:
        after.append(await asyncio.wait_for(ws.receive_json(), 5))
    return text, after


async def _action(s: Any, handoff: str) -> str:
    form = {"CallSid": "CA-1", "SessionId": "VX1", "SessionStatus": "ended", "HandoffData": handoff}
    async with s.http.post(f"{s.url}/conversation-relay/v1/action?key={KEY}", data=form) as r:
        assert r.status == 200 and r.content_type == "text/xml"
        return await r.text()


async def test_conversation_relay_three_turns_ending_in_a_hangup(door: Any) -> None:
    s = await door()
    async with s.ws("/conversation-relay/v1/ws") as ws:
        await ws.send_json(SETUP)
        assert await _relay_turn(ws, "hello") == ("Sure, one moment.", [])
        assert await _relay_turn(ws, "and then") == ("Sure, one moment.", [])
        text, after = await _relay_turn(ws, "bye")
        assert text == "Thank you for calling. Goodbye!"
        assert after[0]["type"] == "end" and json.loads(after[0]["handoffData"])["reasonCode"] == "hangup"
        twiml = await _action(s, after[0]["handoffData"])
    assert twiml.endswith("<Response><Hangup/></Response>")
    await s.recv.wait(lambda r: len(r.on("crm")) == 1 and len(r.on("events")) == 2)
    assert s.up.requests[2].body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert s.up.requests[2].body["messages"][1:] == [
        {"role": "user", "content": "hello"}, {"role": "assistant", "content": "Sure, one moment."},
        {"role": "user", "content": "and then"}, {"role": "assistant", "content": "Sure, one moment."}, {"role": "user", "content": "bye"},
    ]
    rec = await s.record("CA-1")
    assert [t["status"] for t in rec["turns"]] == ["ok", "ok", "ok"] and rec["metadata"]["caller_number"] == "+15550001111"


async def test_conversation_relay_transfer_dials_the_callee(door: Any) -> None:
    s = await door()
    async with s.ws("/conversation-relay/v1/ws") as ws:
        await ws.send_json(SETUP)
        text, after = await _relay_turn(ws, "transfer")
    assert text == "One moment. Transferring you now."
    handoff = json.loads(after[0]["handoffData"])
    assert (handoff["reasonCode"], handoff["callee"]) == ("transfer", "+15551234567")
    assert (await _action(s, after[0]["handoffData"])).endswith("<Response><Dial>+15551234567</Dial></Response>")


async def test_conversation_relay_interrupt_keeps_what_was_heard(door: Any) -> None:
    s = await door()
    async with s.ws("/conversation-relay/v1/ws") as ws:
        await ws.send_json(SETUP)
        await ws.send_json({"type": "prompt", "voicePrompt": "hold", "lang": "en-US", "last": True})
        sent = ""
        while sent != "Let me check that for you. ":
            sent += (await asyncio.wait_for(ws.receive_json(), 5))["token"]
        await ws.send_json({"type": "interrupt", "utteranceUntilInterrupt": "Let me", "durationUntilInterruptMs": 400})
        assert await s.up.wait_gone(0)
        s.up.release()
        assert (await _relay_turn(ws, "go on"))[0] == "Sure, one moment."
    assert s.up.requests[1].body["messages"][-2:] == [{"role": "assistant", "content": "Let me"}, {"role": "user", "content": "go on"}]
    rec = await s.record("CA-1")
    assert [(t["status"], t["spoken_text"], t["heard_text"]) for t in rec["turns"]] == [
        ("barged_in", "Let me check that for you. ", "Let me"), ("ok", "Sure, one moment.", None),
    ]
    assert "hangup" not in _types(rec["events"])


def _relay_frames(result: str) -> float:
    return REGISTRY.get_sample_value("callgate_front_door_frames_total", {"door": "conversation_relay", "result": result}) or 0.0


async def test_conversation_relay_bad_input(door: Any) -> None:
    s = await door()
    unknown, invalid = _relay_frames("unknown"), _relay_frames("invalid_json")
    async with s.ws("/conversation-relay/v1/ws") as ws:
        await ws.send_json({"type": "prompt", "voicePrompt": "hello", "lang": "en-US", "last": True})  # before setup: no call
        await ws.send_json({"type": "something_new"})
        await ws.send_json(SETUP)
        async with s.ws("/conversation-relay/v1/ws") as second:
            await second.send_json(SETUP)
            await second.receive()
            assert second.close_code == 4409
        assert await _relay_turn(ws, "hello") == ("Sure, one moment.", [])
        assert _relay_frames("unknown") == unknown + 2
        await ws.send_str("{not json")
        assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1007
    assert _relay_frames("invalid_json") == invalid + 1
    assert [t["status"] for t in (await s.record("CA-1"))["turns"]] == ["ok"]
    assert len(s.up.requests) == 1


# -- issue 27's bugs -----------------------------------------------------------------------


async def test_conversation_relay_keeps_an_interrupt_that_comes_after_the_reply_finished(door: Any) -> None:
    """Bug 1: the LLM is done long before the text-to-speech; an interrupt then was
    ignored, and the next turn's history and the record said the caller heard it all."""
    s = await door()
    async with s.ws("/conversation-relay/v1/ws") as ws:
        await ws.send_json(SETUP)
        assert (await _relay_turn(ws, "first"))[0] == "Sure, one moment."  # streamed to the end
        await ws.send_json({"type": "interrupt", "utteranceUntilInterrupt": "Sure,", "durationUntilInterruptMs": 300})
        assert (await _relay_turn(ws, "go on"))[0] == "Sure, one moment."
    assert s.up.requests[1].body["messages"][-3:] == [
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "Sure,"}, {"role": "user", "content": "go on"},
    ]
    rec = await s.record("CA-1")
    assert [(t["status"], t["spoken_text"], t["heard_text"]) for t in rec["turns"]] == [
        ("ok", "Sure, one moment.", "Sure,"), ("ok", "Sure, one moment.", None),
    ]


async def test_content_given_as_parts_is_spoken_on_a_front_door(door: Any) -> None:
    """Bug 3: the front doors read string content only: a Mistral upstream spoke nothing."""
    s = await door()
    async with s.ws("/conversation-relay/v1/ws") as ws:
        await ws.send_json(SETUP)
        assert (await _relay_turn(ws, "parts"))[0] == "In parts, as Mistral sends."
    async with s.ws("/retell/v1/llm-websocket/rt-parts") as ws:
        await ws.receive_json()
        assert (await _retell_turn(ws, 1, [{"role": "user", "content": "parts"}]))[0] == "In parts, as Mistral sends."
    assert (await s.record("rt-parts"))["turns"][0]["reasoning_text"] == "hmm"


async def test_a_socket_that_breaks_the_websocket_protocol_is_not_counted_too_big(door: Any) -> None:
    """Bug 7: every socket error was counted as too_big."""
    s = await door()
    before = (_refused("too_big"), _refused("protocol_error"))
    async with s.ws("/retell/v1/llm-websocket/rt-proto") as ws:
        await ws.receive_json()
        await ws.send_frame(b"\xff\xfe not utf-8", aiohttp.WSMsgType.TEXT)  # a text frame must be UTF-8 (RFC 6455 8.1)
        msg = await ws.receive()
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    assert (_refused("too_big"), _refused("protocol_error")) == (before[0], before[1] + 1)


async def test_a_turn_that_fails_unexpectedly_is_logged_and_answered(door: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Bug 7: a turn's task was never awaited: an unexpected error went unreported and
    the platform got no final frame."""
    s = await door()
    real = s.registry.begin_turn
    calls = []

    async def broken(*a: Any, **kw: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the database fell over")
        return await real(*a, **kw)

    s.registry.begin_turn = broken
    async with s.ws("/retell/v1/llm-websocket/rt-err") as ws:
        await ws.receive_json()
        content, last = await _retell_turn(ws, 1, [{"role": "user", "content": "hello"}])
        assert (content, last["content_complete"], last.get("end_call")) == ("", True, True)
        assert (await _retell_turn(ws, 2, [{"role": "user", "content": "hello"}]))[0] == "Sure, one moment."  # the socket lives on
    assert any("front door turn failed" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_an_open_socket_follows_a_reload(door: Any, tmp_path: Any) -> None:
    """Bug 11: a live WebSocket kept the config it opened with forever."""
    import yaml

    from proxy.server.reload import reload

    s = await door()
    async with s.ws("/conversation-relay/v1/ws") as ws:
        await ws.send_json(SETUP)
        await _relay_turn(ws, "one")
        services = s.app[SERVICES]
        data = services.config.model_dump(mode="json", exclude_none=True)
        data["front_doors"]["conversation_relay"]["system_prompt"] = "Be kind."
        path = tmp_path / "reloaded.yaml"
        path.write_text(yaml.safe_dump(data))
        assert await reload(services, str(path))
        await _relay_turn(ws, "two")
    assert s.up.requests[0].body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert s.up.requests[1].body["messages"][0] == {"role": "system", "content": "Be kind."}


async def test_a_front_door_turn_is_a_span_continuing_the_platforms_trace(door: Any, otlp: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 30: a span per turn on the socket, continuing the trace context the
    platform sent on its upgrade request."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    s = await door(telemetry={"otlp_endpoint": otlp.url})
    trace, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    url = f"{s.url}/retell/v1/llm-websocket/rt-span?key={KEY}"
    async with s.http.ws_connect(url, headers={"traceparent": f"00-{trace}-{parent}-01"}) as ws:
        await ws.receive_json()
        assert (await _retell_turn(ws, 1, [{"role": "user", "content": "hello"}]))[0] == "Sure, one moment."
    await otlp.wait(lambda r: any(sp.kind == "SERVER" for sp in r.spans))
    [turn] = [sp for sp in otlp.spans if sp.kind == "SERVER"]
    assert (turn.trace_id, turn.parent_span_id) == (trace, parent)
    assert (turn.attributes["callgate.door"], turn.attributes["session.id"], turn.attributes["callgate.turn.status"]) == ("retell", "rt-span", "ok")
