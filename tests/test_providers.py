"""Every provider's recorded stream shape through the reply inspector
(``tests/fixtures/providers/``, each file's source in ``SOURCES.md`` and
``cases.json``): in strip, tool_calls and text modes, whole, one byte at a time and
at random splits; the exact spoken text, no command markup or thinking spoken, one
control event per command, chunks without commands byte for byte, the provider's
extra fields kept."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from proxy.core.commands import Command
from proxy.core.inspector import InspectorSettings, ReplyInspector
from proxy.core.sse import SSEDecoder, SSEEvent
from . import speech
from .inspecting import close as ins_close, feed as ins_feed

FIXTURES = Path(__file__).parent / "fixtures" / "providers"
CASES: list[dict[str, Any]] = json.loads((FIXTURES / "cases.json").read_text(encoding="utf-8"))
FMAP = (("hangup", "end_call"), ("transfer", "transfer_call"))
TAG = re.compile(r"<imsagent_(hangup|transfer_call)\b(.*?)/>", re.DOTALL)
THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL | re.IGNORECASE)
ATTR = re.compile(r'(\w+)\s*=\s*"([^"]*)"')
GENERATED = re.compile(rb'"call_[0-9a-f]{24}"')


def case_id(case: dict[str, Any]) -> str:
    return case["file"].removesuffix(".sse")


def stream(case: dict[str, Any]) -> bytes:
    return (FIXTURES / case["file"]).read_bytes()


def events(data: bytes, cuts: list[int]) -> list[SSEEvent]:
    dec = SSEDecoder()
    out: list[SSEEvent] = []
    points = sorted({c for c in cuts if 0 < c < len(data)})
    for a, b in zip([0, *points], [*points, len(data)]):
        out += dec.feed(data[a:b])
    return out + dec.close()


def inspect(data: bytes, mode: str, cuts: list[int], thinking: str = "remove") -> tuple[bytes, list[Any], ReplyInspector]:
    ins = ReplyInspector(InspectorSettings(output=mode, function_map=FMAP, thinking=thinking))  # type: ignore[arg-type]
    out, cmds = b"", []
    for ev in events(data, cuts):
        o, c = ins_feed(ins, ev)
        out, cmds = out + o, cmds + c
    o, c = ins_close(ins)
    return out + o, cmds + c, ins


def heard(out: bytes) -> tuple[str, list[dict[str, Any]], list[Any]]:
    """What the runtime receives of choice 0: its content (text parts joined), its
    tool-call entries, and every finish_reason."""
    text, tools, finishes, _ = speech.heard(out)
    return text, tools, finishes


def expected_speech(case: dict[str, Any]) -> tuple[str, list[str]]:
    """The oracle: strip mode's spoken text (thinking removed, a command replaced by
    its closing words, nothing after a hangup) and the accepted commands' functions."""
    said = THINK.sub("", case["content"])
    spoken, functions, hung_up = "", [], False
    pos = 0
    for m in TAG.finditer(said):
        if not hung_up:
            spoken += said[pos:m.start()]
            attrs = dict(ATTR.findall(m.group(2)))
            function = "hangup" if m.group(1) == "hangup" else "transfer"
            spoken += attrs.get("endword" if function == "hangup" else "msg", "")
            functions.append(function)
            hung_up = function == "hangup"
        pos = m.end()
    if not hung_up:
        rest = said[pos:]
        cut = rest.find("<imsagent_")  # a command never closed: rejected, never spoken
        spoken += rest if cut < 0 else rest[:cut]
    for call in case["tool_calls"]:
        function = {"end_call": "hangup", "transfer_call": "transfer"}.get(call["name"])
        if function is not None and not hung_up:
            args = json.loads(call["arguments"] or "{}")
            spoken += args.get("endword" if function == "hangup" else "msg", "")
            functions.append(function)
            hung_up = function == "hangup"
    return spoken, functions


def cuts_for(data: bytes, kind: str, seed: int) -> list[int]:
    if kind == "whole":
        return []
    if kind == "bytes":
        return list(range(1, len(data)))
    rnd = random.Random(seed)
    return rnd.sample(range(1, len(data)), min(len(data) - 1, 12))


def masked(out: bytes) -> bytes:
    return GENERATED.sub(b'"call_new"', out)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_passthrough_sends_every_byte_as_it_came(case: dict[str, Any]) -> None:
    data = stream(case)
    out, _, _ = inspect(data, "passthrough", [])
    assert out == data


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("split", ["whole", "bytes", "random"])
def test_strip_speaks_exactly_the_words_and_acts_once_per_command(case: dict[str, Any], split: str) -> None:
    data = stream(case)
    out, cmds, ins = inspect(data, "strip", cuts_for(data, split, len(data)))
    text, tools, _ = heard(out)
    speech, functions = expected_speech(case)
    assert text == speech
    assert "<imsagent" not in text and "<think" not in text.lower()
    assert [c.function for c in cmds if isinstance(c, Command)] == functions
    assert not [t for t in tools if (t.get("function") or {}).get("name") in ("end_call", "transfer_call")]
    assert ins.spoken_text == speech


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_the_record_keeps_the_calls_the_thinking_and_the_error(case: dict[str, Any]) -> None:
    _, _, ins = inspect(stream(case), "strip", [])
    got = [{**c, "id": "" if c["id"] and case_has_empty_id(case, c) else c["id"]} for c in ins.tool_calls]
    assert [(c["id"], c["name"], c["arguments"]) for c in got] == [(c["id"], c["name"], c["arguments"]) for c in case["tool_calls"]]
    thought = "".join(THINK.findall(case["content"]))
    for piece in (case["reasoning"], thought):
        assert piece in ins.reasoning_text
    assert (ins.upstream_error is not None) == (case.get("error") is not None)
    if ins.raw_text or case["content"]:
        assert ins.raw_text == case["content"]


