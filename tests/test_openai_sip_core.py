"""The OpenAI SIP door's sans-IO core (proxy/core/openai_sip/): the webhook and SIP
headers, the accept body, both APIs' sideband events, usage and cost, turns, the
control table whole, and the controller by property (hypothesis: whatever the events,
at most one hangup and one refer, one output per call_id, interrupted calls never
executed, one end). Event shapes are shared/reference/realtime-sip.md's."""

from __future__ import annotations

import json
from typing import Any

import pytest
import hypothesis
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.core.commands import callee_shape_ok
from proxy.core.frames import FrameCode
from proxy.core.function_map import FunctionMap
from proxy.core.openai_sip import accept, events as ev
from proxy.core.openai_sip.actions import (
    Answer, Claim, Claimed, End, Latch, LatchState, Record, Rest, RestDone, Resume, RunTool, Send, Settings, SidebandLost,
    StartTimer, Timer, TimerFired, ToolAnswered,
)
from proxy.core.openai_sip.api import Api, Verb, rest_url, sideband_url, target_uri
from proxy.core.openai_sip.controller import Controller
from proxy.core.openai_sip.table import TRANSITIONS, Control, IllegalMove, Intent, Phase, Trigger
from proxy.core.openai_sip.turns import TurnBook, heard_part
from proxy.core.openai_sip.usage import SipPrice, TokenUsage, seconds_cost, token_cost
from proxy.core.openai_sip.webhook import IncomingCall, OtherEvent, WebhookCode, WebhookError, caller_allowed, read_webhook, sip_number
from proxy.demo.sip_scripts import incoming

FMAP = FunctionMap([("hangup", "hangup"), ("transfer", "transfer_call")])

# -- the webhook ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "number"), [
    ("sip:+14255551212@sip.example.com", "+14255551212"),
    ('"Alice Smith" <sip:+1-425-555-1212@sip.example.com;user=phone>;tag=9fxced76sl', "+14255551212"),
    ("<sips:%2B442071234567@carrier.example>", "+442071234567"),
    ("<tel:+1 (425) 555-1212;ext=7>", "+14255551212"),
    ("sip:alice@example.com", ""), ("sip:example.com", ""), ("<mailto:x@y>", ""), ("", ""),
])
def test_sip_from_and_to_values_give_numbers(value: str, number: str) -> None:
    assert sip_number(value) == number


def test_the_three_incoming_call_webhooks_are_read_and_others_are_not_calls() -> None:
    rt = read_webhook(json.dumps(incoming("realtime", "rtc_1")).encode())
    live = read_webhook(json.dumps(incoming("live", "live_1")).encode())
    old = read_webhook(json.dumps(incoming("live", "live_2", kind="live.call.incoming")).encode())
    assert isinstance(rt, IncomingCall) and isinstance(live, IncomingCall) and isinstance(old, IncomingCall)
    assert (rt.api, rt.call_id, rt.caller, rt.callee) == (Api.REALTIME, "rtc_1", "+14255551212", "+18005551212")
    assert (live.api, live.call_id, old.api, old.call_id, old.event_type) == (Api.LIVE, "live_1", Api.LIVE, "live_2", "live.call.incoming")
    assert rt.metadata()["sip_call_id"].startswith("03782086-") and rt.metadata()["openai_api"] == "realtime"
    assert read_webhook(b'{"type": "response.completed", "id": "evt_9"}') == OtherEvent("response.completed", "evt_9")
    for body, code in ((b"{oops", WebhookCode.INVALID_JSON), (b"[1]", WebhookCode.NOT_OBJECT),
                       (b'{"type": "realtime.call.incoming", "data": {}}', WebhookCode.MISSING_FIELD)):
        with pytest.raises(WebhookError) as e:
            read_webhook(body)
        assert e.value.code is code


def test_allow_callers_patterns() -> None:
    assert caller_allowed("", []) and caller_allowed("+14255551212", ["+1425*"])
    assert not caller_allowed("+14255551212", ["+1999*"]) and not caller_allowed("", ["+1*"])


