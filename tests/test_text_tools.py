"""Tool calls written as text (proxy.core.text_tools): each form's documented example
(``tests/fixtures/text_tool_calls.json``, each naming its source) whole, one
character at a time and at random splits: the exact speech, the exact calls, nothing
of the form spoken. Look-alike speech is spoken unchanged; only a possible form is
held back; a form a profile does not watch is speech."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.core.text_tools import FORMS, TextCall, TextToolScanner

FIXTURES: list[dict[str, Any]] = json.loads((Path(__file__).parent / "fixtures" / "text_tool_calls.json").read_text("utf-8"))


def run(pieces: list[str], forms: tuple[str, ...] = FORMS, max_chars: int = 1024) -> tuple[str, list[tuple[str, Any]]]:
    """Speech joined, and the calls as ``(name, arguments parsed)``."""
    sc = TextToolScanner(forms, max_chars)
    out: list[str | TextCall] = []
    for p in pieces:
        out += sc.feed(p)
    out += sc.close()
    speech = "".join(i for i in out if isinstance(i, str))
    calls = [(i.name, json.loads(i.arguments)) for i in out if isinstance(i, TextCall)]
    return speech, calls


def joined(items: list[str | TextCall]) -> list[str | TextCall]:
    """Neighbouring speech pieces joined (how speech is cut into pieces is no promise)."""
    out: list[str | TextCall] = []
    for item in items:
        if isinstance(item, str) and out and isinstance(out[-1], str):
            out[-1] += item
        elif item != "":
            out.append(item)
    return out


def split_at(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)])]


def expected(case: dict[str, Any]) -> tuple[str, list[tuple[str, Any]]]:
    return case["speech"], [(name, args) for name, args in case["calls"]]


def test_every_form_has_a_documented_example() -> None:
    assert {c["form"] for c in FIXTURES} == set(FORMS)
    assert all(c["source"] for c in FIXTURES)


@pytest.mark.parametrize("case", FIXTURES, ids=[c["id"] for c in FIXTURES])
def test_documented_example_whole_and_by_char(case: dict[str, Any]) -> None:
    text = case["content"]
    assert run([text]) == expected(case)
    assert run(list(text)) == expected(case)
    assert run([text], forms=(case["form"],)) == expected(case)  # its own form alone finds it


@pytest.mark.parametrize("case", FIXTURES, ids=[c["id"] for c in FIXTURES])
@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_documented_example_at_random_splits(case: dict[str, Any], cuts: list[int]) -> None:
    assert run(split_at(case["content"], cuts)) == expected(case)


@pytest.mark.parametrize("case", FIXTURES, ids=[c["id"] for c in FIXTURES])
def test_a_form_not_watched_is_speech(case: dict[str, Any]) -> None:
    assert run([case["content"]], forms=()) == (case["content"], [])
    unrelated = ("kimi_k2",) if case["form"] != "kimi_k2" else ("hermes",)
    assert run([case["content"]], forms=unrelated) == (case["content"], [])


LOOK_ALIKES = [
    "a < b and 1<2, <b>bold</b>, x<y>z",
    "see [1] and [note](https://example.com), [a, b], [Sie haben recht]",
    "{curly} {\"query\": \"test\"} {'a': 1} {\"name\": \"John\"} {",
    "call functions later; functions.py is a file; malfunctions. Then functions:",
    "I will call get_weather later (maybe). 你好 <｜not a token｜> 😀 [TOOL] [TOOL_CALL]",
    "<tool> <tool_ <function <|python <think",
    "5 < 6 > 4 [x] {y} ( z ) functions. end",
]


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_look_alike_speech_is_spoken_unchanged(text: str) -> None:
    assert run([text]) == (text, [])
    assert run(list(text)) == (text, [])


def test_plain_speech_is_the_same_object_and_nothing_is_held() -> None:
    sc = TextToolScanner(FORMS)
    piece = "Hello there, how can I help?"
    assert sc.feed(piece)[0] is piece
    assert sc.feed("a < b, c") == ["a ", "<", " b, c"]


def test_only_a_possible_form_is_held() -> None:
    sc = TextToolScanner(FORMS)
    assert joined(sc.feed("Hi <tool_c")) == ["Hi "]
    assert joined(sc.feed("all>{\"name\": \"x\"")) == []  # inside the marker form: never spoken
    assert joined(sc.feed(", \"arguments\": {}}</tool_call> ok")) == [TextCall("hermes", "x", "{}", '<tool_call>{"name": "x", "arguments": {}}</tool_call>'), " ok"]
    assert joined(sc.feed("call functio")) == ["call "]
    assert joined(sc.feed("nal")) == ["functional"]
    assert joined(sc.feed(" [TOOL")) == [" "]
    assert joined(sc.feed("S]")) == ["[TOOLS]"]
    assert joined(sc.feed(' {"a"')) == [" "]
    assert joined(sc.feed(": 1} done")) == ['{"a": 1} done']


def test_an_ambiguous_candidate_is_held_at_most_max_chars() -> None:
    text = '{"name": "x", "parameters": {"q": "' + "y" * 200
    sc = TextToolScanner(FORMS, max_chars=64)
    out = sc.feed(text)
    assert "".join(o for o in out if isinstance(o, str)) == text  # given up: spoken
    assert run([text + '"}}'], max_chars=64)[1] == []


def test_an_unreadable_marker_form_is_dropped_not_spoken() -> None:
    assert run(["Okay.<tool_call>not json at all</tool_call> Bye."]) == ("Okay. Bye.", [])
    assert run(["[TOOL_CALLS]"]) == ("", [])
    assert run(["Hi [TOOL_CALLS] there, friend"]) == ("Hi  there, friend", [])  # the token alone is dropped
    assert run(["x <|python_tag|>y"]) == ("x y", [])
    assert run(["stray </tool_call> end"]) == ("stray  end", [])


def test_a_pythonic_list_keeps_its_good_calls() -> None:
    assert run(["[bad(x=b'z'), get_weather(city='Paris')]"]) == ("", [("get_weather", {"city": "Paris"})])


def test_functions_form_takes_keyword_and_empty_arguments() -> None:
    assert run(["functions.end_call()"]) == ("", [("end_call", {})])
    assert run(["functions.end_call(reason='done', code=2)"]) == ("", [("end_call", {"reason": "done", "code": 2})])
    assert run(["functions.end_call(1, 2)"]) == ("functions.end_call(1, 2)", [])


def test_a_known_tool_name_written_as_text_is_read() -> None:
    sc = TextToolScanner(FORMS)
    assert joined(sc.feed('saveAnswer({"a": 1})')) == ['saveAnswer({"a": 1})']  # unknown name: speech
    sc.add_name("saveAnswer")
    out = joined(sc.feed('ok saveAnswer({"a": 1}) saveAnswer(1) my') + sc.close())
    assert out == ["ok ", TextCall("functions", "saveAnswer", '{"a": 1}', 'saveAnswer({"a": 1})'), " saveAnswer(1) my"]
    # glued to a word: speech; after a tool call in the same delta (a word break): the call
    assert joined(sc.feed('naïvesaveAnswer({"a": 2}) xfunctions.f()') + sc.close()) == ['naïvesaveAnswer({"a": 2}) xfunctions.f()']
    sc.feed("naïve")
    sc.word_break()
    out = joined(sc.feed('saveAnswer({"a": 2})') + sc.close())
    assert out == [TextCall("functions", "saveAnswer", '{"a": 2}', 'saveAnswer({"a": 2})')]
    assert joined(sc.feed("再见functions.end_call()") + sc.close())[1:] == [TextCall("functions", "end_call", "{}", "functions.end_call()")]


def test_unknown_forms_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown"):
        TextToolScanner(["hermes", "xml"])


TOKENS = list("ab <>[]{}()\"':;.,fn_=\n你😀") + ["functions.", "<tool_call>", "</tool_call>", "[TOOL_CALLS]", '"name": ', '"arguments": ', "end_call"]
SPEECH = st.lists(st.sampled_from(TOKENS), max_size=30).map("".join)


@settings(max_examples=300, deadline=None)
@given(SPEECH, st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_any_split_gives_the_same_answer(text: str, cuts: list[int]) -> None:
    assert run(split_at(text, cuts)) == run([text]) == run(list(text))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab ()\"':;.,f_\n你😀")), max_size=60))
def test_text_without_brackets_is_spoken_exactly(text: str) -> None:
    assert run([text]) == (text, [])


def run_segments(segments: list[str], by_char: bool, names: tuple[str, ...] = ("end_call",)) -> tuple[str, list[tuple[str, Any]]]:
    """Segments with a word break (a tool call, thinking) between them."""
    sc = TextToolScanner(FORMS)
    for n in names:
        sc.add_name(n)
    out: list[str | TextCall] = []
    for i, seg in enumerate(segments):
        if i:
            sc.word_break()
        for p in (list(seg) if by_char else [seg]):
            out += sc.feed(p)
    out += sc.close()
    return "".join(o for o in out if isinstance(o, str)), [(o.name, json.loads(o.arguments)) for o in out if isinstance(o, TextCall)]


def test_a_word_break_lets_a_glued_call_start_a_word() -> None:
    assert run_segments(["Straße", "functions.f()"], False) == ("Straße", [("f", {})])
    assert run_segments(["Straße", "end_call({})"], True) == ("Straße", [("end_call", {})])
    assert run_segments(["Straßefunctions.f()"], False) == ("Straßefunctions.f()", [])
    assert run_segments(["of", "ten"], True) == ("often", [])


WORDISH = st.lists(st.sampled_from(["functions.", "f", "fu", "end_c", "all", "({})", "()", "x", "ß", "好", " ", "of", ":{}", "end_call"]), max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(WORDISH, min_size=1, max_size=4))
def test_word_breaks_give_the_same_answer_however_split(segments: list[str]) -> None:
    assert run_segments(segments, True) == run_segments(segments, False)


def test_an_empty_piece_is_plain_and_keeps_what_came_before() -> None:
    """``plain("")`` (an empty content delta) answers, and the word before it still
    decides whether a following ``functions.`` starts a call."""
    sc = TextToolScanner(FORMS)
    assert sc.plain("Thanks for the call") and sc.plain("")
    assert sc.feed("x") == ["x"]
