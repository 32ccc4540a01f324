"""``<think>…</think>`` in content (proxy.core.thinking): told apart from speech
whole, one character at a time and at any split; nothing lost or invented; only a
possible tag is held."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proxy.core.thinking import ThinkSplitter, Thinking


def run(pieces: list[str], tags: tuple[str, ...] = ("think",)) -> list[str | Thinking]:
    """Every piece through one splitter, then close; neighbouring pieces of one kind joined."""
    sp = ThinkSplitter(tags)
    out: list[str | Thinking] = []
    for p in pieces:
        out += sp.feed(p)
    out += sp.close()
    joined: list[str | Thinking] = []
    for item in out:
        if joined and type(joined[-1]) is type(item):
            last = joined[-1]
            joined[-1] = Thinking(last.raw + item.raw, last.text + item.text) if isinstance(item, Thinking) else last + item  # type: ignore[operator, union-attr]
        elif item != "":
            joined.append(item)
    return joined


def split_at(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)])]


def speech(items: list[str | Thinking]) -> str:
    return "".join(i for i in items if isinstance(i, str))


def thinking(items: list[str | Thinking]) -> str:
    return "".join(i.text for i in items if isinstance(i, Thinking))


QWEN = '<think>\nThe caller said goodbye; I could end with <imsagent_hangup endword="bye"/>.\n</think>\n\n好的，再见。'


def test_a_qwen_reply_whole_and_by_char() -> None:
    for pieces in ([QWEN], list(QWEN)):
        got = run(pieces)
        assert speech(got) == "\n\n好的，再见。"
        assert thinking(got) == '\nThe caller said goodbye; I could end with <imsagent_hangup endword="bye"/>.\n'
        assert "".join(i.raw if isinstance(i, Thinking) else i for i in got) == QWEN


def test_plain_speech_is_the_same_object_and_nothing_is_held() -> None:
    sp = ThinkSplitter()
    piece = "Hello there, how can I help?"
    assert sp.feed(piece)[0] is piece
    assert sp.feed("a < b") == ["a < b"]  # a `<` that cannot start the tag goes at once


def test_only_a_possible_tag_is_held() -> None:
    sp = ThinkSplitter()
    assert sp.feed("Hi <thi") == ["Hi "]
    assert sp.feed("s is fine") == ["<this is fine"]
    assert sp.feed("<think>x</thi") == [Thinking("<think>x", "x")]
    assert sp.feed("nk>done") == [Thinking("</think>", ""), "done"]


def test_tag_names_are_settable_and_case_does_not_matter() -> None:
    got = run(["<Reasoning>hmm</REASONING>ok"], tags=("reasoning",))
    assert (speech(got), thinking(got)) == ("ok", "hmm")
    assert speech(run(["<think>hmm</think>ok"], tags=())) == "<think>hmm</think>ok"


def test_an_unclosed_block_is_thinking_to_the_end() -> None:
    got = run(["Sure. <think>I wonder", " whether </th"])
    assert (speech(got), thinking(got)) == ("Sure. ", "I wonder whether </th")


TEXT = st.text(alphabet="ab <>/thinkTHINK你", max_size=60)


@given(TEXT, st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_any_split_gives_the_same_answer(text: str, cuts: list[int]) -> None:
    assert run(split_at(text, cuts)) == run([text]) == run(list(text))


@given(TEXT)
def test_nothing_is_lost_or_invented(text: str) -> None:
    got = run(list(text))
    assert "".join(i.raw if isinstance(i, Thinking) else i for i in got) == text
