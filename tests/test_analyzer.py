"""The per-choice analyzer and the renderers, without JSON: findings are the same
however the content is split, and each output mode renders them as documented."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy import Conversation
from proxy.calls.model import Call
from proxy.calls.registry import OneHangupPerCall
from proxy.core.analyzer import (
    ChoiceAnalyzer,
    Found,
    NoCallPolicy,
    Silenced,
)
from proxy.core.commands import REASONS, Command, RejectedCommand, RejectReason
from proxy.core.function_map import FunctionMap
from proxy.core.render import ChoiceOutput, renderer_for

TAGS = {"hangup": "imsagent_hangup", "transfer": "imsagent_transfer_call"}
FMAP = FunctionMap([("hangup", "end_call"), ("transfer", "transfer_call")])
TEXT = 'Sure. <imsagent_transfer_call callee="1001" msg="转接中"/> one moment <imsagent_hangup endword="再见"/> never said'


def analyzer(policy: Any = None, index: int = 0) -> ChoiceAnalyzer:
    return ChoiceAnalyzer(index, tags=TAGS, fmap=FMAP, policy=policy or NoCallPolicy())


def findings_of(pieces: list[str], policy: Any = None) -> list[Any]:
    an = analyzer(policy)
    out: list[Any] = []
    for p in pieces:
        found = an.feed(p)
        out += [p] if found is None else found
    return out + an.close()


def normalized(findings: list[Any]) -> list[tuple[str, Any]]:
    """Adjacent text joined, so that findings from different splits compare."""
    out: list[tuple[str, Any]] = []
    for f in findings:
        kind, value = ("text", f) if isinstance(f, str) else ("silenced", f.text) if isinstance(f, Silenced) else ("cmd", f.command)
        if kind != "cmd" and out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + value)
        elif kind != "cmd" and not value:
            continue
        else:
            out.append((kind, value))
    return [(k, (type(v).__name__, v.function, dict(v.args)) if k == "cmd" else v) for k, v in out]


def test_findings_whole() -> None:
    got = normalized(findings_of([TEXT]))
    assert got == [
        ("text", "Sure. "),
        ("cmd", ("Command", "transfer", {"callee": "1001", "msg": "转接中"})),
        ("text", " one moment "),
        ("cmd", ("Command", "hangup", {"endword": "再见"})),
        ("silenced", " never said"),
    ]


def test_findings_one_char_at_a_time_equal_whole() -> None:
    assert normalized(findings_of(list(TEXT))) == normalized(findings_of([TEXT]))


@given(cuts=st.lists(st.integers(min_value=0, max_value=len(TEXT)), max_size=20))
@settings(max_examples=200, deadline=None)
def test_findings_at_random_splits_equal_whole(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    pieces = [TEXT[a:b] for a, b in zip([0, *points], [*points, len(TEXT)]) if TEXT[a:b]]
    assert normalized(findings_of(pieces)) == normalized(findings_of([TEXT]))


def test_plain_text_is_the_hot_path() -> None:
    an = analyzer()
    assert an.feed("no command here") is None
    assert an.raw.text() == "no command here"


def test_second_command_after_a_hangup_is_rejected() -> None:
    found = [f.command for f in findings_of(['<imsagent_hangup endword="a"/><imsagent_hangup endword="b"/>']) if isinstance(f, Found)]
    assert isinstance(found[0], Command)
    assert isinstance(found[1], RejectedCommand) and found[1].code is RejectReason.AFTER_HANGUP
    assert found[1].reason == REASONS[RejectReason.AFTER_HANGUP] == "command after a hangup in the same reply"


def test_the_call_domain_decides_one_hangup_per_call() -> None:
    call = Call("c-1")
    first = [f.command for f in findings_of(['<imsagent_hangup endword="a"/>'], OneHangupPerCall(call)) if isinstance(f, Found)]
    second = [f.command for f in findings_of(['<imsagent_hangup endword="b"/>'], OneHangupPerCall(call)) if isinstance(f, Found)]
    assert isinstance(first[0], Command)
    assert isinstance(second[0], RejectedCommand) and second[0].code is RejectReason.DUPLICATE_HANGUP


def test_choices_other_than_0_do_not_claim_the_hangup() -> None:
    call = Call("c-2")
    an = analyzer(OneHangupPerCall(call), index=1)
    an.feed('<imsagent_hangup endword="x"/>')
    assert not call.lifecycle.hung_up


def test_mapped_tool_call_becomes_a_command_when_the_choice_finishes() -> None:
    an = analyzer()
    te = an.feed_tool({"index": 0, "id": "call_1", "type": "function", "function": {"name": "end_call", "arguments": '{"endword": "Bye"}'}})
    assert te.mapped and te.index == 0
    [found] = an.close()
    assert isinstance(found, Found) and found.command.function == "hangup" and found.command.args == {"endword": "Bye"}


@pytest.mark.parametrize(
    ("mode", "text", "tools"),
    [
        ("strip", "Sure. 转接中 one moment 再见", 0),
        ("text", 'Sure. <imsagent_transfer_call callee="1001" msg="转接中"/> one moment <imsagent_hangup endword="再见"/>', 0),
        ("tool_calls", "Sure.  one moment ", 2),
    ],
)
def test_each_renderer(mode: str, text: str, tools: int) -> None:
    out = ChoiceOutput()
    got_text, got_tools = renderer_for(mode, FMAP, TAGS, speak_closing=True).render(findings_of([TEXT]), out)
    assert got_text == text
    assert len(got_tools) == tools
    assert [t["function"]["name"] for t in got_tools] == ["transfer_call", "end_call"][:tools]
    assert out.rendered_tools == (tools > 0)


def test_passthrough_renderer_changes_nothing() -> None:
    r = renderer_for("passthrough", FMAP, TAGS, speak_closing=True)
    assert r.changes_nothing
    entry = {"index": 3, "function": {"name": "end_call"}}
    an = analyzer()
    assert r.tool_entry(an.feed_tool(entry), ChoiceOutput()) is entry
    assert r.finish_reason("tool_calls", ChoiceOutput(dropped_tools=True)) == "tool_calls"


def test_conversation_is_frozen_and_grows_by_copy() -> None:
    record = {"id": "c-9", "end_reason": "agent_hangup", "transcript": [{"role": "user", "text": "hi"}], "events": []}
    conv = Conversation.from_record(record, step="crm", idempotency_key="c-9:crm")
    with pytest.raises(dataclasses.FrozenInstanceError):
        conv.end_reason = "other"  # type: ignore[misc]
    later = conv.with_result("tags", {"tags": ["lead_collected"]})
    assert later.results == {"tags": {"tags": ["lead_collected"]}} and conv.results == {}
    assert "lead_collected" in later.outcome_tags and "lead_collected" not in conv.outcome_tags
    assert later.idempotency_key == "c-9:crm"
