"""The OpenAI SIP front door end to end, both APIs, against the scripted OpenAI
(:mod:`proxy.demo.scripted_openai`; its scripts are written from
shared/reference/realtime-sip.md): callgate in process, its end function a python step
that records the :class:`~proxy.Conversation`. Counts are exact: the scripted OpenAI
counts every REST call, the sideband keeps every client event."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.demo import sip_scripts as sc
from proxy.demo.scripted_openai import ScriptedOpenAI

from . import hooks
from .conftest import serve_app
from .lab import until
from .sip_lab import KEY, hook_url, sip_config

BYE = "Thank you for calling, goodbye!"
APIS = ["realtime", "live"]


@pytest.fixture
async def openai() -> AsyncIterator[tuple[ScriptedOpenAI, str]]:
    oa = ScriptedOpenAI()
    async with serve_app(oa.app()) as url:
        yield oa, url


@pytest.fixture
async def door(openai: tuple[ScriptedOpenAI, str], stack: Any, tmp_path: Any) -> Any:
    """``await door(api, **door_config)``: callgate with the SIP door on the scripted
    OpenAI (``shared=True``: on one database with the instances started before)."""
    oa, url = openai
    hooks.CALLS.clear()

    async def start(api: str, shared: bool = False, commands: dict[str, Any] | None = None, **extra: Any) -> Any:
        steps = [{"name": "record", "kind": "python", "function": "tests.hooks:record"}]
        cfg: dict[str, Any] = {"front_doors": sip_config(api, url, **extra), "end_function": {"steps": steps}}
        if shared:
            cfg["storage"] = {"path": str(tmp_path / "shared.db")}
        if commands:
            cfg["commands"] = commands
        s = await stack([], **cfg)
        s.oa, s.hook = oa, hook_url(s.url)
        return s

    return start


async def _ended(s: Any, call_id: str) -> dict[str, Any]:
    """The call record once its end function ran."""
    await s.pipeline.wait_call(call_id, 15)
    rec: dict[str, Any] = await s.record(call_id)
    return rec


def _at(timeline: list[tuple[str, ...]], *entry: str) -> int:
    return timeline.index(entry)


def _last(timeline: list[tuple[str, ...]], *entry: str) -> int:
    return max(i for i, e in enumerate(timeline) if e[: len(entry)] == entry)


def _outputs(oa: ScriptedOpenAI, call_id: str) -> dict[str, list[Any]]:
    """The function outputs the call got (parsed when JSON), by function call id (a list: it must hold one)."""
    out: dict[str, list[Any]] = {}
    for e in oa.calls[call_id].received:
        if e.get("type") in ("conversation.item.create", "response.item.create"):
            text = e["item"]["output"]
            try:
                value: Any = json.loads(text)
            except ValueError:
                value = text
            out.setdefault(e["item"]["call_id"], []).append(value)
    return out


def _hangup_script(api: str) -> list[sc.Step]:
    if api == "realtime":
        return [
            *sc.rt_session(), *sc.rt_response("r0", "Example Co, how can I help?"), *sc.rt_user("u1", "That is all, thanks."),
            *sc.rt_response("r1", "Glad I could help.", calls=[("call_1", "hangup", {"endword": BYE})]),
            sc.Expect("conversation.item.create"), *sc.rt_closing_response("r_bye", BYE),
        ]
    return [
        *sc.live_started(), *sc.live_says("Example Co, how can I help?"), *sc.live_caller("That is all, thanks."),
        *sc.live_usage(10), *sc.live_delegation("del_1", [("call_1", "hangup", {"endword": BYE})]),
        sc.Expect("response.item.create"), sc.Expect("session.commentary.append"), sc.Pause(0.1), *sc.live_says(BYE),
    ]


# -- the webhook ----------------------------------------------------------------------------------

@pytest.mark.parametrize("api", APIS)
async def test_a_bad_and_a_stale_signature_are_refused_and_nothing_is_done(door: Any, api: str) -> None:
    s = await door(api)
    s.oa.add(api, "call_sig", [])
    bad = await s.oa.deliver(s.hook, "call_sig", secret="whsec_" + "b3RoZXItc2VjcmV0LW5vdC1vdXJz")
    stale = await s.oa.deliver(s.hook, "call_sig", at=time.time() - 301)
    async with aiohttp.ClientSession() as http, http.post(s.hook, json={"type": "realtime.call.incoming"}) as r:
        unsigned = (r.status, (await r.json())["error"]["code"])
    assert (bad, stale, unsigned) == ([401], [401], (401, "invalid_signature"))
    await asyncio.sleep(0.2)
    assert s.oa.rest == [] and await s.store.read(lambda c: c.all("SELECT id FROM sip_calls")) == []


@pytest.mark.parametrize("api", APIS)
async def test_one_call_delivered_five_times_to_two_instances_is_accepted_once(door: Any, api: str) -> None:
    a = await door(api, shared=True)
    b = await door(api, shared=True)
    a.oa.add(api, "call_dup", [*(sc.rt_session() if api == "realtime" else sc.live_started()), sc.CallerHangup()])
    async with aiohttp.ClientSession() as http:
        got = await asyncio.gather(*(a.oa.deliver(x.hook, "call_dup", session=http) for x in (a, b, a, b, a)))
    assert got == [[200]] * 5
    await a.oa.wait(lambda: a.oa.count("accept") >= 1)
    await _ended(a, "call_dup")
    assert (a.oa.count("accept"), a.oa.calls["call_dup"].attaches) == (1, 1)
    rows = await a.store.read(lambda c: c.all("SELECT status FROM sip_calls"))
    assert [r["status"] for r in rows] == ["ended"]


async def test_a_call_announced_on_both_apis_is_accepted_on_the_configured_one_only(door: Any) -> None:
    s = await door("live")
    s.oa.add("realtime", "rtc_both", [])
    s.oa.add("live", "live_both", [*sc.live_started(), sc.CallerHangup()])
    assert await s.oa.deliver(s.hook, "rtc_both") == [200]
    assert await s.oa.deliver(s.hook, "live_both", kind="live.call.incoming") == [200]  # the deprecated name
    await _ended(s, "live_both")
    assert [(v, c) for v, c, _ in s.oa.rest] == [("accept", "live_both")]


async def test_a_caller_outside_allow_callers_is_rejected_and_a_gone_caller_recorded(door: Any) -> None:
    s = await door("realtime", allow_callers=["+1999*"], reject_status=486)
    s.oa.add("realtime", "rtc_no", [])
    await s.oa.deliver(s.hook, "rtc_no")
    await s.oa.wait(lambda: s.oa.count("reject") == 1)
    assert s.oa.rest == [("reject", "rtc_no", {"status_code": 486})]
    s2 = await door("realtime")
    s2.oa.add("realtime", "rtc_gone", [], accept_status=404)
    await s2.oa.deliver(s2.hook, "rtc_gone", times=2)
    await s2.oa.wait(lambda: s2.oa.count("accept") == 1)

    async def settled() -> bool:
        rows = await s2.store.read(lambda c: c.all("SELECT status, accept_status FROM sip_calls"))
        return [dict(r) for r in rows] == [{"status": "gone", "accept_status": 404}]

    await until(settled, 10, "the 404 on accept recorded as a gone caller")
    assert s2.oa.count("accept") == 1


# -- hangup and transfer ------------------------------------------------------------------------------

@pytest.mark.parametrize("api", APIS)
async def test_a_hangup_plays_its_goodbye_then_hangs_up_once(door: Any, api: str) -> None:
    s = await door(api)
    s.oa.add(api, "call_bye", _hangup_script(api))
    assert await s.oa.deliver(s.hook, "call_bye") == [200]
    rec = await _ended(s, "call_bye")
    t = s.oa.timeline
    if api == "realtime":
        assert _at(t, "sent", "output_audio_buffer.stopped", "r_bye") < _at(t, "rest", "hangup", "call_bye")
        assert s.oa.calls["call_bye"].got("response.create")[0]["response"]["metadata"] == {"callgate": "closing"}
    else:
        assert _last(t, "sent", "session.output_transcript.delta") < _at(t, "rest", "hangup", "call_bye")
        assert s.oa.calls["call_bye"].got("session.commentary.append")[0]["content"] == BYE
        assert s.oa.calls["call_bye"].got("response.create") == []  # the goodbye is all that is said
    assert (s.oa.count("accept"), s.oa.count("hangup")) == (1, 1)
    assert _outputs(s.oa, "call_bye") == {"call_1": [{"ok": True, "result": "hanging up"}]}
    assert (rec["status"], rec["end_reason"], rec["end_source"]) == ("ended", "agent_hangup", "openai_sip")
    assert [e["type"] for e in rec["events"]] == ["hangup", "call.ended"]
    assert rec["events"][0]["source"] == "tool_call" and rec["events"][0]["endword"] == BYE
    assert [c.id for c in hooks.CALLS] == ["call_bye"]


async def test_a_first_attach_refused_is_tried_again(door: Any) -> None:
    """An attach right after the accept may come before the sideband is ready: a 404 then
    is not the call's end (a 404 after an attach that worked is)."""
    s = await door("realtime")
    s.oa.add("realtime", "call_early", _hangup_script("realtime"), refuse_attaches=2)
    await s.oa.deliver(s.hook, "call_early")
    rec = await _ended(s, "call_early")
    assert s.oa.timeline.count(("refused", "call_early")) == 2 and s.oa.calls["call_early"].attaches == 1
    assert (s.oa.count("hangup"), rec["end_reason"]) == (1, "agent_hangup")