def test_urls_and_transfer_targets() -> None:
    assert rest_url("https://api.openai.com/v1/", Api.LIVE, "live_1", Verb.REFER) == "https://api.openai.com/v1/live/sessions/live_1/refer"
    assert rest_url("https://api.openai.com/v1", Api.REALTIME, "rtc/1", Verb.HANGUP) == "https://api.openai.com/v1/realtime/calls/rtc%2F1/hangup"
    assert sideband_url("https://api.openai.com/v1", Api.REALTIME, "rtc_1") == "wss://api.openai.com/v1/realtime?call_id=rtc_1"
    assert sideband_url("http://127.0.0.1:9/v1", Api.LIVE, "live_1") == "ws://127.0.0.1:9/v1/live/sessions/live_1/attach"
    assert [target_uri(c) for c in ("+15551230000", "sip:agent@example.com", "tel:+1555", "1001")] == [
        "tel:+15551230000", "sip:agent@example.com", "tel:+1555", "tel:1001"]
    assert all(callee_shape_ok(c) for c in ("+15551230000", "sip:agent@example.com"))


# -- the accept ----------------------------------------------------------------------------------------

TOOLS = [{"type": "function", "function": {"name": "hangup", "description": "End the call.", "parameters": {"type": "object"}}},
         {"type": "function", "function": {"name": "transfer_call", "parameters": {"type": "object"}}}]


def test_the_realtime_accept_is_flat_with_the_tools_and_input_transcription() -> None:
    session = {"model": "gpt-realtime", "tools": [{"type": "function", "name": "hangup", "description": "mine"}]}
    body = accept.accept_body(Api.REALTIME, session, accept.function_tools(TOOLS))
    assert body["type"] == "realtime" and body["model"] == "gpt-realtime"
    assert body["tools"] == [{"type": "function", "name": "hangup", "description": "mine"},
                             {"type": "function", "name": "transfer_call", "parameters": {"type": "object"}}]
    assert body["audio"]["input"]["transcription"] == {"model": accept.TRANSCRIPTION_MODEL}
    assert session == {"model": "gpt-realtime", "tools": [{"type": "function", "name": "hangup", "description": "mine"}]}  # not changed
    given = accept.accept_body(Api.REALTIME, {"audio": {"input": {"transcription": {"model": "whisper-1"}}}}, [])
    assert given["audio"]["input"]["transcription"] == {"model": "whisper-1"} and "tools" not in given


def test_the_live_accept_puts_the_tools_in_the_responses_delegation() -> None:
    body = accept.accept_body(Api.LIVE, {"model": "gpt-live-1", "delegation": {"responses": {"model": "gpt-5-mini"}}}, accept.function_tools(TOOLS))
    s = body["session"]
    assert list(body) == ["session"] and s["type"] == "live" and s["delegation"]["type"] == "responses"
    assert [t["name"] for t in s["delegation"]["responses"]["tools"]] == ["hangup", "transfer_call"]
    assert s["delegation"]["responses"]["model"] == "gpt-5-mini" and "audio" not in s
    assert accept.reject_body(486) == {"status_code": 486}
    for api in Api:
        body = accept.accept_body(api, {"voice": "marin"}, [])
        assert (body.get("session") or body)["audio"]["output"] == {"voice": "marin"} and "voice" not in (body.get("session") or body)


# -- sideband events -------------------------------------------------------------------------------------

def rt(event: dict[str, Any]) -> ev.ServerEvent:
    return ev.read(Api.REALTIME, json.dumps(event))


def live(event: dict[str, Any]) -> ev.ServerEvent:
    return ev.read(Api.LIVE, json.dumps(event))


def test_realtime_events_are_read() -> None:
    item = {"type": "function_call", "call_id": "c1", "name": "hangup", "arguments": "{}", "status": "incomplete"}
    assert rt({"type": "response.output_item.done", "response_id": "r1", "item": item}) == ev.FunctionCall("r1", "c1", "hangup", "{}", False)
    done = rt({"type": "response.done", "response": {"id": "r1", "status": "cancelled", "status_details": {"reason": "turn_detected"},
                                                    "output": [{**item, "status": "completed"}], "usage": None}})
    assert done == ev.GroupDone("r1", "cancelled", "turn_detected", None, "", (ev.FunctionCall("r1", "c1", "hangup", "{}", True),))
    assert rt({"type": "response.created", "response": {"id": "r2", "metadata": {"callgate": "closing"}}}) == ev.GroupStarted("r2", "closing")
    assert rt({"type": "output_audio_buffer.stopped", "response_id": "r2"}) == ev.Playback("r2", ev.PlaybackState.STOPPED)
    assert rt({"type": "conversation.item.truncated", "item_id": "i", "audio_end_ms": 1500}) == ev.Truncated("i", 1500)
    assert rt({"type": "conversation.item.input_audio_transcription.completed", "item_id": "u", "transcript": "hi"}) == ev.CallerText("hi", "u")
    assert rt({"type": "error", "error": {"type": "invalid_request_error", "code": "x", "message": "m", "event_id": "cg_1"}}) == ev.ServerError("x", "m", "cg_1")
    assert rt({"type": "response.function_call_arguments.done"}) == ev.Ignored("response.function_call_arguments.done")
    assert rt({"type": "brand.new"}) == ev.Unknown("brand.new")
    assert ev.read(Api.REALTIME, "{nope") == ev.Malformed(FrameCode.INVALID_JSON, ev.read(Api.REALTIME, "{nope").detail)  # type: ignore[union-attr]
    assert isinstance(ev.read(Api.REALTIME, '{"no": "type"}'), ev.Malformed) and isinstance(ev.read(Api.REALTIME, b"\xff"), ev.Malformed)


