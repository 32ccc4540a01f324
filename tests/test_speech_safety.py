"""Nothing unspeakable is spoken (issue 29), through the reply inspector: every
thinking shape (tags, reasoning fields, thinking parts, opened in the prompt), mixed
deltas (content beside tool calls or reasoning) in every mode, goodbye phrases; and
the profiles' and upstreams' settings for them. Whole, one character per delta, and
the SSE bytes cut at random."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.calls.model import Call
from proxy.calls.registry import OneHangupPerCall
from proxy.config import parse_config
from proxy.core.commands import Command
from proxy.core.text_tools import FORMS
from proxy.errors import ConfigError
from proxy.profiles import resolve_profiles

from .speech import MODES, assembled, chunk, content_stream, cuts, heard, inspect, shared_deltas, sse

FMAP = (("hangup", "end_call"), ("transfer", "transfer_call"))
SPLITS = ("whole", "chars", "random")
VOICE: dict[str, Any] = {"function_map": FMAP, "text_tool_calls": FORMS, "thinking": "remove"}


def content_in(content: str, split: str, **kw: Any) -> tuple[bytes, list[Any], Any]:
    if split == "chars":
        return inspect(content_stream(list(content)), **kw)
    data = content_stream([content])
    return inspect(data, cuts(data, "random" if split == "random" else "whole", seed=len(content)), **kw)


# -- thinking -----------------------------------------------------------------------

TAGGED = [
    ("<think>\nThe caller is done.\n</think>\n\nGoodbye!", "\n\nGoodbye!", "\nThe caller is done.\n"),
    ("<thinking>Plan: greet.</thinking>Hello there.", "Hello there.", "Plan: greet."),
    ("Sure. <reasoning>why not</reasoning>Done.", "Sure. Done.", "why not"),
    ("<thought>[1] {x} <b></thought>好的，再见。", "好的，再见。", "[1] {x} <b>"),
    ("<THINK>a</THINK>b<think>never closed", "b", "anever closed"),
]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("content", "speech", "thought"), TAGGED)
def test_every_thinking_tag_is_thinking(content: str, speech: str, thought: str, mode: str, split: str) -> None:
    out, cmds, ins = content_in(content, split, output=mode, **VOICE)
    text, tools, _, _ = heard(out)
    assert (text, tools, cmds) == (speech, [], [])
    assert ins.reasoning_text == thought and ins.spoken_text == speech
    assert not ins.thinking_unopened


@pytest.mark.parametrize("split", SPLITS)
def test_forwarded_thinking_goes_as_it_came_but_is_never_speech(split: str) -> None:
    content = "<thinking>maybe <imsagent_hangup/></thinking>Hi."
    out, cmds, ins = content_in(content, split, function_map=FMAP, text_tool_calls=FORMS, thinking="forward")
    assert heard(out)[0] == content and cmds == [] and ins.spoken_text == "Hi."


R1 = "The caller said bye. I could call end_call.</think>\n\nThank you for calling. Goodbye!"


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("mode", MODES)
def test_a_reply_opened_in_the_prompt_is_thinking_until_its_closing_tag(mode: str, split: str) -> None:
    out, cmds, ins = content_in(R1, split, output=mode, thinking_open=True, **VOICE)
    assert heard(out)[0] == "\n\nThank you for calling. Goodbye!"
    assert ins.reasoning_text == "The caller said bye. I could call end_call."
    assert not ins.thinking_unopened and cmds == []


@pytest.mark.parametrize("split", SPLITS)
def test_a_closing_tag_with_no_opening_is_reported_for_the_server_to_count(split: str) -> None:
    out, _, ins = content_in(R1, split, **VOICE)
    assert ins.thinking_unopened
    assert "</think>" not in heard(out)[0]


def test_opened_in_the_prompt_but_sent_apart_by_the_server_is_speech() -> None:
    """vLLM with a reasoning parser: the thinking comes as reasoning_content, the
    content has no </think> and is all speech."""
    data = sse([chunk({"role": "assistant", "reasoning_content": "hmm"}), chunk({"content": "Hello!"}), chunk({}, "stop")])
    out, _, ins = inspect(data, thinking_open=True, **VOICE)
    assert heard(out)[0] == "Hello!" and ins.reasoning_text == "hmm"


REASONING = [
    [chunk({"role": "assistant", "content": None, "reasoning_content": "Let me think."}), chunk({"content": "Hi!", "reasoning_content": None})],
    [chunk({"role": "assistant", "reasoning": "Let me think."}), chunk({"content": "Hi!"})],
    [chunk({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "Let me think."}]}]}), chunk({"content": [{"type": "text", "text": "Hi!"}]})],
]


@pytest.mark.parametrize("split", ["whole", "bytes"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", range(len(REASONING)), ids=["reasoning_content", "reasoning", "thinking_part"])
def test_reasoning_fields_and_thinking_parts_are_thinking(shape: int, mode: str, split: str) -> None:
    data = sse([*REASONING[shape], chunk({}, "stop")])
    out, _, ins = inspect(data, cuts(data, split), output=mode, **VOICE)
    assert heard(out)[0] == "Hi!" and ins.reasoning_text == "Let me think."
    assert b"Let me think" not in out


# -- mixed deltas ---------------------------------------------------------------------

UNMAPPED = {"index": 0, "id": "call_w", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
MAPPED = {"index": 0, "id": "call_h", "type": "function", "function": {"name": "end_call", "arguments": '{"endword": "Bye."}'}}


@pytest.mark.parametrize("mode", [*MODES, "passthrough"])
def test_content_beside_an_unmapped_tool_call_is_split_in_two(mode: str) -> None:
    data = sse([chunk({"role": "assistant", "content": "Let me check.", "tool_calls": [UNMAPPED]}), chunk({}, "tool_calls")])
    out, cmds, _ = inspect(data, output=mode, **VOICE)
    text, tools, finishes, deltas = heard(out)
    assert (text, [(n, a) for n, a, _ in assembled(tools)], finishes, cmds) == ("Let me check.", [("get_weather", {"city": "Paris"})], ["tool_calls"], [])
    assert (shared_deltas(deltas) == []) == (mode != "passthrough")
    if mode == "passthrough":
        assert out == data


@pytest.mark.parametrize("mode", [*MODES, "passthrough"])
def test_content_beside_a_mapped_tool_call(mode: str) -> None:
    data = sse([chunk({"content": "All done.", "tool_calls": [MAPPED]}), chunk({}, "tool_calls")])
    out, cmds, _ = inspect(data, output=mode, **VOICE)
    text, tools, finishes, deltas = heard(out)
    assert [(c.function, c.source) for c in cmds] == [("hangup", "tool_call")]
    assert shared_deltas(deltas) == [] or mode == "passthrough"
    expected = {
        "strip": ("All done.Bye.", [], ["stop"]),
        "text": ('All done.<imsagent_hangup endword="Bye."/>', [], ["stop"]),
        "tool_calls": ("All done.", ["end_call"], ["tool_calls"]),
        "passthrough": ("All done.", ["end_call"], ["tool_calls"]),
    }[mode]
    assert (text, [t["function"]["name"] for t in tools], finishes) == expected


@pytest.mark.parametrize("mode", [*MODES, "passthrough"])
def test_content_beside_reasoning_in_one_delta(mode: str) -> None:
    data = sse([chunk({"content": "Hi <think>x</think>there", "reasoning_content": "deep"}), chunk({}, "stop")])
    out, _, ins = inspect(data, output=mode, **VOICE)
    text = heard(out)[0]
    assert text == ("Hi <think>x</think>there" if mode == "passthrough" else "Hi there")
    assert (b"deep" in out) == (mode == "passthrough") and ins.reasoning_text == "xdeep"


# -- goodbye phrases ----------------------------------------------------------------

PHRASES = ("Goodbye!", "再见", "have a nice day")


def say(content: str, mode: str = "strip", split: str = "whole", **kw: Any) -> tuple[str, list[Any], list[Any], list[Any]]:
    out, cmds, _ = content_in(content, split, output=mode, end_call_phrases=PHRASES, **{**VOICE, **kw})
    text, tools, finishes, _ = heard(out)
    return text, tools, finishes, cmds


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        ("Thanks for calling. GOODBYE.", "Goodbye!"),
        ("Thanks for calling, good-bye! 👋", None),
        ("好的，感谢您的来电，再见。", "再见"),
        ("好的，下次再见", "再见"),
        ("OK — Have a nice   day!!", "have a nice day"),
        ("Goodbye! Wait, one more thing: your order ships Monday.", None),
        ("Goodbye is a sad word, is it not?", None),
        ("byebye goodbye", "Goodbye!"),
        ("notgoodbye", None),
    ],
)
def test_a_reply_that_ends_with_a_phrase_hangs_up_with_it(content: str, phrase: str | None, split: str) -> None:
    text, tools, finishes, cmds = say(content, split=split)
    assert text == content  # the phrase is spoken once, as the model wrote it
    if phrase is None:
        assert cmds == []
        return
    assert [(c.function, c.source, dict(c.args)) for c in cmds] == [("hangup", "phrase", {"endword": phrase})]
    assert isinstance(cmds[0], Command) and (tools, finishes) == ([], ["stop"])


def test_a_phrase_hangup_is_rendered_per_mode_without_saying_it_again() -> None:
    assert say("Goodbye!", "text")[0] == "Goodbye!<imsagent_hangup/>"
    text, tools, finishes, _ = say("Goodbye!", "tool_calls")
    assert (text, [t["function"]["name"] for t in tools], finishes) == ("Goodbye!", ["end_call"], ["tool_calls"])
    assert '"endword"' not in tools[0]["function"]["arguments"]


@pytest.mark.parametrize(
    "content",
    [
        '<imsagent_transfer_call callee="+14155550123" msg="Transferring. Goodbye!"/>',
        'Goodbye!<imsagent_hangup endword=""/>',
        "Goodbye! functions.lookup_order({\"id\": 7})",
        '<imsagent_transfer_call msg="x"/>Goodbye!',
    ],
)
def test_no_phrase_after_a_command_a_transfer_or_a_tool_call(content: str) -> None:
    cmds = say(content)[3]
    assert [c.source for c in cmds if c.source == "phrase"] == []


def test_no_phrase_when_the_stream_was_cut() -> None:
    """No finish_reason and no [DONE]: the upstream broke off, the reply did not end."""
    cut = sse([chunk({"role": "assistant", "content": "Goodbye!"})], done=False)
    assert inspect(cut, end_call_phrases=PHRASES, **VOICE)[1] == []
    done = sse([chunk({"role": "assistant", "content": "Goodbye!"})], done=True)  # [DONE] without a finish_reason ends it
    assert [c.source for c in inspect(done, end_call_phrases=PHRASES, **VOICE)[1]] == ["phrase"]


def test_no_phrase_once_the_call_hung_up() -> None:
    call = Call("c1")
    policy = OneHangupPerCall(call)
    assert policy.refuse_hangup("text_command", True) is None
    _, cmds, _ = inspect(content_stream(["Goodbye!"]), policy=policy, end_call_phrases=PHRASES, **VOICE)
    assert cmds == []


def test_no_phrases_by_default() -> None:
    _, cmds, _ = inspect(content_stream(["Goodbye!"]), **VOICE)
    assert cmds == []


# -- settings -------------------------------------------------------------------------

def test_voice_profiles_watch_every_form_and_openai_none() -> None:
    profiles = resolve_profiles(parse_config({}))
    assert profiles["openai"].settings.text_tool_calls == ()
    for name in ("ims", "vapi", "elevenlabs", "livekit", "pipecat"):
        assert profiles[name].settings.text_tool_calls == FORMS
    assert all(p.settings.think_tags == ("think", "thinking", "reasoning", "thought") for p in profiles.values())
    assert all(p.settings.end_call_phrases == () and not p.settings.thinking_open for p in profiles.values())


def test_profiles_set_forms_and_phrases_and_extends_keeps_them() -> None:
    cfg = parse_config({"profiles": {
        "vapi": {"text_tool_calls": ["hermes"], "end_call_phrases": ["Bye!"]},
        "mine": {"extends": "vapi"},
    }})
    profiles = resolve_profiles(cfg)
    assert profiles["vapi"].settings.text_tool_calls == ("hermes",)
    assert profiles["mine"].settings.end_call_phrases == ("Bye!",)
    assert profiles["vapi"].describe()["text_tool_calls"] == ["hermes"]


def test_an_unknown_form_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"profiles\.vapi\.text_tool_calls"):
        parse_config({"profiles": {"vapi": {"text_tool_calls": ["xml"]}}})


def test_upstream_and_pool_entries_take_thinking_open_models() -> None:
    cfg = parse_config({"upstream": {"thinking_open_models": ["deepseek-r1*"]}})
    assert cfg.pool[0].thinking_open_models == ["deepseek-r1*"]
    cfg = parse_config({"upstreams": [{"name": "a", "base_url": "http://a/v1", "thinking_open_models": ["qwq-*"]}]})
    assert cfg.pool[0].thinking_open_models == ["qwq-*"]