@pytest.mark.parametrize("api", APIS)
async def test_transfers_one_refused_by_the_allow_list_one_referred(door: Any, api: str) -> None:
    s = await door(api, commands={"transfer_allow": ["+1555*"]})
    refused = ("call_t1", "transfer_call", {"callee": "+19995550000", "msg": "One moment.", "err_msg": "I cannot transfer you there."})
    allowed = ("call_t2", "transfer_call", {"callee": "+15551230000", "msg": "Connecting you to sales."})
    if api == "realtime":
        script = [
            *sc.rt_session(), *sc.rt_user("u1", "Put me through to the boss."), *sc.rt_response("r1", "", calls=[refused]),
            sc.Expect("conversation.item.create"), sc.Expect("response.create"),
            *sc.rt_response("r2", "I can connect you to sales.", calls=[allowed]), sc.Expect("conversation.item.create"),
            *sc.rt_closing_response("r_msg", "Connecting you to sales."), sc.Gate("hangup"), sc.CallerHangup(),
        ]
    else:
        script = [
            *sc.live_started(), *sc.live_caller("Put me through to the boss."), *sc.live_delegation("d1", [refused]),
            sc.Expect("response.item.create"), sc.Expect("response.create"), *sc.live_says("I can connect you to sales."),
            *sc.live_delegation("d2", [allowed]), sc.Expect("response.item.create"), sc.Expect("session.commentary.append"),
            *sc.live_says("Connecting you to sales."), sc.Gate("hangup"), sc.CallerHangup(),
        ]
    s.oa.add(api, "call_tr", script)
    await s.oa.deliver(s.hook, "call_tr")
    await s.oa.wait(lambda: s.oa.count("refer") == 1)
    s.oa.gate("hangup").set()
    rec = await _ended(s, "call_tr")
    assert [b for v, c, b in s.oa.rest if v == "refer"] == [{"target_uri": "tel:+15551230000"}]
    outputs = _outputs(s.oa, "call_tr")
    assert outputs["call_t1"] == [{"ok": False, "error": "I cannot transfer you there.", "code": "not_allowed"}]
    assert outputs["call_t2"] == [{"ok": True, "result": "transferring"}]
    assert [e["type"] for e in rec["events"]] == ["command.rejected", "transfer", "call.ended"]
    assert rec["events"][0]["code"] == "not_allowed" and rec["events"][1]["callee"] == "+15551230000"
    assert rec["end_reason"] == "transferred" and s.oa.count("hangup") == 0 and len(hooks.CALLS) == 1


