"""Tool calls written as text, through the reply inspector: each documented example
(``tests/fixtures/text_tool_calls.json``, sources named there) in strip, tool_calls
and text modes, the content whole in one delta, one character per delta, and the SSE
bytes cut at random: the exact speech; an unmapped call reaches the runtime as a
real tool call (a made-up ``call_`` id, ``finish_reason: "tool_calls"``); a mapped
one is one command (source ``text_tool_call``) rendered as the mode says; nothing of
the form is spoken and content never shares a delta with a tool call."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from proxy.core.commands import Command, RejectedCommand, RejectReason
from proxy.core.text_tools import FORMS, TextCall, TextToolScanner

from .conftest import fixture_names, fixture_stream
from .speech import MODES, assembled, chunk, content_stream, cuts, heard, inspect, shared_deltas, sse

FIXTURES: list[dict[str, Any]] = json.loads((Path(__file__).parent / "fixtures" / "text_tool_calls.json").read_text("utf-8"))
FMAP = (("hangup", "end_call"), ("transfer", "transfer_call"))
NONE_OF_THEM = (("hangup", "hang_up_now"), ("transfer", "transfer_now"))  # maps no fixture's function
MARKUP = ("<tool_call", "</tool_call", "[TOOL_CALLS", "<｜", "<|", "functions.", '"arguments"', '"parameters"', "<function=", "<arg_", "[ARGS]")
SPLITS = ("whole", "chars", "random")


def stream_of(content: str, split: str) -> tuple[bytes, list[int]]:
    if split == "chars":
        return content_stream(list(content)), []
    data = content_stream([content])
    return data, cuts(data, "random" if split == "random" else "whole", seed=len(content))


def speech_before_first_call(content: str) -> str:
    sc = TextToolScanner(FORMS)
    out: list[str] = []
    for item in sc.feed(content) + sc.close():
        if isinstance(item, TextCall):
            break
        out.append(item)
    return "".join(out)


def no_markup(text: str) -> None:
    assert not [m for m in MARKUP if m in text], text


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", FIXTURES, ids=[c["id"] for c in FIXTURES])
def test_an_unmapped_call_reaches_the_runtime_as_a_tool_call(case: dict[str, Any], mode: str, split: str) -> None:
    data, points = stream_of(case["content"], split)
    out, cmds, ins = inspect(data, points, output=mode, function_map=NONE_OF_THEM, text_tool_calls=FORMS)
    text, tools, finishes, deltas = heard(out)
    assert text == case["speech"]
    no_markup(text)
    calls = assembled(tools)
    assert [(name, args) for name, args, _ in calls] == [(n, a) for n, a in case["calls"]]
    ids = [i for _, _, i in calls]
    assert all(re.fullmatch(r"call_[0-9a-f]{24}", i) for i in ids) and len(set(ids)) == len(ids)
    assert [t["index"] for t in tools] == list(range(len(tools)))
    assert finishes == ["tool_calls"]
    assert cmds == []
    assert shared_deltas(deltas) == []
    assert ins.spoken_text == case["speech"]
    assert [(c["name"], json.loads(c["arguments"])) for c in ins.tool_calls] == [(n, a) for n, a in case["calls"]]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", FIXTURES, ids=[c["id"] for c in FIXTURES])
def test_a_mapped_call_is_one_command(case: dict[str, Any], mode: str, split: str) -> None:
    name = case["calls"][0][0]
    data, points = stream_of(case["content"], split)
    fmap = (("hangup", name), ("transfer", "transfer_now"))
    out, cmds, _ = inspect(data, points, output=mode, function_map=fmap, text_tool_calls=FORMS)
    text, tools, finishes, _ = heard(out)
    valid = [c for c in cmds if isinstance(c, Command)]
    assert [(c.function, c.source) for c in valid] == [("hangup", "text_tool_call")]
    assert all(isinstance(c, RejectedCommand) and c.code is RejectReason.AFTER_HANGUP for c in cmds if c not in valid)
    before = speech_before_first_call(case["content"])
    if mode == "strip":
        assert (text, tools, finishes) == (before, [], ["stop"])  # no endword: no closing words; nothing after the hangup
    elif mode == "text":
        assert text.startswith(before) and re.fullmatch(r"<imsagent_hangup[^<>]*/>", text[len(before):])
        assert (tools, finishes) == ([], ["stop"])
    else:
        assert text == before and [t["function"]["name"] for t in tools] == [name] and finishes == ["tool_calls"]
    no_markup(text)


def test_the_closing_words_of_a_mapped_call_are_spoken_in_its_place() -> None:
    content = 'Thanks!<tool_call>{"name": "end_call", "arguments": {"endword": "Goodbye."}}</tool_call> never heard'
    for pieces in ([content], list(content)):
        out, cmds, _ = inspect(content_stream(pieces), function_map=FMAP, text_tool_calls=FORMS)
        assert heard(out)[0] == "Thanks!Goodbye."
        assert [(c.function, c.args["endword"], c.raw) for c in cmds] == [("hangup", "Goodbye.", content[7:-12])]


def test_a_transfer_written_as_text_is_a_transfer() -> None:
    content = 'One moment. functions.transfer_call({"callee": "+14155550123", "msg": "Transferring you now."})'
    out, cmds, _ = inspect(content_stream([content]), function_map=FMAP, text_tool_calls=FORMS)
    assert heard(out)[0] == "One moment. Transferring you now."
    assert [(c.function, c.args["callee"], c.source) for c in cmds] == [("transfer", "+14155550123", "text_tool_call")]


def test_the_openai_default_watches_no_form() -> None:
    case = FIXTURES[0]
    data = content_stream([case["content"]])
    out, cmds, _ = inspect(data, function_map=FMAP)
    assert heard(out)[0] == case["content"] and cmds == []


@pytest.mark.parametrize("mode", [*MODES, "passthrough"])
def test_a_text_call_repeating_a_tool_call_is_that_call_not_a_second(mode: str) -> None:
    """livekit/agents-js#1339: one delta with ``content: "saveAnswer({...})"`` and the
    same call in ``tool_calls``."""
    entry = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "saveAnswer", "arguments": '{"answer": "yes"}'}}
    data = sse([
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Noted. "}),
        chunk({"content": 'saveAnswer({"answer": "yes"})', "tool_calls": [entry]}),
        chunk({}, "tool_calls"),
    ])
    out, cmds, _ = inspect(data, output=mode, function_map=FMAP, text_tool_calls=FORMS)
    text, tools, finishes, deltas = heard(out)
    if mode == "passthrough":
        assert out == data
        return
    assert text == "Noted. "
    assert [(n, a) for n, a, _ in assembled(tools)] == [("saveAnswer", {"answer": "yes"})]
    assert finishes == ["tool_calls"] and cmds == [] and shared_deltas(deltas) == []


def test_a_mapped_tool_call_echoed_as_text_hangs_up_once() -> None:
    entry = {"index": 0, "id": "call_9", "type": "function", "function": {"name": "end_call", "arguments": "{}"}}
    data = sse([chunk({"content": "Bye. end_call({})", "tool_calls": [entry]}), chunk({}, "tool_calls")])
    out, cmds, _ = inspect(data, output="tool_calls", function_map=FMAP, text_tool_calls=FORMS)
    assert [(c.function, c.source) for c in cmds] == [("hangup", "tool_call")]
    assert heard(out)[0] == "Bye. "


def test_a_text_call_first_then_the_same_mapped_tool_call_acts_once() -> None:
    entry = {"index": 0, "id": "call_9", "type": "function", "function": {"name": "end_call", "arguments": "{}"}}
    data = sse([chunk({"content": 'Bye.<tool_call>{"name": "end_call", "arguments": {}}</tool_call>'}), chunk({"tool_calls": [entry]}), chunk({}, "tool_calls")])
    _, cmds, _ = inspect(data, function_map=FMAP, text_tool_calls=FORMS)
    assert [(c.function, c.source) for c in cmds] == [("hangup", "text_tool_call")]


def test_an_unmapped_text_call_after_a_hangup_is_dropped() -> None:
    content = '<imsagent_hangup endword="Bye."/>[get_weather(city="Paris")]'
    out, cmds, _ = inspect(content_stream([content]), function_map=FMAP, text_tool_calls=FORMS)
    text, tools, finishes, _ = heard(out)
    assert (text, tools, finishes, len(cmds)) == ("Bye.", [], ["stop"], 1)


def test_a_non_streamed_completion_gets_its_tool_calls_in_the_message() -> None:
    case = next(c for c in FIXTURES if c["id"] == "qwen3_coder")
    body = json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": case["content"]}, "finish_reason": "stop"}],
    }).encode()
    from proxy.core.inspector import InspectorSettings, ReplyInspector

    out, cmds = ReplyInspector(InspectorSettings(function_map=FMAP, text_tool_calls=FORMS)).inspect_completion(body)
    choice = json.loads(out)["choices"][0]
    assert choice["message"]["content"] == case["speech"]
    assert [(t["function"]["name"], json.loads(t["function"]["arguments"])) for t in choice["message"]["tool_calls"]] == [
        (n, a) for n, a in case["calls"]
    ]
    assert "index" not in choice["message"]["tool_calls"][0] and choice["finish_reason"] == "tool_calls" and cmds == []


PROVIDERS = Path(__file__).parent / "fixtures" / "providers"


@pytest.mark.parametrize("mode", ["strip", "tool_calls", "text"])
@pytest.mark.parametrize("name", sorted(p.name for p in PROVIDERS.glob("*.sse")))
def test_recorded_streams_change_only_where_they_did(name: str, mode: str) -> None:
    """Watching every form changes nothing in the recorded provider streams (none
    writes a tool call as text): the same bytes as without it."""
    data = (PROVIDERS / name).read_bytes()
    settings: dict[str, Any] = {"output": mode, "function_map": FMAP, "thinking": "remove"}
    without, cmds_without, _ = inspect(data, **settings, text_tool_calls=())
    with_all, cmds_with, _ = inspect(data, **settings, text_tool_calls=FORMS)
    assert re.sub(rb"call_[0-9a-f]{24}", b"call_", with_all) == re.sub(rb"call_[0-9a-f]{24}", b"call_", without)
    assert [type(c) for c in cmds_with] == [type(c) for c in cmds_without]


@pytest.mark.parametrize("mode", ["strip", "passthrough", "tool_calls", "text"])
@pytest.mark.parametrize("name", fixture_names() or ["content-plain.sse"])
def test_recorded_openai_streams_pass_byte_for_byte_with_every_form_watched(name: str, mode: str) -> None:
    """Byte for byte, but a reply that opens a JSON object (a JSON-mode answer): its
    ``{"`` is held until it is known not to be a call, so its chunks are cut
    differently; what the runtime reads is the same."""
    data = fixture_stream(name)
    out, cmds, _ = inspect(data, output=mode, text_tool_calls=FORMS)
    assert cmds == []
    assert heard(out)[0] == heard(data)[0] and heard(out)[2] == heard(data)[2]
    if not set("{[<") & set(heard(data)[0]):
        assert out == data
