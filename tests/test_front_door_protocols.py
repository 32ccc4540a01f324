"""The WebSocket platforms' protocols in the sans-IO core: Retell's custom LLM and
ConversationRelay frames as their docs show them (shared/reference/websocket-platforms.md),
the answers callgate sends, the conversation it keeps, the action URL's TwiML."""

from __future__ import annotations

import json

import pytest

from proxy.core import conversation_relay as cr
from proxy.core import retell
from proxy.core.door import Answer, Attach, Cancel, Ignore, LimitHit, PlatformNote, SpeechOut, StartTurn, Transcript, TurnDone, TurnFailed
from proxy.core.frames import FrameCode, FrameError

MAX = 1 << 20


def test_retell_response_required_becomes_messages() -> None:
    frame = json.dumps({
        "interaction_type": "response_required", "response_id": 3,
        "transcript": [
            {"role": "agent", "content": "Hello, how can I help?"},
            {"role": "user", "content": "Cancel my order."},
        ],
    })
    msg = retell.read(frame, MAX)
    assert msg == retell.ResponseRequired(3, (retell.Utterance("agent", "Hello, how can I help?"), retell.Utterance("user", "Cancel my order.")))
    assert retell.messages("Be brief.", msg.transcript) == [
        {"role": "system", "content": "Be brief."},
        {"role": "assistant", "content": "Hello, how can I help?"},
        {"role": "user", "content": "Cancel my order."},
    ]


def test_retell_other_interactions() -> None:
    assert retell.read('{"interaction_type": "reminder_required", "response_id": 4, "transcript": []}', MAX) == retell.ResponseRequired(4, (), reminder=True)
    assert retell.read('{"interaction_type": "update_only", "transcript": [{"role": "user", "content": "hi"}]}', MAX) == retell.UpdateOnly((retell.Utterance("user", "hi"),))
    details = retell.read('{"interaction_type": "call_details", "call": {"call_id": "c1", "from_number": "+15550001111", "to_number": "+15550002222"}}', MAX)
    assert isinstance(details, retell.CallDetails)
    assert (details.caller_number, details.callee_number) == ("+15550001111", "+15550002222")
    assert retell.read('{"interaction_type": "ping_pong", "timestamp": 1703302407333}', MAX) == retell.PingPong(1703302407333)
    assert retell.read('{"interaction_type": "something_new"}', MAX) == retell.Unknown("something_new")


def test_retell_answers_are_exact() -> None:
    assert retell.config_message() == {"response_type": "config", "config": {"auto_reconnect": True, "call_details": True}}
    assert retell.response(3, "Sure.", complete=False) == {"response_type": "response", "response_id": 3, "content": "Sure.", "content_complete": False}
    assert retell.response(3, "Bye!", complete=True, end_call=True) == {
        "response_type": "response", "response_id": 3, "content": "Bye!", "content_complete": True, "end_call": True,
    }
    assert retell.response(5, "Connecting you.", complete=True, transfer_number="+15551234567")["transfer_number"] == "+15551234567"
    assert retell.ping_pong(7) == {"response_type": "ping_pong", "timestamp": 7}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", FrameCode.INVALID_JSON),
        (b"\xff\xfe", FrameCode.INVALID_JSON),
        ("[1, 2]", FrameCode.NOT_OBJECT),
        ('{"interaction_type": "response_required", "response_id": "3"}', FrameCode.BAD_FIELD),
        ('{"interaction_type": "response_required", "response_id": true}', FrameCode.BAD_FIELD),
        ('{"interaction_type": "update_only", "transcript": {"role": "user"}}', FrameCode.BAD_FIELD),
        ('{"interaction_type": "update_only", "transcript": [{"role": "user", "content": 5}]}', FrameCode.BAD_FIELD),
        ('{"interaction_type": 1}', FrameCode.BAD_FIELD),
        ('{"interaction_type": "call_details", "call": []}', FrameCode.BAD_FIELD),
    ],
)
def test_retell_bad_frames_have_codes(frame: str | bytes, code: FrameCode) -> None:
    with pytest.raises(FrameError) as e:
        retell.read(frame, MAX)
    assert e.value.code is code


def test_a_frame_over_the_limit_is_refused_before_parsing() -> None:
    frame = json.dumps({"type": "prompt", "voicePrompt": "é" * 60})
    assert isinstance(cr.read(frame, len(frame.encode())), cr.Prompt)
    with pytest.raises(FrameError) as e:
        cr.read(frame, len(frame.encode()) - 1)
    assert e.value.code is FrameCode.TOO_BIG


def test_conversation_relay_frames() -> None:
    setup = cr.read(json.dumps({
        "type": "setup", "sessionId": "VX1", "callSid": "CA123", "from": "+15550001111", "to": "+15550002222",
        "direction": "inbound", "customParameters": {"tier": "gold"},
    }), MAX)
    assert setup == cr.Setup("VX1", "CA123", "+15550001111", "+15550002222", "inbound", {"tier": "gold"})
    assert cr.read('{"type": "prompt", "voicePrompt": "Hi there", "lang": "en-US", "last": true}', MAX) == cr.Prompt("Hi there", "en-US", True)
    assert cr.read('{"type": "interrupt", "utteranceUntilInterrupt": "Your order", "durationUntilInterruptMs": 850}', MAX) == cr.Interrupt("Your order", 850)
    assert cr.read('{"type": "dtmf", "digit": "1"}', MAX) == cr.Dtmf("1")
    assert cr.read('{"type": "error", "description": "bad token"}', MAX) == cr.PlatformError("bad token")
    assert cr.read('{"type": "info"}', MAX) == cr.Unknown("info")
    with pytest.raises(FrameError) as e:
        cr.read('{"type": "setup", "customParameters": "x"}', MAX)
    assert e.value.code is FrameCode.BAD_FIELD


