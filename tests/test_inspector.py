"""Chunk inspection: recorded streams pass byte for byte; commands are found and
rendered per output mode; the answer does not depend on how bytes were split."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.calls.model import Call
from proxy.calls.registry import OneHangupPerCall
from proxy.core.commands import Command, RejectedCommand
from proxy.core.inspector import InspectorSettings, ReplyInspector
from proxy.core.sse import SSEDecoder
from proxy.demo.scripted_upstream import ScriptedReply, completion
from proxy.demo.scripted_upstream import stream_body as sse  # a reply's SSE bytes

from .inspecting import close as ins_close, feed as ins_feed

from .conftest import fixture_names, fixture_stream

MODES = ["strip", "passthrough", "tool_calls", "text"]


def inspect(stream: bytes, cuts: list[int] | None = None, **settings_kw: Any) -> tuple[bytes, list[Any], ReplyInspector]:
    ins = ReplyInspector(InspectorSettings(**settings_kw))
    dec = SSEDecoder()
    out, cmds = b"", []
    points = sorted(set(cuts or []))
    for a, b in zip([0, *points], [*points, len(stream)]):
        for ev in dec.feed(stream[a:b]):
            o, c = ins_feed(ins, ev)
            out += o
            cmds += c
    for ev in dec.close():
        o, c = ins_feed(ins, ev)
        out += o
        cmds += c
    o, c = ins_close(ins)
    return out + o, cmds + c, ins


def content_of(stream: bytes) -> str:
    dec = SSEDecoder()
    text = ""
    for ev in dec.feed(stream) + dec.close():
        if ev.data and ev.data != "[DONE]":
            for ch in json.loads(ev.data).get("choices", []):
                text += (ch.get("delta") or {}).get("content") or ""
    return text


def parsed_chunks(stream: bytes) -> list[dict[str, Any]]:
    dec = SSEDecoder()
    return [json.loads(e.data) for e in dec.feed(stream) + dec.close() if e.data and e.data != "[DONE]"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", fixture_names() or ["content-plain.sse"])
def test_recorded_streams_pass_byte_for_byte(name: str, mode: str) -> None:
    data = fixture_stream(name)
    out, cmds, _ = inspect(data, output=mode)
    assert out == data
    assert cmds == []


@pytest.mark.parametrize("mode", MODES)
def test_angle_brackets_that_are_no_command_pass_byte_for_byte(mode: str) -> None:
    data = sse(ScriptedReply(content=["a < b", " and <b>bold</b>", " 1<2", " <imsagent", "_x/>"]))
    out, cmds, _ = inspect(data, output=mode)
    assert cmds == []
    assert content_of(out) == "a < b and <b>bold</b> 1<2 <imsagent_x/>"
    # chunks whose content holds nothing back are the same bytes
    for piece in (b'"a < b"', b'" and <b>bold</b>"'):
        assert piece in out


def test_recorded_stream_byte_for_byte_when_split_everywhere() -> None:
    data = fixture_stream("tool-call-single.sse")
    out, cmds, _ = inspect(data, cuts=list(range(len(data))))
    assert out == data and cmds == []


HANGUP_REPLY = ScriptedReply(content=["好的，", "再见前最后一句。", "<imsagent_hang", 'up endword="感谢来电，', '再见！"/>', "不该说的话"])
TRANSFER_REPLY = ScriptedReply(
    content=["I'll connect you. ", "<imsagent_transfer_call caller=111111, ", 'callee=123456, err_msg="Sorry, the line is busy.", ', 'msg="Transferring your call now..."/>', " Please hold."]
)


def test_strip_speaks_closing_and_nothing_after_hangup() -> None:
    out, cmds, ins = inspect(sse(HANGUP_REPLY))
    assert content_of(out) == "好的，再见前最后一句。感谢来电，再见！"
    assert [(c.function, dict(c.args)) for c in cmds] == [("hangup", {"endword": "感谢来电，再见！"})]
    assert ins.raw_text == "".join(HANGUP_REPLY.content)
    assert ins.spoken_text == "好的，再见前最后一句。感谢来电，再见！"
    assert parsed_chunks(out)[-1]["choices"][0]["finish_reason"] == "stop"


def test_strip_without_speak_closing() -> None:
    out, cmds, _ = inspect(sse(HANGUP_REPLY), speak_closing=False)
    assert content_of(out) == "好的，再见前最后一句。"
    assert len(cmds) == 1


def test_passthrough_sends_what_came_and_still_observes() -> None:
    data = sse(HANGUP_REPLY)
    out, cmds, _ = inspect(data, output="passthrough")
    assert out == data
    assert [c.function for c in cmds] == ["hangup"]


def test_text_mode_renders_canonical_command() -> None:
    out, cmds, _ = inspect(sse(TRANSFER_REPLY), output="text")
    assert content_of(out) == (
        "I'll connect you. "
        '<imsagent_transfer_call caller="111111" callee="123456" err_msg="Sorry, the line is busy." '
        'msg="Transferring your call now..."/>'
        " Please hold."
    )
    assert [c.function for c in cmds] == ["transfer"]


def test_tool_calls_mode_renders_a_tool_call() -> None:
    out, cmds, _ = inspect(sse(TRANSFER_REPLY), output="tool_calls")
    chunks_out = parsed_chunks(out)
    assert content_of(out) == "I'll connect you.  Please hold."
    calls = [tc for c in chunks_out for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert len(calls) == 1
    assert calls[0]["index"] == 0 and calls[0]["type"] == "function" and calls[0]["id"].startswith("call_")
    assert calls[0]["function"]["name"] == "transfer_call"
    assert json.loads(calls[0]["function"]["arguments"]) == {
        "caller": "111111", "callee": "123456", "err_msg": "Sorry, the line is busy.", "msg": "Transferring your call now..."
    }
    assert chunks_out[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_allow_list_rejects_and_speaks_err_msg() -> None:
    out, cmds, _ = inspect(sse(TRANSFER_REPLY), transfer_allow=("+86571*", "1001"))
    assert content_of(out) == "I'll connect you. Sorry, the line is busy. Please hold."
    [cmd] = cmds
    assert isinstance(cmd, RejectedCommand) and "transfer_allow" in cmd.reason


def test_allow_list_pattern_admits() -> None:
    _, cmds, _ = inspect(sse(TRANSFER_REPLY), transfer_allow=("1234*",))
    assert isinstance(cmds[0], Command)


def test_transfer_without_callee_is_rejected_never_spoken() -> None:
    reply = ScriptedReply(content=['One moment. <imsagent_transfer_call msg="hold on" err_msg="不行"/>ok'])
    out, cmds, _ = inspect(sse(reply))
    assert content_of(out) == "One moment. 不行ok"
    assert isinstance(cmds[0], RejectedCommand) and cmds[0].reason == "transfer without callee"


def test_unterminated_command_at_end_is_rejected_not_spoken() -> None:
    reply = ScriptedReply(content=['Bye. <imsagent_hangup endword="Bye'], finish_reason="length")
    out, cmds, _ = inspect(sse(reply))
    assert content_of(out) == "Bye. "
    assert isinstance(cmds[0], RejectedCommand)


def test_stream_without_finish_reason_or_done_still_flushes() -> None:
    data = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"see you <ims"}}]}\n\n'
    out, _, _ = inspect(data)
    assert content_of(out) == "see you <ims"


# -- tool calls and the FunctionMap -----------------------------------------------

def tool_reply(name: str, args: list[str], content: list[str] | None = None, call_id: str = "call_abc") -> ScriptedReply:
    entries = [{"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]
    entries += [{"index": 0, "function": {"arguments": a}} for a in args]
    return ScriptedReply(content=content or [], tool_calls=entries, finish_reason="tool_calls")


FMAP = (("hangup", "end_call"), ("transfer", "transfer_call"))


def test_mapped_hangup_tool_call_is_removed_and_spoken_in_strip() -> None:
    reply = tool_reply("end_call", ['{"endw', 'ord": "Goodbye!"}'], content=["Thanks. "])
    out, cmds, _ = inspect(sse(reply), function_map=FMAP)
    assert content_of(out) == "Thanks. Goodbye!"
    assert all("tool_calls" not in c["choices"][0]["delta"] for c in parsed_chunks(out))
    assert parsed_chunks(out)[-1]["choices"][0]["finish_reason"] == "stop"
    [cmd] = cmds
    assert cmd.source == "tool_call" and cmd.tool_call_id == "call_abc" and cmd.args == {"endword": "Goodbye!"}


def test_mapped_tool_call_to_text_mode() -> None:
    reply = tool_reply("transfer_call", ['{"callee": "1001", "msg": "转接中"}'])
    out, cmds, _ = inspect(sse(reply), output="text", function_map=FMAP)
    assert content_of(out) == '<imsagent_transfer_call callee="1001" msg="转接中"/>'
    assert parsed_chunks(out)[-1]["choices"][0]["finish_reason"] == "stop"


def test_mapped_tool_call_in_tool_calls_mode_keeps_id_and_name() -> None:
    reply = tool_reply("end_call", ["{}"])
    out, _, _ = inspect(sse(reply), output="tool_calls", function_map=FMAP)
    calls = [tc for c in parsed_chunks(out) for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls == [{"index": 0, "id": "call_abc", "type": "function", "function": {"name": "end_call", "arguments": "{}"}}]


def test_unmapped_tool_call_passes_untouched() -> None:
    data = sse(tool_reply("get_weather", ['{"city":', '"Paris"}']))
    out, cmds, _ = inspect(data, function_map=FMAP)
    assert out == data and cmds == []


def test_invalid_json_arguments() -> None:
    _, cmds, _ = inspect(sse(tool_reply("end_call", ['{"endword": "By'])), function_map=FMAP)
    assert isinstance(cmds[0], Command)  # a hangup needs no arguments
    _, cmds, _ = inspect(sse(tool_reply("transfer_call", ["not json"])), function_map=FMAP)
    assert isinstance(cmds[0], RejectedCommand) and "JSON" in cmds[0].reason


def test_ims_style_repeated_tool_call_is_one_call() -> None:
    """The IMS doc's example repeats the whole call, same id, no index, on every chunk."""
    tc = {"id": "call_abc123", "type": "function", "function": {"name": "hangup", "arguments": "{}"}}
    reply = ScriptedReply(content=[], tool_calls=[tc, tc, tc], finish_reason="stop")
    out, cmds, ins = inspect(sse(reply))
    assert len(cmds) == 1 and cmds[0].function == "hangup"
    assert ins.tool_calls == [{"id": "call_abc123", "name": "hangup", "arguments": "{}"}]