def test_live_events_are_read() -> None:
    item = {"type": "function_call", "call_id": "c1", "name": "hangup", "arguments": "{}"}
    wrapped = live({"type": "response.event", "delegation_id": "d1", "event": {"type": "response.output_item.done", "item": item}})
    assert wrapped == ev.FunctionCall("d1", "c1", "hangup", "{}", True)
    usage = {"input_tokens": 10, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 4}}
    done = live({"type": "response.event", "delegation_id": "d1", "event": {"type": "response.completed", "response": {"status": "completed", "model": "m", "usage": usage, "output": []}}})
    assert done == ev.GroupDone("d1", "completed", "", TokenUsage(10, 0, 4, 0, 2, 0), "m", ())
    assert live({"type": "response.event", "delegation_id": "d1", "event": {"type": "response.incomplete"}}).status == "incomplete"  # type: ignore[union-attr]
    assert live({"type": "session.closed", "reason": "remote_hangup", "usage": {"seconds": 12.5}}) == ev.SessionClosed("remote_hangup", 12.5)
    assert live({"type": "session.output_transcript.delta", "delta": "Hi"}) == ev.ModelText("", "", "Hi")
    assert live({"type": "session.paused"}) == ev.Ignored("session.paused") and live({"type": "x.y"}) == ev.Unknown("x.y")


# -- usage and cost ----------------------------------------------------------------------------------------

def test_audio_tokens_cost_the_audio_rates_and_default_to_the_text_ones() -> None:
    u = TokenUsage(input_text=100, input_audio=1000, cached_text=50, cached_audio=200, output_text=10, output_audio=300)
    full = SipPrice(4, 16, 0.4, 32, 0.5, 64)
    assert token_cost(u, full) == round((50 * 4 + 50 * 0.4 + 800 * 32 + 200 * 0.5 + 10 * 16 + 300 * 64) / 1e6, 9)
    text_only = SipPrice(4, 16, 0.4)
    assert token_cost(u, text_only) == round((50 * 4 + 50 * 0.4 + 800 * 4 + 200 * 0.4 + 10 * 16 + 300 * 16) / 1e6, 9)
    assert token_cost(u, SipPrice(per_minute=0.05)) is None and token_cost(None, full) is None
    assert seconds_cost(90, SipPrice(per_minute=0.05)) == 0.075 and seconds_cost(90, text_only) is None
    rt_usage = {"input_tokens": 100, "output_tokens": 50, "input_token_details": {"audio_tokens": 80, "cached_tokens": 30,
                "cached_tokens_details": {"audio_tokens": 20}}, "output_token_details": {"audio_tokens": 40}}
    assert TokenUsage.from_realtime(rt_usage) == TokenUsage(20, 80, 10, 20, 10, 40)
    assert TokenUsage.from_realtime(None) is None


# -- turns ---------------------------------------------------------------------------------------------------

def test_heard_part_cuts_back_to_a_word() -> None:
    assert heard_part("Our opening hours are nine to five.", 2000) == "Our opening hours are nine to"
    assert heard_part("Short.", 10_000) == "Short." and heard_part("Hello there", 0) == ""


def test_a_late_realtime_transcript_goes_to_its_own_turn() -> None:
    book = TurnBook(live=False)
    assert book.user_item("u1") == []
    book.model("m1", "Hello!", final=True)
    assert book.user_item("u2") == []  # u1's transcript has not come: its turn waits
    done = book.caller("Hi there", "u1")
    assert [(t.user_text, t.raw_text) for t in done] == [("Hi there", "Hello!")]
    book.caller("Bye", "u2")
    assert [(t.user_text, t.raw_text) for t in book.close()] == [("Bye", "")]