def case_has_empty_id(case: dict[str, Any], call: dict[str, Any]) -> bool:
    return any(c["id"] == "" and c["name"] == call["name"] for c in case["tool_calls"])


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("mode", ["strip", "tool_calls", "text"])
def test_every_split_gives_the_same_bytes(case: dict[str, Any], mode: str) -> None:
    data = stream(case)
    answers = {split: masked(inspect(data, mode, cuts_for(data, split, 7))[0]) for split in ("whole", "bytes", "random")}
    assert answers["whole"] == answers["bytes"] == answers["random"]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_tool_calls_mode_renders_each_command_once_keeping_the_providers_fields(case: dict[str, Any]) -> None:
    data = stream(case)
    out, cmds, _ = inspect(data, "tool_calls", [])
    text, tools, finishes = heard(out)
    _, functions = expected_speech(case)
    written = [t for t in tools if (t.get("function") or {}).get("name") in ("end_call", "transfer_call")]
    assert [{"end_call": "hangup", "transfer_call": "transfer"}[t["function"]["name"]] for t in written] == functions
    assert all(t.get("id") for t in tools if (t.get("function") or {}).get("name"))  # a call never starts with an empty id
    indexes = [t["index"] for t in tools if t.get("id")]
    assert len(indexes) == len(set(indexes))  # one index per call
    extra = {k: v for c in raw_tool_entries(data) for k, v in c.items() if k not in ("index", "id", "type", "function")}
    for t in written:
        for key, value in extra.items():
            assert t.get(key) == value, f"{key} lost"
    if functions:
        assert finishes[-1] == "tool_calls"
    assert "<imsagent" not in text


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_text_mode_writes_one_canonical_tag_per_command(case: dict[str, Any]) -> None:
    out, _, _ = inspect(stream(case), "text", [])
    text, _, _ = heard(out)
    _, functions = expected_speech(case)
    assert [("hangup" if m.group(1) == "hangup" else "transfer") for m in TAG.finditer(text)] == functions
    assert "<think" not in text.lower()


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_chunks_without_commands_or_thinking_leave_byte_for_byte(case: dict[str, Any]) -> None:
    plain_chunks_kept(case)


def test_the_byte_for_byte_check_sees_most_recordings() -> None:
    kept = {case["file"]: plain_chunks_kept(case) for case in CASES}
    assert sum(kept.values()) >= 60 and sum(1 for n in kept.values() if n) >= 20, kept


def plain_chunks_kept(case: dict[str, Any]) -> int:
    """Every chunk of ``case`` that holds no command, tool call, thinking or held-back
    prefix is in strip mode's output as it came; how many were checked."""
    data = stream(case)
    out, _, _ = inspect(data, "strip", [])
    said, checked = "", 0
    for ev in events(data, []):
        if not ev.data or ev.data == "[DONE]":
            continue
        obj = json.loads(ev.data)
        choices = obj.get("choices") if isinstance(obj, dict) else None
        plain = all(
            isinstance(ch, dict) and ch.get("finish_reason") is None and isinstance((ch.get("delta") or {}).get("content", ""), str)
            and not any((ch.get("delta") or {}).get(k) for k in ("tool_calls", "reasoning_content", "reasoning", "reasoning_details"))
            and "<" not in ((ch.get("delta") or {}).get("content") or "")
            for ch in choices or []
        )
        lower = said.lower()
        holding = "<" in said[said.rfind(">") + 1:] or lower.count("<think>") > lower.count("</think>")
        if plain and not holding and not any(isinstance(ch, dict) and "text" in ch for ch in choices or []):
            assert ev.raw in out, ev.raw[:200]
            checked += 1
        for ch in choices or []:
            if isinstance(ch, dict) and ch.get("index", 0) == 0:
                content = (ch.get("delta") or {}).get("content")
                said += content if isinstance(content, str) else ""
    return checked


def raw_tool_entries(data: bytes) -> list[dict[str, Any]]:
    entries = []
    for ev in events(data, []):
        if ev.data and ev.data != "[DONE]":
            for ch in json.loads(ev.data).get("choices") or []:
                entries += (ch.get("delta") or {}).get("tool_calls") or []
    return entries


def test_every_fixture_names_its_source() -> None:
    sources = (FIXTURES / "SOURCES.md").read_text(encoding="utf-8")
    files = sorted(p.name for p in FIXTURES.glob("*.sse"))
    assert files == sorted(c["file"] for c in CASES)
    assert all(c["source"] and c["file"] in sources for c in CASES)


@pytest.mark.parametrize("case", [c for c in CASES if c["provider"].lower().startswith("together")], ids=case_id)
def test_togethers_text_field_says_what_the_content_says(case: dict[str, Any]) -> None:
    out, _, _ = inspect(stream(case), "strip", [])
    pairs = [
        (ch["text"], (ch.get("delta") or {}).get("content"))
        for ev in events(out, []) if ev.data and ev.data != "[DONE]"
        for ch in json.loads(ev.data).get("choices") or [] if "text" in ch
    ]
    assert pairs and all(text == content for text, content in pairs)
    assert "<imsagent" not in "".join(text for text, _ in pairs)