def test_conversation_relay_answers_are_exact() -> None:
    assert cr.text("Hello", False) == {"type": "text", "token": "Hello", "last": False}
    end = cr.end({"reasonCode": "transfer", "callee": "+15551234567"})
    assert end["type"] == "end" and json.loads(end["handoffData"]) == {"reasonCode": "transfer", "callee": "+15551234567"}


def test_the_transcript_keeps_what_the_caller_said_and_heard() -> None:
    conn = cr.RelayConnection(MAX)
    assert conn.receive(json.dumps({"type": "setup", "callSid": "CA-1", "from": "+1555", "to": ""})) == [Attach("CA-1", {"caller_number": "+1555"})]
    assert conn.receive(json.dumps({"type": "prompt", "voicePrompt": "I want", "lang": "en-US", "last": False})) == []
    assert conn.receive(json.dumps({"type": "prompt", "voicePrompt": " to cancel ", "lang": "en-US", "last": True})) == [
        Cancel(), StartTurn(1, "I want to cancel"),
    ]
    t = Transcript()
    t.said("I want to cancel")
    t.heard("Sure, which order")  # the caller cut in here
    t.heard("")
    assert t.messages("Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "I want to cancel"},
        {"role": "assistant", "content": "Sure, which order"},
    ]
    assert t.messages("")[0] == {"role": "user", "content": "I want to cancel"}
    t.heard_instead("Sure")  # an interrupt after the reply finished streaming
    assert t.turns[-1] == {"role": "assistant", "content": "Sure"}
    assert Transcript.of([("hi", "Hello."), ("bye", "")]).turns == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "bye"},
    ]


def test_a_prompt_sent_in_parts_is_cut_at_max_prompt_chars() -> None:
    conn = cr.RelayConnection(MAX, max_prompt_chars=300)
    conn.receive(json.dumps({"type": "setup", "callSid": "CA-2"}))
    hits = []
    for _ in range(100):  # bug: the parts were kept without a bound
        hits += conn.receive(json.dumps({"type": "prompt", "voicePrompt": "x" * 50, "lang": "en-US", "last": False}))
    assert hits == [LimitHit("max_prompt_chars")]  # counted once per utterance
    last = conn.receive(json.dumps({"type": "prompt", "voicePrompt": "end", "lang": "en-US", "last": True}))
    start = next(e for e in last if isinstance(e, StartTurn))
    assert len(start.user_text) <= 300


def test_the_connections_say_what_the_session_does() -> None:
    conn = cr.RelayConnection(MAX)
    assert conn.receive(json.dumps({"type": "prompt", "voicePrompt": "early", "last": True})) == [Ignore("prompt")]  # before setup
    conn.receive(json.dumps({"type": "setup", "callSid": "CA-3"}))
    assert conn.receive(json.dumps({"type": "setup", "callSid": "CA-4"})) == [Ignore("setup")]
    assert conn.receive(json.dumps({"type": "interrupt", "utteranceUntilInterrupt": "Hel"})) == [Cancel("Hel")]
    assert conn.receive(json.dumps({"type": "error", "description": "tts"})) == [PlatformNote("tts")]
    assert conn.receive("{not json")[0].code is FrameCode.INVALID_JSON  # type: ignore[union-attr]
    assert conn.send(TurnDone(1, hangup="ev_1")) == [cr.text("", True), cr.end({"reasonCode": "hangup", "event_id": "ev_1"})]
    assert conn.send(TurnFailed(1, "TooManyTurns")) == [cr.end({"reasonCode": "error", "error": "TooManyTurns"})]
    rt = retell.RetellConnection("rt-1", MAX)
    assert rt.hello() == [retell.config_message()] and rt.attach() == Attach("rt-1")
    frame = {"interaction_type": "response_required", "response_id": 3, "transcript": [
        {"role": "agent", "content": "Hi"}, {"role": "user", "content": "hours?"}, {"role": "x", "content": "y"}]}
    assert rt.receive(json.dumps(frame)) == [Cancel(), StartTurn(3, "hours?", (("assistant", "Hi"), ("user", "hours?")))]
    assert rt.receive(json.dumps({"interaction_type": "ping_pong", "timestamp": 7})) == [Answer(retell.ping_pong(7))]
    assert rt.send(SpeechOut(3, "We open")) == [retell.response(3, "We open", complete=False)]
    assert rt.send(TurnDone(3, transfer_to="+1555", transfer_id="ev")) == [retell.response(3, "", complete=True, transfer_number="+1555")]


@pytest.mark.parametrize(
    ("handoff", "expected"),
    [
        ('{"reasonCode": "transfer", "callee": "+15551234567"}', "<Response><Dial>+15551234567</Dial></Response>"),
        ('{"reasonCode": "transfer", "callee": "sip:a&b@x"}', "<Response><Dial>sip:a&amp;b@x</Dial></Response>"),
        ('{"reasonCode": "hangup"}', "<Response><Hangup/></Response>"),
        ('{"reasonCode": "transfer"}', "<Response><Hangup/></Response>"),
        ("not json", "<Response><Hangup/></Response>"),
        (None, "<Response><Hangup/></Response>"),
    ],
)
def test_the_action_url_twiml(handoff: str | None, expected: str) -> None:
    assert cr.twiml(handoff) == expected


def test_a_setup_names_its_call() -> None:
    with pytest.raises(FrameError) as e:
        cr.read(json.dumps({"type": "setup", "from": "+1"}), 1000)
    assert e.value.code is FrameCode.BAD_FIELD