def test_live_pieces_make_a_new_turn_when_the_caller_speaks_after_the_model() -> None:
    book = TurnBook(live=True)
    book.caller("Hel")
    book.caller("lo")
    book.model("live", "Hi, ")
    book.model("live", "how can I help?")
    done = book.caller("Bye")
    assert [(t.user_text, t.raw_text) for t in done] == [("Hello", "Hi, how can I help?")]


# -- the control table ----------------------------------------------------------------------------------------

def test_a_hangup_is_decided_played_acted_and_ends_realtime_at_once_live_after_the_close() -> None:
    for live_api, after in ((False, Phase.ENDED), (True, Phase.HUNG_UP)):
        c = Control(live=live_api)
        c, acts = c.on(Trigger.HANGUP)
        assert (c.phase, c.intent, acts) == (Phase.CLOSING, Intent.HANGUP, ("latch",))
        c, _ = c.on(Trigger.PLAYED)
        c, acts = c.on(Trigger.ACTED)
        assert c.phase is after


def test_no_second_hangup_or_refer_and_nothing_after_the_end() -> None:
    c, _ = Control().on(Trigger.TRANSFER)
    assert not c.allows(Trigger.HANGUP) and not c.allows(Trigger.TRANSFER)
    c, _ = c.on(Trigger.PLAYED)
    c, _ = c.on(Trigger.ACTED)
    assert c.phase is Phase.TRANSFERRED and c.allows(Trigger.HANGUP) and not c.allows(Trigger.TRANSFER)
    c, _ = c.on(Trigger.CLOSED)
    assert c.phase is Phase.ENDED and not c.allows(Trigger.HANGUP)
    with pytest.raises(IllegalMove, match="hangup is not a legal move of a call that is ended"):
        c.on(Trigger.HANGUP)


def test_every_phase_but_the_end_ends_on_close_once() -> None:
    for (phase, trigger), moves in TRANSITIONS.items():
        if trigger is Trigger.CLOSED:
            assert moves[0].to is Phase.ENDED and (moves[0].acts == ("end",)) == (phase is not Phase.ENDED)


# -- the controller, by property ----------------------------------------------------------------------------------

NAMES = ["hangup", "transfer_call", "lookup"]
ARGS = ['{"endword": "Bye!"}', '{"callee": "+15551230000", "msg": "Connecting."}', '{"callee": "+19990000000"}', "{bad", "{}"]
GROUPS = ["g1", "g2", "g3"]
IDS = ["c1", "c2", "c3", "c4", "c5"]

def _batch(group: str, call_id: str, name: str, args: str, status: str) -> list[Any]:
    return [ev.FunctionCall(group, call_id, name, args, True), ev.GroupDone(group, status), "answer_tools"]


batches = st.builds(_batch, st.sampled_from(GROUPS), st.sampled_from(IDS), st.sampled_from(NAMES), st.sampled_from(ARGS),
                    st.sampled_from(["completed", "completed", "cancelled"]))
server_events = st.one_of(
    batches, batches, batches, batches, batches, batches, st.just("answer_rest"), st.just("answer_rest"),
    st.builds(ev.FunctionCall, st.sampled_from(GROUPS), st.sampled_from(IDS), st.sampled_from(NAMES), st.sampled_from(ARGS), st.booleans()),
    st.builds(ev.GroupDone, st.sampled_from(GROUPS), st.sampled_from(["completed", "completed", "cancelled", "incomplete"])),
    st.builds(ev.GroupStarted, st.sampled_from(GROUPS + ["g9"]), st.sampled_from(["closing", ""])),
    st.builds(ev.Playback, st.sampled_from(GROUPS + ["g9"]), st.sampled_from(list(ev.PlaybackState))),
    st.builds(ev.ModelText, st.sampled_from(GROUPS), st.sampled_from(["i1", "i2", ""]), st.sampled_from(["Bye", "Sure"])),
    st.builds(ev.CallerText, st.sampled_from(["hi", "bye"]), st.sampled_from(["u1", "u2", ""])),
    st.builds(ev.UserItem, st.sampled_from(["u1", "u2"])),
    st.builds(ev.Truncated, st.sampled_from(["i1", "i2"]), st.integers(0, 5000)),
    st.just(ev.FixturePlayed()), st.builds(ev.SessionUsage, st.floats(0, 100)),
    st.sampled_from([ev.SessionClosed("remote_hangup"), ev.SessionClosed("close_requested"), SidebandLost()]),
    st.builds(TimerFired, st.sampled_from(list(Timer))), st.just("answer_tools"), st.just("answer_rest"),
)


