"""callgate end to end: a real scripted upstream, callgate, and the official openai
client as the agent runtime, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

from proxy.demo.scripted_upstream import FOREVER, ScriptedReply, Stall

from . import hooks
from .conftest import Receiver, fixture_names, fixture_stream, serve_app

HANGUP = ScriptedReply(content=["好的，", "感谢您的耐心。", "<imsagent_ha", 'ngup endword="再见！"/>', "(never spoken)"])
TRANSFER = ScriptedReply(
    content=["Let me get a colleague. ", "<imsagent_transfer_call caller=111111, ", 'callee=123456, err_msg="Sorry, busy.", msg="Transferring now..."/>']
)
PLAIN = ScriptedReply(content=["Hello", ", how can I help?"])


def client(url: str, call_id: str | None = None, **kw: Any) -> AsyncOpenAI:
    headers = {"X-Call-Id": call_id} if call_id else {}
    return AsyncOpenAI(base_url=f"{url}/v1", api_key="runtime-key", default_headers=headers, max_retries=0, **kw)


async def speak(c: AsyncOpenAI, text: str = "hi", **kw: Any) -> tuple[str, list[Any], str | None]:
    """Stream one reply; returns (content heard, tool call deltas, finish_reason)."""
    stream = await c.chat.completions.create(model="m", messages=[{"role": "user", "content": text}], stream=True, **kw)
    heard, tools, finish = "", [], None
    async for chunk in stream:
        for ch in chunk.choices:
            heard += ch.delta.content or ""
            tools += ch.delta.tool_calls or []
            finish = ch.finish_reason or finish
    return heard, tools, finish


async def raw_post(url: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s:
        async with s.post(url + path, data=body, headers=headers or {"Content-Type": "application/json"}) as r:
            return r.status, await r.read()


# -- faithful relay ----------------------------------------------------------------

@pytest.mark.parametrize("name", fixture_names() or ["content-plain.sse"])
async def test_recorded_streams_arrive_byte_for_byte(stack: Any, name: str) -> None:
    # recorded with stream_options.include_usage, as the runtime asks here: its usage chunk is its own
    data = fixture_stream(name)
    s = await stack([ScriptedReply(raw=data, split_at=list(range(0, len(data), 97)))])
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                       "stream_options": {"include_usage": True}}).encode()
    status, got = await raw_post(s.url, "/v1/chat/completions", body)
    assert status == 200
    assert got == data


async def test_the_usage_chunk_callgate_asked_for_is_not_forwarded(stack: Any) -> None:
    data = fixture_stream("content-plain.sse")
    s = await stack([ScriptedReply(raw=data, split_at=list(range(0, len(data), 97)))])
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
    status, got = await raw_post(s.url, "/v1/chat/completions", body)
    assert status == 200
    usage_event = next(e + b"\n\n" for e in data.split(b"\n\n") if b'"choices":[],"usage"' in e)
    assert got == data.replace(usage_event, b"")
    assert s.upstream.requests[0].body["stream_options"] == {"include_usage": True}


async def test_openai_client_reads_a_recorded_tool_call_stream(stack: Any) -> None:
    s = await stack([ScriptedReply(raw=fixture_stream("tool-call-single.sse"))])
    _, tools, finish = await speak(client(s.url))
    assert tools[0].function.name == "GetWeatherArgs"
    args = "".join(t.function.arguments or "" for t in tools)
    assert json.loads(args)  # the arguments assembled from 14 deltas are JSON
    assert finish == "tool_calls"


async def test_body_unchanged_and_upstream_key_replaces_authorization(stack: Any) -> None:
    s = await stack([PLAIN], upstream={"api_key": "sk-upstream"})
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True, "temperature": 0.3, "x_extra": [1]}
    await raw_post(s.url, "/v1/chat/completions", json.dumps(body).encode(), {"Authorization": "Bearer client", "Content-Type": "application/json"})
    got = s.upstream.requests[0]
    assert got.body == {**body, "stream_options": {"include_usage": True}}  # for the turn's usage and cost
    assert got.headers["Authorization"] == "Bearer sk-upstream"


async def test_include_usage_false_leaves_the_body_as_it_came(stack: Any) -> None:
    s = await stack([PLAIN], upstream={"include_usage": False})
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True, "temperature": 0.3}
    raw = json.dumps(body).encode()
    await raw_post(s.url, "/v1/chat/completions", raw, {"Content-Type": "application/json"})
    assert s.upstream.requests[0].body == body


async def test_client_key_is_forwarded_when_no_upstream_key(stack: Any) -> None:
    s = await stack([PLAIN])
    await speak(client(s.url))
    assert s.upstream.requests[0].headers["Authorization"] == "Bearer runtime-key"


async def test_models_relayed(stack: Any) -> None:
    s = await stack([PLAIN])
    models = await client(s.url).models.list()
    assert [m.id for m in models.data] == ["scripted-1"]


# -- output modes through the official client ---------------------------------------

async def test_strip_mode_end_to_end(stack: Any) -> None:
    s = await stack([HANGUP])
    heard, tools, finish = await speak(client(s.url, "call-strip"))
    assert heard == "好的，感谢您的耐心。再见！"
    assert tools == [] and finish == "stop"
    call = await s.record("call-strip")
    events = call["events"]
    assert [e["type"] for e in events] == ["hangup", "call.ended"]
    assert events[0]["endword"] == "再见！" and events[0]["closing_text"] == "再见！"
    assert events[1]["reason"] == "agent_hangup" and events[1]["source"] == "text_command"
    turn = call["turns"][0]
    assert turn["raw_text"] == "".join(HANGUP.content)
    assert turn["spoken_text"] == heard and turn["user_text"] == "hi" and turn["status"] == "ok"
    assert turn["ttft_ms"] is not None and turn["duration_ms"] >= turn["ttft_ms"]


async def test_tool_calls_mode_end_to_end(stack: Any) -> None:
    s = await stack([TRANSFER], commands={"output": "tool_calls"})
    heard, tools, finish = await speak(client(s.url, "call-tc"))
    assert heard == "Let me get a colleague. "
    assert finish == "tool_calls"
    assert len(tools) == 1 and tools[0].function.name == "transfer_call"
    assert json.loads(tools[0].function.arguments)["callee"] == "123456"


async def test_text_mode_end_to_end_from_a_tool_call(stack: Any) -> None:
    entries = [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "transfer_call", "arguments": ""}},
               {"index": 0, "function": {"arguments": '{"callee": "1001", "msg": "转接中"}'}}]
    s = await stack([ScriptedReply(tool_calls=entries, finish_reason="tool_calls")], commands={"output": "text"})
    heard, tools, finish = await speak(client(s.url, "call-text"))
    assert heard == '<imsagent_transfer_call callee="1001" msg="转接中"/>'
    assert tools == [] and finish == "stop"
    ev = (await s.record("call-text"))["events"][0]
    assert (ev["type"], ev["source"], ev["callee"], ev["tool_call_id"]) == ("transfer", "tool_call", "1001", "call_1")


async def test_passthrough_mode_end_to_end(stack: Any) -> None:
    s = await stack([HANGUP], commands={"output": "passthrough"})
    heard, _, _ = await speak(client(s.url, "call-pt"))
    assert heard == "".join(HANGUP.content)
    assert [e["type"] for e in (await s.record("call-pt"))["events"]][:1] == ["hangup"]


@pytest.mark.parametrize("mode", ["strip", "passthrough", "tool_calls", "text"])
async def test_non_streamed_every_mode_parses(stack: Any, mode: str) -> None:
    s = await stack([TRANSFER], commands={"output": mode})
    resp = await client(s.url, f"call-ns-{mode}").chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    msg = resp.choices[0].message
    if mode == "tool_calls":
        assert msg.tool_calls[0].function.name == "transfer_call"
    elif mode == "strip":
        assert msg.content == "Let me get a colleague. Transferring now..."
    assert [e["type"] for e in (await s.record(f"call-ns-{mode}"))["events"]] == ["transfer"]


# -- calls, events, end function ------------------------------------------------------

async def test_call_id_from_ims_extend_data(stack: Any) -> None:
    s = await stack([PLAIN])
    await speak(client(s.url), extra_body={"extendData": {"instanceId": "ims-42", "channelId": "c"}})
    assert (await s.record("ims-42"))["metadata"]["runtime_call_id"] == "ims-42"


async def test_anonymous_request_is_its_own_call(stack: Any) -> None:
    s = await stack([PLAIN], end_function={"steps": [{"name": "r", "kind": "python", "function": "tests.hooks:record"}]})
    before = len(hooks.CALLS)
    raw = await client(s.url).chat.completions.with_raw_response.create(model="m", messages=[{"role": "user", "content": "x"}])
    call_id = raw.headers["x-call-id"]  # the id callgate gave the request
    await s.pipeline.wait_call(call_id, 5)
    call = await s.record(call_id)
    assert call["anonymous"] and call["end_reason"] == "response_finished"
    assert len(hooks.CALLS) == before + 1


async def test_late_subscriber_gets_earlier_events_and_resumes(stack: Any) -> None:
    s = await stack([TRANSFER, HANGUP])
    c = client(s.url, "call-sse")
    await speak(c)
    await speak(c)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{s.url}/v1/calls/call-sse/events") as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            assert r.headers["X-Accel-Buffering"] == "no" and r.headers["Cache-Control"] == "no-cache"
            body = (await asyncio.wait_for(r.read(), 5)).decode()
        assert [l[7:] for l in body.splitlines() if l.startswith("event: ")] == ["transfer", "hangup", "call.ended"]
        assert [l[4:] for l in body.splitlines() if l.startswith("id: ")] == ["1", "2", "3"]
        async with http.get(f"{s.url}/v1/calls/call-sse/events", headers={"Last-Event-ID": "2"}) as r:
            body = (await asyncio.wait_for(r.read(), 5)).decode()
        assert [l[7:] for l in body.splitlines() if l.startswith("event: ")] == ["call.ended"]


async def test_live_subscriber_sees_events_as_they_happen(stack: Any) -> None:
    s = await stack([TRANSFER])
    got: list[dict[str, Any]] = []
    subscribed = asyncio.Event()

    async def subscribe() -> None:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{s.url}/v1/calls/call-live/events") as r:
                subscribed.set()
                async for line in r.content:
                    if line.startswith(b"data: "):
                        got.append(json.loads(line[6:]))

    task = asyncio.create_task(subscribe())
    await asyncio.wait_for(subscribed.wait(), 5)
    assert s.registry.get("call-live") is None  # subscribing creates nothing
    await speak(client(s.url, "call-live"))
    status, _ = await raw_post(s.url, "/v1/calls/call-live/end", json.dumps({"reason": "caller_hangup"}).encode())
    assert status == 200
    await asyncio.wait_for(task, 5)
    assert [e["type"] for e in got] == ["transfer", "call.ended"]
    assert got[0]["callee"] == "123456" and got[0]["caller"] == "111111" and got[0]["err_msg"] == "Sorry, busy."
    assert got[1]["source"] == "call_layer" and got[1]["reason"] == "caller_hangup"


async def test_end_is_idempotent_and_end_function_runs_once(stack: Any) -> None:
    recv = Receiver()
    async with serve_app(recv.app()) as crm:
        steps = [
            {"name": "boom", "kind": "python", "function": "tests.hooks:explode", "retry": {"attempts": 3, "backoff_s": 0.01}},
            {"name": "rec", "kind": "python", "function": "tests.hooks:record_async"},
            {"name": "crm", "kind": "webhook", "url": f"{crm}/calls"},
        ]
        s = await stack([PLAIN], end_function={"steps": steps})
        await speak(client(s.url, "call-end"))
        end = json.dumps({"reason": "caller_hangup", "state": {"intent": "billing"}}).encode()
        status1, body1 = await raw_post(s.url, "/v1/calls/call-end/end", end)
        status2, body2 = await raw_post(s.url, "/v1/calls/call-end/end", end)
        assert (status1, json.loads(body1)["already_ended"]) == (200, False)
        assert (status2, json.loads(body2)["already_ended"]) == (200, True)
        [record] = await recv.wait_for(1)
        jobs = await s.pipeline.wait_call("call-end", 5)
        assert [(j.step, j.status) for j in jobs] == [("boom", "failed"), ("rec", "done"), ("crm", "done")]
        assert "boom for call-end" in jobs[0].last_error and jobs[0].attempts == 3
        assert record["id"] == "call-end" and record["state"] == {"intent": "billing"}
        assert record["end_reason"] == "caller_hangup"
        assert record["transcript"] == [{"role": "user", "text": "hi"}, {"role": "assistant", "text": "Hello, how can I help?"}]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{s.url}/v1/calls/call-end") as r:
                got = await r.json()
        assert got["end_function"]["status"] == "failed" and len(got["end_function"]["steps"]) == 3
        assert len(recv.bodies) == 1


async def test_end_function_after_hangup_sees_the_finished_turn(stack: Any) -> None:
    recv = Receiver()
    async with serve_app(recv.app()) as crm:
        s = await stack([HANGUP], end_function={"steps": [{"name": "crm", "kind": "webhook", "url": f"{crm}/c"}]})
        await speak(client(s.url, "call-h"))
        [record] = await recv.wait_for(1)
        assert record["end_reason"] == "agent_hangup"
        assert record["turns"][0]["status"] == "ok"
        assert record["turns"][0]["spoken_text"] == "好的，感谢您的耐心。再见！"


async def test_idle_timeout_ends_the_call(stack: Any) -> None:
    steps = [{"name": "outcome", "kind": "outcome"}]
    s = await stack([PLAIN], end_function={"idle_timeout_s": 0.2, "steps": steps})
    await speak(client(s.url, "call-idle"))
    [job] = await s.pipeline.wait_call("call-idle")
    call = await s.record("call-idle")
    assert call["end_reason"] == "idle_timeout"
    assert call["events"][-1]["source"] == "idle_timeout"
    assert job.status == "done" and job.output == {"tags": ["idle_timeout"]}


async def test_one_hangup_per_call_however_often_repeated(stack: Any) -> None:
    """A second hangup inside the after-hangup window is rejected and not spoken."""
    s = await stack([HANGUP, HANGUP], end_function={"after_hangup_s": 30})
    c = client(s.url, "call-dup")
    await speak(c)
    heard, _, _ = await speak(c)
    assert heard == "好的，感谢您的耐心。"
    types = [e["type"] for e in (await s.record("call-dup"))["events"]]
    assert types == ["hangup", "command.rejected"]


async def test_control_webhook_gets_every_event_in_order_with_retries(stack: Any) -> None:
    recv = Receiver(statuses=[500, 503])
    async with serve_app(recv.app()) as hook:
        s = await stack([TRANSFER, HANGUP], control={"webhook": {"url": f"{hook}/events", "backoff_s": 0.01}})
        c = client(s.url, "call-hook")
        await speak(c)
        await speak(c)
        bodies = await recv.wait_for(3)
        assert [b["type"] for b in bodies] == ["transfer", "hangup", "call.ended"]
        assert [b["seq"] for b in bodies] == [1, 2, 3]
        assert [h["Idempotency-Key"] for h in recv.headers] == [b["id"] for b in bodies]
        await s.registry.drain()
        await s.delivery.settled()
        assert [(d["seq"], d["status"], d["attempts"]) for d in (await s.record("call-hook"))["control_deliveries"]] == [
            (1, "done", 3), (2, "done", 1), (3, "done", 1)
        ]


async def test_control_webhook_failure_is_recorded(stack: Any) -> None:
    recv = Receiver(statuses=[400])
    async with serve_app(recv.app()) as hook:
        s = await stack([TRANSFER], control={"webhook": {"url": f"{hook}/events", "backoff_s": 0.01}})
        await speak(client(s.url, "call-hookfail"))
        await s.registry.drain()
        await s.delivery.settled()
        call = await s.record("call-hookfail")
        [delivery] = call["control_deliveries"]
        assert (delivery["status"], delivery["last_error"], delivery["attempts"]) == ("failed", "refused: HTTP 400", 1)
        assert call["delivery_failures"] == [delivery]


async def test_inject_prompt_and_tools(stack: Any) -> None:
    s = await stack([PLAIN], commands={"inject_prompt": True, "inject_tools": True, "prompt_language": "zh",
                                        "function_map": [{"Function": "hangup", "MatchFunction": "end_call"}]})
    await client(s.url).chat.completions.create(model="m", messages=[{"role": "system", "content": "你是客服。"}, {"role": "user", "content": "hi"}])
    body = s.upstream.requests[0].body
    assert body["messages"][0]["content"].startswith("你是客服。\n\n")
    assert '<imsagent_hangup endword="感谢您的来电，再见！"/>' in body["messages"][0]["content"]
    assert [t["function"]["name"] for t in body["tools"]] == ["end_call"]


# -- bad input and upstream failures ---------------------------------------------------

def assert_openai_error(body: bytes) -> dict[str, Any]:
    err = json.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    return err


async def test_invalid_json_and_missing_messages_are_400(stack: Any) -> None:
    s = await stack([PLAIN])
    status, body = await raw_post(s.url, "/v1/chat/completions", b"{not json")
    assert status == 400 and assert_openai_error(body)["type"] == "invalid_request_error"
    status, body = await raw_post(s.url, "/v1/chat/completions", b'{"model": "m"}')
    assert status == 400 and assert_openai_error(body)["param"] == "messages"
    assert s.upstream.requests == []


async def test_body_too_large_is_413(stack: Any) -> None:
    s = await stack([PLAIN], server={"max_body_bytes": 1000})
    big = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 2000}]}).encode()
    status, body = await raw_post(s.url, "/v1/chat/completions", big)
    assert status == 413 and assert_openai_error(body)["code"] == "request_too_large"


async def test_unknown_route_is_openai_shaped_404(stack: Any) -> None:
    s = await stack([PLAIN])
    status, body = await raw_post(s.url, "/v1/nope", b"{}")
    assert status == 404 and assert_openai_error(body)


async def test_upstream_unreachable_is_502(stack: Any) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    s = await stack([], upstream_url=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(openai.APIStatusError) as e:
        await speak(client(s.url))
    assert e.value.status_code == 502 and e.value.body["code"] == "upstream_unreachable"


async def test_upstream_silent_before_first_byte_is_504(stack: Any) -> None:
    s = await stack([ScriptedReply(head_delay_s=FOREVER)], upstream={"timeout_s": 0.3})
    with pytest.raises(openai.APIStatusError) as e:
        await speak(client(s.url))
    assert e.value.status_code == 504 and e.value.body["code"] == "upstream_timeout"


async def test_upstream_error_status_relayed_with_its_body(stack: Any) -> None:
    err = {"error": {"message": "Rate limit reached", "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
    s = await stack([ScriptedReply(status=429, error=err)])
    with pytest.raises(openai.RateLimitError) as e:
        await speak(client(s.url))
    assert e.value.body == err["error"]


async def test_upstream_non_json_error_is_wrapped(stack: Any) -> None:
    s = await stack([ScriptedReply(status=502, raw=b"<html>bad gateway</html>", content_type="text/html")])
    status, body = await raw_post(s.url, "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}]}')
    assert status == 502 and "bad gateway" in assert_openai_error(body)["message"]


async def test_upstream_failure_mid_stream_sends_error_event_then_done(stack: Any) -> None:
    first = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}\n\n'
    s = await stack([ScriptedReply(raw=first, stall=Stall(after=1))], upstream={"timeout_s": 0.3})
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}).encode()
    status, got = await raw_post(s.url, "/v1/chat/completions", body, {"Content-Type": "application/json", "X-Call-Id": "call-mid"})
    assert status == 200
    assert got.startswith(first) and got.endswith(b"data: [DONE]\n\n")
    error_event = got[len(first):-len(b"data: [DONE]\n\n")]
    assert error_event.startswith(b"data: ")
    assert json.loads(error_event[6:])["error"]["code"] == "upstream_stream_error"
    turn = (await s.record("call-mid"))["turns"][0]
    assert turn["status"] == "upstream_error" and "0.3" in turn["error"]
    with pytest.raises(openai.APIError):
        await speak(client(s.url))


async def test_client_disconnect_cancels_the_upstream_request(stack: Any) -> None:
    s = await stack([ScriptedReply(content=["x"] * 1000, interval_s=0.02)])
    saved = asyncio.Event()
    finish_turn = s.registry.finish_turn
    s.registry.finish_turn = lambda *a: (finish_turn(*a), saved.set())
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}).encode()
    async with aiohttp.ClientSession() as http:
        resp = await http.post(f"{s.url}/v1/chat/completions", data=body, headers={"X-Call-Id": "call-gone"})
        await resp.content.readline()
        resp.close()  # the runtime hangs up on us
    assert await s.upstream.wait_gone(0)
    await asyncio.wait_for(saved.wait(), 5)  # the relay hands the finished turn to the registry
    assert (await s.record("call-gone"))["turns"][0]["status"] == "client_disconnected"


async def test_healthz(stack: Any) -> None:
    s = await stack([PLAIN])
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{s.url}/healthz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"


async def test_control_deliveries_pending_at_a_crash_are_sent_or_recorded_stale(tmp_path: Any) -> None:
    import time as _time

    from proxy.config import parse_config
    from proxy.server.app import running
    from proxy.storage import NewEvent, ops

    from . import rows

    db = rows.store_at(tmp_path / "cg.db")
    now = _time.time()
    fresh = {"id": "evt_fresh", "call_id": "c-1", "type": "hangup", "source": "text_command"}
    stale = {"id": "evt_stale", "call_id": "c-2", "type": "transfer", "source": "text_command"}
    for event in (fresh, stale):  # a process queued them, then died before sending
        start = rows.call(event["call_id"], started_at=now)
        db.run_sync(ops.begin_turn, start, rows.turn(f"r-{event['id']}", "dead", started_at=now, user_text="x"), None, now)
        db.run_sync(ops.add_events, event["call_id"], [NewEvent(event)], True, now)
    db.run_sync(lambda c: c.execute("UPDATE deliveries SET created_at = :at WHERE event_id = 'evt_stale'", {"at": now - 600}))
    db.close_sync()
    recv = Receiver()
    async with serve_app(recv.app()) as hook:
        cfg = parse_config({
            "upstream": {"base_url": "http://127.0.0.1:9/v1"},
            "storage": {"path": str(tmp_path / "cg.db")},
            "control": {"webhook": {"url": f"{hook}/events", "max_age_s": 60}},
        })
        async with running(cfg, port=0) as (app, _):
            from proxy.server.services import SERVICES

            s = app[SERVICES]
            await s.delivery.settled()
            assert recv.bodies == [{**fresh, "seq": 1}]
            assert (await s.registry.record("c-1"))["control_deliveries"][0]["status"] == "done"
            [dropped] = (await s.registry.record("c-2"))["control_deliveries"]
            assert dropped["status"] == "failed" and dropped["last_error"].startswith("stale")
            # the turns the dead process had in flight were marked interrupted at start
            assert (await s.registry.record("c-1"))["turns"][0]["status"] == "interrupted"
    assert len(recv.bodies) == 1