@pytest.mark.parametrize("api", APIS)
async def test_a_function_call_of_an_interrupted_response_is_not_executed(door: Any, api: str) -> None:
    s = await door(api)
    hang = [("call_x", "hangup", {"endword": BYE})]
    if api == "realtime":
        script = [
            *sc.rt_session(), *sc.rt_user("u1", "Bye."), *sc.rt_response("r1", "Goodbye then", calls=hang, status="cancelled", reason="turn_detected"),
            *sc.rt_user("u2", "Wait, one more thing."), *sc.rt_response("r2", "Sure, go ahead."), sc.Pause(0.3), sc.CallerHangup(),
        ]
    else:
        script = [
            *sc.live_started(), *sc.live_caller("Bye."), *sc.live_delegation("d1", hang, status="incomplete"),
            *sc.live_caller("Wait, one more thing."), *sc.live_says("Sure, go ahead."), sc.Pause(0.3), sc.CallerHangup(),
        ]
    s.oa.add(api, "call_int", script)
    await s.oa.deliver(s.hook, "call_int")
    rec = await _ended(s, "call_int")
    assert s.oa.count("hangup") == 0 and _outputs(s.oa, "call_int") == {}
    calls = [tc for t in rec["turns"] for tc in t["tool_calls"]]
    assert [(c["id"], c["executed"]) for c in calls] == [("call_x", False)]
    assert [e["type"] for e in rec["events"]] == ["call.ended"]
    assert rec["end_reason"] == ("socket_closed" if api == "realtime" else "remote_hangup")