@settings(max_examples=500, deadline=None)
@given(
    api=st.sampled_from(list(Api)), script=st.lists(server_events, min_size=5, max_size=40), lose=st.lists(st.booleans(), min_size=8, max_size=8),
    rest_ok=st.booleans(), resume=st.sampled_from([None, Resume(LatchState.DECIDED), Resume(LatchState.SENT), Resume(None, LatchState.CLAIMED)]),
)
def test_whatever_arrives_one_hangup_one_refer_one_output_per_call_id_one_end(
    api: Api, script: list[Any], lose: list[bool], rest_ok: bool, resume: Resume | None
) -> None:
    c = Controller(Settings(api, FMAP, ("+1555*",), True, 100, 1000, True, "m"), resume)
    acts = list(c.start())
    tools: list[ToolAnswered] = []
    rests: list[RestDone] = []
    skipped: set[str] = set()  # seen interrupted before any claim
    claimed: list[str] = []
    pending: dict[str, set[str]] = {}
    flips = iter(lose * 20)  # True: another instance won that claim

    def feed(item: Any) -> None:
        out = c.on(item)
        acts.extend(out)
        for a in out:
            if isinstance(a, Claim):
                ids = [x.call_id for x in a.calls]
                assert not set(ids) & skipped, "an interrupted call was claimed"
                claimed.extend(ids)
                feed(Claimed(a.group, frozenset(i for i in ids if not next(flips))))
            elif isinstance(a, RunTool):
                tools.append(ToolAnswered(a.call.call_id, "done"))
            elif isinstance(a, Rest):
                rests.append(RestDone(a.verb, rest_ok, 200 if rest_ok else 500))

    flat = [x for item in script for x in (item if isinstance(item, list) else [item])]
    for item in flat:
        if isinstance(item, ev.FunctionCall) and not item.complete and item.call_id not in claimed:
            skipped.add(item.call_id)
        if isinstance(item, ev.FunctionCall) and item.complete:
            pending.setdefault(item.group, set()).add(item.call_id)
        if isinstance(item, ev.GroupDone) and item.status != "completed":
            skipped |= {i for i in pending.pop(item.group, set()) if i not in claimed}
        if item == "answer_tools":
            for t in tools:
                feed(t)
            tools.clear()
        elif item == "answer_rest":
            for r in rests:
                feed(r)
            rests.clear()
        else:
            feed(item)
    answered = [o.call_id for a in acts if isinstance(a, Answer) for o in a.outputs]
    hypothesis.event(f"rests={sum(isinstance(a, Rest) for a in acts)} answered={min(len(answered), 3)} end={any(isinstance(a, End) for a in acts)}")
    assert len(answered) == len(set(answered)), "a call_id answered twice"
    assert len(claimed) == len(set(claimed)), "a call_id claimed twice"
    assert sum(isinstance(a, Rest) and a.verb is Verb.HANGUP for a in acts) <= 1
    assert sum(isinstance(a, Rest) and a.verb is Verb.REFER for a in acts) <= 1
    assert sum(isinstance(a, Latch) for a in acts) <= 2 and sum(isinstance(a, End) for a in acts) <= 1
    for a in acts:
        if isinstance(a, Answer):
            assert sum(e["type"] == "response.create" for e in a.events) <= 1
    if any(isinstance(a, End) for a in acts):
        after = acts[max(i for i, a in enumerate(acts) if isinstance(a, End)) + 1:]
        assert not [a for a in after if isinstance(a, (Answer, Rest, Send, Claim, Record, StartTimer))]


def test_a_lone_surrogate_in_a_sip_header_is_replaced_so_the_call_can_be_stored() -> None:
    """The caller's From is the caller's to write: an escaped lone surrogate reaches the
    metadata as U+FFFD, which the JSON encoder and the database take."""
    body = json.dumps(incoming("realtime", "rtc_s")).replace("Caller", "Caller \\ud800").encode()
    assert b"Caller \\ud800" in body  # the JSON text holds the escape of a lone surrogate
    call = read_webhook(body)
    assert isinstance(call, IncomingCall)
    assert "\ufffd" in call.metadata()["sip_from"]
    json.dumps(call.metadata()).encode("utf-8")  # storable
