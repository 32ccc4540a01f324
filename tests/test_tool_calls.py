"""The tool-call assembler (proxy.core.tool_calls) on every provider's delta shape,
whole, one byte of the arguments at a time and at random splits."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from proxy.core.tool_calls import Fed, ToolCallAssembler

TRANSFER_ARGS = '{"callee": "+8613800000000", "msg": "正在为您转接"}'


def assemble(entries: list[dict[str, Any]]) -> list[tuple[str | None, str, str]]:
    asm = ToolCallAssembler()
    for e in entries:
        asm.feed(e)
    return [(c.id, c.name, c.arguments) for c in asm.calls()]


def test_openai_first_entry_then_argument_pieces() -> None:
    entries = [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "end_call", "arguments": ""}}]
    entries += [{"index": 0, "function": {"arguments": ch}} for ch in '{"endword": "Bye"}']
    assert assemble(entries) == [("call_1", "end_call", '{"endword": "Bye"}')]


def test_dashscope_qwen3_omni_repeats_the_id_on_the_delta_with_the_arguments() -> None:
    # Model Studio "Function calling", Qwen3-Omni: the second delta repeats the id at index 0
    entries = [
        {"index": 0, "id": "call_8f0f", "type": "function", "function": {"name": "transfer_call", "arguments": ""}},
        {"index": 0, "id": "call_8f0f", "type": "function", "function": {"arguments": TRANSFER_ARGS}},
    ]
    assert assemble(entries) == [("call_8f0f", "transfer_call", TRANSFER_ARGS)]


def test_dashscope_continuations_carry_an_empty_id() -> None:
    entries = [{"index": 0, "id": "call_q", "type": "function", "function": {"name": "end_call", "arguments": '{"endw'}}]
    entries += [{"index": 0, "id": "", "type": "function", "function": {"arguments": 'ord": "再见"}'}}]
    assert assemble(entries) == [("call_q", "end_call", '{"endword": "再见"}')]


def test_the_ims_form_repeats_the_whole_call_and_is_one_call() -> None:
    whole = {"id": "call_abc123", "type": "function", "function": {"name": "hangup", "arguments": '{"endword": "再见"}'}}
    asm = ToolCallAssembler()
    assert [asm.feed(dict(whole))[1] for _ in range(3)] == [Fed.NEW, Fed.REPEAT, Fed.REPEAT]
    assert [(c.id, c.arguments) for c in asm.calls()] == [("call_abc123", '{"endword": "再见"}')]


def test_a_repeated_id_with_everything_so_far_and_more_is_a_snapshot() -> None:
    entries = [
        {"index": 0, "id": "c", "function": {"name": "end_call", "arguments": '{"endword"'}},
        {"index": 0, "id": "c", "function": {"arguments": '{"endword": "Bye"}'}},
    ]
    assert assemble(entries) == [("c", "end_call", '{"endword": "Bye"}')]


def test_gemini_parallel_calls_without_index_and_with_empty_ids_are_separate() -> None:
    # vercel/ai#6663: several whole calls in one delta, "id": "" and no index
    entries = [
        {"id": "", "type": "function", "function": {"name": "lookup_order", "arguments": '{"order_id": "A-1029"}'}},
        {"id": "", "type": "function", "function": {"name": "end_call", "arguments": '{"endword": "Goodbye!"}'}},
    ]
    asm = ToolCallAssembler()
    for e in entries:
        asm.feed(e)
    calls = asm.calls()
    assert [(c.index, c.name, c.arguments) for c in calls] == [
        (0, "lookup_order", '{"order_id": "A-1029"}'), (1, "end_call", '{"endword": "Goodbye!"}'),
    ]
    assert all(c.generated_id and c.id and c.id.startswith("call_") for c in calls)
    assert calls[0].id != calls[1].id


def test_mistral_whole_call_without_index_or_type_and_the_extra_fields_kept() -> None:
    entries = [{"id": "D681PevKs", "function": {"name": "end_call", "arguments": '{"endword": "Au revoir"}'}}]
    assert assemble(entries) == [("D681PevKs", "end_call", '{"endword": "Au revoir"}')]
    asm = ToolCallAssembler()
    sig = {"google": {"thought_signature": "CpMBAa..."}}
    call, _ = asm.feed({"id": "", "type": "function", "function": {"name": "end_call", "arguments": "{}"}, "extra_content": sig})
    assert call.extra == {"extra_content": sig}


def test_arguments_sent_as_an_object_are_kept_as_json() -> None:
    entries = [{"index": 0, "id": "o", "function": {"name": "end_call", "arguments": {"endword": "Bye"}}}]
    assert assemble(entries) == [("o", "end_call", json.dumps({"endword": "Bye"}))]


ARGS = st.text(alphabet='{}":, abc你+0123456789', min_size=0, max_size=40)


@given(ARGS, ARGS, st.lists(st.integers(min_value=1, max_value=60), max_size=6), st.booleans())
def test_any_split_of_the_arguments_assembles_the_same_calls(a: str, b: str, cuts: list[int], indexed: bool) -> None:
    def entries(cut: list[int]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i, (cid, name, args) in enumerate((("call_a", "lookup", a), ("call_b", "end_call", b))):
            points = sorted({c % (len(args) + 1) for c in cut})
            pieces = [args[x:y] for x, y in zip([0, *points], [*points, len(args)])]
            head = {"index": i} if indexed else {}
            out.append({**head, "id": cid, "type": "function", "function": {"name": name, "arguments": pieces[0]}})
            out += [{**head, "function": {"arguments": p}} for p in pieces[1:]]
        return out

    want = [("call_a", "lookup", a), ("call_b", "end_call", b)]
    assert assemble(entries([])) == assemble(entries(cuts)) == assemble(entries(list(range(1, 61)))) == want