# -- function calls the FunctionMap does not map ------------------------------------------------------

class Tools:
    """A tool webhook: ``get_weather`` answers ``{"output": …}``; ``slow`` answers too late."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/tools", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.got.append(body)
        if body["name"] == "slow":
            await asyncio.sleep(2)
        return web.json_response({"output": f"It is sunny in {body['arguments'].get('city')}."})


@pytest.mark.parametrize("api", APIS)
async def test_unmapped_calls_are_answered_by_the_tool_webhook_and_a_timeout_by_an_error(door: Any, api: str) -> None:
    tools = Tools()
    async with serve_app(tools.app()) as url:
        s = await door(api, tool_webhook=f"{url}/tools", tool_timeout_s=0.5)
        calls = [("call_w", "get_weather", {"city": "Paris"}), ("call_s", "slow", {}), ("call_b", "get_weather", "{not json")]
        if api == "realtime":
            script = [*sc.rt_session(), *sc.rt_user("u1", "Weather?"), *sc.rt_response("r1", "", calls=calls)]
        else:
            script = [*sc.live_started(), *sc.live_caller("Weather?"), *sc.live_delegation("d1", calls)]
        out = "response.item.create" if api == "live" else "conversation.item.create"
        script += [sc.Expect(out), sc.Expect(out), sc.Expect(out), sc.Expect("response.create"), sc.Pause(0.2), sc.CallerHangup()]
        s.oa.add(api, "call_tool", script)
        await s.oa.deliver(s.hook, "call_tool")
        rec = await _ended(s, "call_tool")
    assert tools.got == [
        {"call_id": "call_tool", "function_call_id": "call_w", "name": "get_weather", "arguments": {"city": "Paris"}},
        {"call_id": "call_tool", "function_call_id": "call_s", "name": "slow", "arguments": {}},
    ]
    outputs = _outputs(s.oa, "call_tool")
    assert outputs["call_w"] == ["It is sunny in Paris."]
    assert [o["code"] for o in outputs["call_s"] + outputs["call_b"]] == ["tool_timeout", "bad_arguments"]
    assert sorted(outputs) == ["call_b", "call_s", "call_w"] and len(s.oa.calls["call_tool"].got("response.create")) == 1
    assert {c["id"]: c["executed"] for t in rec["turns"] for c in t["tool_calls"]} == {"call_w": True, "call_s": True, "call_b": True}


# -- a sideband that drops; bad input --------------------------------------------------------------------

@pytest.mark.parametrize("api", APIS)
async def test_a_sideband_dropped_and_reattached_acts_once(door: Any, api: str) -> None:
    s = await door(api)
    hang = [("call_1", "hangup", {"endword": BYE})]
    if api == "realtime":
        r1 = sc.rt_response("r1", "Okay.", calls=hang)
        script = [
            *sc.rt_session(), *sc.rt_user("u1", "Bye."), *r1, sc.Expect("conversation.item.create"), sc.Drop(),
            *r1[-2:],  # after the attach: response.done again (and its audio drained), a repeat
            *sc.rt_closing_response("r_bye", BYE),
        ]
    else:
        d1 = sc.live_delegation("d1", hang)
        script = [
            *sc.live_started(), *sc.live_caller("Bye."), *d1, sc.Expect("response.item.create"), sc.Drop(),
            *d1[-2:],  # after the attach: the call's item and its response.completed again
            sc.Expect("session.commentary.append"), *sc.live_says(BYE),
        ]
    s.oa.add(api, "call_drop", script)
    await s.oa.deliver(s.hook, "call_drop")
    rec = await _ended(s, "call_drop")
    assert s.oa.calls["call_drop"].attaches == 2 and ("drop", "call_drop") in s.oa.timeline
    assert (s.oa.count("hangup"), _outputs(s.oa, "call_drop")) == (1, {"call_1": [{"ok": True, "result": "hanging up"}]})
    assert rec["end_reason"] == "agent_hangup" and [e["type"] for e in rec["events"]] == ["hangup", "call.ended"]


async def test_frames_that_are_not_json_or_unknown_are_counted_and_the_call_goes_on(door: Any) -> None:
    from prometheus_client import REGISTRY

    def n(result: str) -> float:
        return REGISTRY.get_sample_value("callgate_front_door_frames_total", {"door": "openai_sip", "result": result}) or 0.0

    before = (n("invalid_json"), n("unknown"), n("not_object"))
    s = await door("realtime")
    s.oa.add("realtime", "rtc_bad", [
        *sc.rt_session(), sc.Emit("{not json"), sc.Emit("[1, 2]"), sc.Emit({"type": "mystery.event", "x": 1}),
        *sc.rt_user("u1", "Bye."), *sc.rt_response("r1", "Bye!", calls=[("call_1", "hangup", {})]),
    ])
    await s.oa.deliver(s.hook, "rtc_bad")
    rec = await _ended(s, "rtc_bad")
    assert (n("invalid_json"), n("unknown"), n("not_object")) == (before[0] + 1, before[1] + 1, before[2] + 1)
    assert rec["end_reason"] == "agent_hangup" and s.oa.count("hangup") == 1
    assert s.oa.calls["rtc_bad"].got("response.create") == []  # nothing more to say: the hangup follows the audio


async def test_a_barge_in_cuts_the_model_transcript_where_the_caller_stopped_hearing_it(door: Any) -> None:
    said = "Our opening hours are nine to five on weekdays and ten to two on Saturdays."
    s = await door("realtime")
    s.oa.add("realtime", "rtc_barge", [
        *sc.rt_session(), *sc.rt_user("u1", "When are you open?"), *sc.rt_response("r1", said, stop=False),
        *sc.rt_barge_in("r1", 2000), *sc.rt_user("u2", "Thanks, bye."), *sc.rt_response("r2", "Bye!"), sc.Pause(0.2),
        sc.CallerHangup(),
    ])
    await s.oa.deliver(s.hook, "rtc_barge")
    rec = await _ended(s, "rtc_barge")
    first = rec["turns"][0]
    assert (first["user_text"], first["raw_text"], first["status"]) == ("When are you open?", said, "barged_in")
    assert first["spoken_text"] == "Our opening hours are nine to"  # 2 s at 15 chars/s, back to a word
    assert rec["transcript"] == [
        {"role": "user", "text": "When are you open?"}, {"role": "assistant", "text": "Our opening hours are nine to"},
        {"role": "user", "text": "Thanks, bye."}, {"role": "assistant", "text": "Bye!"},
    ]


# -- the call record and the end function -----------------------------------------------------------------

EXPECTED = {
    "realtime": {
        "transcript": ["Example Co, how can I help?", "That is all, thanks.", f"Glad I could help. {BYE}"],
        "usage": {"prompt_tokens": 200, "completion_tokens": 125, "cached_tokens": 20, "input_text_tokens": 40,
                  "input_audio_tokens": 160, "cached_text_tokens": 20, "cached_audio_tokens": 0, "output_text_tokens": 25,
                  "output_audio_tokens": 100},
        # per response: (10 × 4 + 10 × 0.4 + 80 × 32 + 10 × 16 + 40 × 64) / 1e6, twice; the goodbye (5 × 16 + 20 × 64) / 1e6
        "cost_usd": 0.012008,
    },
    "live": {
        "transcript": ["Example Co, how can I help?", "That is all, thanks.", BYE],
        "usage": {"prompt_tokens": 300, "completion_tokens": 40, "cached_tokens": 100, "input_text_tokens": 300,
                  "input_audio_tokens": 0, "cached_text_tokens": 100, "cached_audio_tokens": 0, "output_text_tokens": 40,
                  "output_audio_tokens": 0, "seconds": 42.0},
        # 42 s at 0.06 a minute; the backend's (200 × 0.25 + 100 × 0.025 + 40 × 2) / 1e6
        "cost_usd": 0.0421325,
    },
}


@pytest.mark.parametrize("api", APIS)
async def test_transcripts_usage_and_cost_in_the_call_record_and_the_conversation(door: Any, api: str) -> None:
    s = await door(api)
    s.oa.add(api, "call_rec", _hangup_script(api))
    await s.oa.deliver(s.hook, "call_rec")
    await _ended(s, "call_rec")
    async with aiohttp.ClientSession() as http, http.get(f"{s.url}/v1/calls/call_rec") as r:
        assert r.status == 200
        rec = await r.json()
    want = EXPECTED[api]
    assert [t["text"] for t in rec["transcript"]] == want["transcript"]
    assert [t["role"] for t in rec["transcript"]] == ["assistant", "user", "assistant"]
    assert (rec["usage"], rec["cost_usd"]) == (want["usage"], want["cost_usd"])
    assert rec["metadata"]["caller_number"] == "+14255551212" and rec["metadata"]["callee_number"] == "+18005551212"
    assert rec["metadata"]["openai_api"] == api and rec["profile"] == "openai"
    [conv] = hooks.CALLS
    assert (conv.id, [t["text"] for t in conv.transcript]) == ("call_rec", want["transcript"])
    assert (conv.usage, conv.cost_usd, conv.end_reason) == (want["usage"], want["cost_usd"], "agent_hangup")
    assert conv.state["tool_calls"][0]["name"] == "hangup"
    job = (await s.store.read(lambda c: c.all("SELECT step, status, attempts FROM jobs")))
    assert [dict(j) for j in job] == [{"step": "record", "status": "done", "attempts": 1}]