def test_unmapped_calls_are_renumbered_around_removed_ones() -> None:
    entries = [
        {"index": 0, "id": "a", "type": "function", "function": {"name": "end_call", "arguments": "{}"}},
        {"index": 1, "id": "b", "type": "function", "function": {"name": "lookup", "arguments": "{}"}},
    ]
    out, _, _ = inspect(sse(ScriptedReply(tool_calls=entries, finish_reason="tool_calls")), function_map=FMAP)
    calls = [tc for c in parsed_chunks(out) for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert [(c["index"], c["id"]) for c in calls] == [(0, "b")]
    assert parsed_chunks(out)[-1]["choices"][0]["finish_reason"] == "tool_calls"


# -- hangups, choices ------------------------------------------------------------

def test_duplicate_hangup_across_replies() -> None:
    _, cmds, _ = inspect(sse(HANGUP_REPLY))
    assert isinstance(cmds[0], Command)
    call = Call("call-dup")
    assert OneHangupPerCall(call).refuse_hangup("text_command", True) is None  # the first reply's hangup
    ins = ReplyInspector(InspectorSettings(), policy=OneHangupPerCall(call))
    dec = SSEDecoder()
    cmds2 = [c for ev in dec.feed(sse(HANGUP_REPLY)) for c in ins_feed(ins, ev)[1]]
    assert isinstance(cmds2[0], RejectedCommand) and "duplicate" in cmds2[0].reason


def test_second_command_after_hangup_in_same_reply() -> None:
    reply = ScriptedReply(content=['<imsagent_hangup endword="a"/><imsagent_hangup endword="b"/>'])
    out, cmds, _ = inspect(sse(reply))
    assert content_of(out) == "a"
    assert [type(c).__name__ for c in cmds] == ["Command", "RejectedCommand"]


def test_each_choice_parsed_on_its_own_only_choice_0_acts() -> None:
    def chunk(i: int, content: str | None, fr: str | None = None) -> bytes:
        delta = {} if content is None else {"content": content}
        return b"data: " + json.dumps({"id": "c", "choices": [{"index": i, "delta": delta, "finish_reason": fr}]}).encode() + b"\n\n"

    data = (
        chunk(0, "A <imsagent_ha") + chunk(1, "B <imsagent_hangup endword='b'/>") + chunk(0, 'ngup endword="a"/>')
        + chunk(0, None, "stop") + chunk(1, None, "stop") + b"data: [DONE]\n\n"
    )
    out, cmds, _ = inspect(data)
    texts = {0: "", 1: ""}
    for c in parsed_chunks(out):
        for ch in c["choices"]:
            texts[ch["index"]] += ch["delta"].get("content") or ""
    assert texts == {0: "A a", 1: "B b"}
    assert [(c.function, c.args["endword"]) for c in cmds] == [("hangup", "a")]


def test_rewritten_event_keeps_its_event_name() -> None:
    data = b'event: completion\ndata: {"id":"c","choices":[{"index":0,"delta":{"content":"<imsagent_hangup endword=\\"x\\"/>"},"finish_reason":null}]}\n\n'
    out, cmds, _ = inspect(data)
    assert out.startswith(b"event: completion\ndata: ") and len(cmds) == 1
    assert content_of(out) == "x"


def test_usage_chunk_and_unknown_fields_pass() -> None:
    usage = b'data: {"id":"c","choices":[],"usage":{"total_tokens":3},"x_vendor":{"k":1}}\n\n'
    out, _, _ = inspect(sse(HANGUP_REPLY)[:-len(b"data: [DONE]\n\n")] + usage + b"data: [DONE]\n\n")
    assert usage in out


# -- non-streamed ----------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_non_streamed_completion(mode: str) -> None:
    body = json.dumps(completion(TRANSFER_REPLY)).encode()
    ins = ReplyInspector(InspectorSettings(output=mode))
    out, cmds = ins.inspect_completion(body)
    assert [c.function for c in cmds] == ["transfer"]
    msg = json.loads(out)["choices"][0]["message"]
    if mode == "passthrough":
        assert out == body
    elif mode == "strip":
        assert msg["content"] == "I'll connect you. Transferring your call now... Please hold."
    elif mode == "text":
        assert msg["content"].count("<imsagent_transfer_call ") == 1
    else:
        assert msg["tool_calls"][0]["function"]["name"] == "transfer_call"
        assert "index" not in msg["tool_calls"][0]
        assert json.loads(out)["choices"][0]["finish_reason"] == "tool_calls"


def test_non_streamed_without_commands_is_unchanged() -> None:
    body = json.dumps(completion(ScriptedReply(content=["plain <b>text</b>"]))).encode()
    assert ReplyInspector(InspectorSettings()).inspect_completion(body) == (body, [])


# -- split independence over SSE bytes --------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@given(cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=25))
@settings(max_examples=60, deadline=None)
def test_spoken_text_and_commands_independent_of_byte_splits(mode: str, cuts: list[int]) -> None:
    tools = [  # an unmapped call that passes on, and a mapped transfer
        {"index": 0, "id": "call_l", "type": "function", "function": {"name": "lookup", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"q": "账'}},
        {"index": 0, "function": {"arguments": '单"}'}},
        {"index": 1, "id": "call_t", "type": "function", "function": {"name": "transfer_call", "arguments": ""}},
        {"index": 1, "function": {"arguments": '{"callee": "1'}},
        {"index": 1, "function": {"arguments": '001"}'}},
    ]
    data = sse(ScriptedReply(content=list(HANGUP_REPLY.content[:2]) + list(TRANSFER_REPLY.content) + list(HANGUP_REPLY.content[2:]), tool_calls=tools))
    base_out, base_cmds, _ = inspect(data, output=mode)
    out, cmds, _ = inspect(data, cuts=[c for c in cuts if c <= len(data)], output=mode)
    assert content_of(out) == content_of(base_out)
    assert [(type(c), c.function, dict(c.args)) for c in cmds] == [(type(c), c.function, dict(c.args)) for c in base_cmds]
    assert [c.function for c in base_cmds] == ["transfer", "hangup", "transfer"]
    def calls(stream: bytes) -> list[Any]:
        return [(tc.get("index"), tc.get("function")) for c in parsed_chunks(stream) for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    got, want = calls(out), calls(base_out)
    assert [(i, f.get("name"), f.get("arguments")) for i, f in got] == [(i, f.get("name"), f.get("arguments")) for i, f in want]
