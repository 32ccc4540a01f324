"""The text command parser: syntax from the IMS doc, leniency, hold-back rules, and
output independent of how the text is split."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.core.parser import (
    CommandParser,
    ParsedTag,
    UnterminatedTag,
    parse_attributes,
)

TAGS = ("imsagent_hangup", "imsagent_transfer_call")


def run(pieces: list[str], max_chars: int = 1024) -> list[Any]:
    """Feed ``pieces``, close, and merge adjacent text (the normalized answer)."""
    p = CommandParser(TAGS, max_chars)
    events: list[Any] = []
    for piece in pieces:
        events += p.feed(piece)
    events += p.close()
    merged: list[Any] = []
    for e in events:
        if isinstance(e, str) and merged and isinstance(merged[-1], str):
            merged[-1] += e
        elif not (isinstance(e, str) and not e):
            merged.append(e)
    return merged


def whole(text: str, max_chars: int = 1024) -> list[Any]:
    return run([text], max_chars)


def by_char(text: str, max_chars: int = 1024) -> list[Any]:
    return run(list(text), max_chars)


IMS_TRANSFER = (
    '<imsagent_transfer_call caller="111111", callee="123", err_msg="Sorry, the line is busy.", '
    'msg="Transferring your call now..."/>'
)
IMS_TRANSFER_BARE = (
    '<imsagent_transfer_call caller=111111, callee=123456, err_msg="Sorry, the line is busy.", '
    'msg="Transferring your call now..."/>'
)


def test_ims_doc_hangup_example() -> None:
    text = 'Sure. <imsagent_hangup endword="I\'ll hang up now, goodbye!"/>'
    assert whole(text) == [
        "Sure. ",
        ParsedTag("imsagent_hangup", {"endword": "I'll hang up now, goodbye!"}, text[6:]),
    ]


@pytest.mark.parametrize("raw", [IMS_TRANSFER, IMS_TRANSFER_BARE])
def test_ims_doc_transfer_examples(raw: str) -> None:
    [tag] = whole(raw)
    assert tag.tag == "imsagent_transfer_call"
    assert tag.attrs == {
        "caller": "111111",
        "callee": raw.split("callee=")[1].split(",")[0].strip('"'),
        "err_msg": "Sorry, the line is busy.",
        "msg": "Transferring your call now...",
    }
    assert tag.raw == raw


@pytest.mark.parametrize(
    "raw, attrs",
    [
        ("<imsagent_hangup endword='再见！'/>", {"endword": "再见！"}),
        ("<imsagent_hangup endword=“感谢来电，再见”/>", {"endword": "感谢来电，再见"}),
        ('<imsagent_hangup endword="bye"></imsagent_hangup>', {"endword": "bye"}),
        ('<imsagent_hangup endword="bye">', {"endword": "bye"}),
        ('<IMSAGENT_HANGUP EndWord="bye" />', {"endword": "bye"}),
        ('<imsagent_hangup endword="a &amp; b &lt;3 &#x4F60;&#22909; &quot;q&quot;"/>', {"endword": 'a & b <3 你好 "q"'}),
        ('<imsagent_hangup endword="x > y" outcome=lead_collected/>', {"endword": "x > y", "outcome": "lead_collected"}),
        ("<imsagent_hangup/>", {}),
        ("<imsagent_hangup>", {}),
        ('<imsagent_hangup\n  endword = "bye"\n/>', {"endword": "bye"}),
        ('<imsagent_transfer_call callee="123",msg="转接中"/>', {"callee": "123", "msg": "转接中"}),
    ],
)
def test_lenient_syntax(raw: str, attrs: dict[str, str]) -> None:
    for answer in (whole(raw), by_char(raw)):
        assert len(answer) == 1, answer
        assert isinstance(answer[0], ParsedTag)
        assert answer[0].attrs == attrs
        assert answer[0].raw in raw


def test_closing_tag_is_consumed_and_text_after_it_kept() -> None:
    text = '<imsagent_hangup endword="bye"></imsagent_hangup>after'
    assert whole(text)[1:] == ["after"]
    assert by_char(text)[1:] == ["after"]


def test_not_commands_are_text_unchanged() -> None:
    for text in ["a < b", "<b>bold</b>", "<imsagent>", "<imsagent_hangupx/>", "x<", "1<2<3", "<<imsagent"]:
        assert whole(text) == [text], text
        assert by_char(text) == [text], text


def test_command_right_after_a_false_start() -> None:
    text = '<<imsagent_hangup endword="a"/>'
    assert whole(text)[0] == "<"
    assert isinstance(whole(text)[1], ParsedTag)


def test_only_a_possible_prefix_is_held() -> None:
    p = CommandParser(TAGS)
    assert p.feed("你好<") == ["你好"]
    assert p.held == "<"
    assert p.feed("ims") == []
    assert p.held == "<ims"
    assert p.feed("x, ok") == ["<", "imsx, ok"]
    assert p.held == ""
    assert p.feed("plain text") == ["plain text"]


def test_prefix_at_end_of_text_is_released_as_text() -> None:
    assert whole("see you <imsagent_han") == ["see you <imsagent_han"]


def test_unterminated_command_is_never_text() -> None:
    assert whole('bye <imsagent_hangup endword="bye') == [
        "bye ",
        UnterminatedTag("imsagent_hangup", '<imsagent_hangup endword="bye'),
    ]
    assert whole("bye <imsagent_hangup") == ["bye ", UnterminatedTag("imsagent_hangup", "<imsagent_hangup")]


def test_partial_closing_tag_at_end_is_dropped() -> None:
    assert whole('<imsagent_hangup endword="a"></imsagent_h')[1:] == []


def test_max_command_chars_releases_as_text() -> None:
    text = '<imsagent_hangup endword="' + "x" * 100
    assert whole(text, max_chars=50) == [text]
    assert by_char(text, max_chars=50) == [text]
    p = CommandParser(TAGS, 50)
    p.feed(text)
    assert len(p.held) <= 50


def test_parse_attributes_keeps_unknown_and_ignores_bare_words() -> None:
    assert parse_attributes(' a="1" B=2, c=\'3\' lonely d=') == {"a": "1", "b": "2", "c": "3", "d": ""}


# -- split independence (property) ---------------------------------------------

FRAGMENTS = [
    "你好，", "Hello ", "<", ">", "/", "/>", "=", '"', "'", ",", " ", "再见！", "&amp;", "<b>",
    "<imsagent_hangup", " endword=", '"Goodbye!"', "<imsagent_transfer_call", " callee=123", ' msg="转接"',
    "</imsagent_hangup>", "<imsagent_", "hangup", "ims", "x",
]


@given(
    st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join),
    st.lists(st.integers(min_value=0, max_value=400), max_size=20),
    st.sampled_from([20, 64, 1024]),
)
@settings(max_examples=400, deadline=None)
def test_output_is_independent_of_splitting(text: str, cuts: list[int], max_chars: int) -> None:
    points = sorted({c for c in cuts if c <= len(text)})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)])]
    expected = whole(text, max_chars)
    assert run(pieces, max_chars) == expected
    assert by_char(text, max_chars) == expected


@given(st.text(alphabet="ab<>/=\" imsagent_hangupcllerTRA你好", max_size=80))
@settings(max_examples=300, deadline=None)
def test_text_is_never_lost_or_invented(text: str) -> None:
    """Everything that comes out as text or command raw adds back up to the input,
    apart from consumed closing tags."""
    out = by_char(text)
    rebuilt = "".join(e if isinstance(e, str) else e.raw for e in out)
    if "</" not in text:
        assert rebuilt == text
    assert out == whole(text)
