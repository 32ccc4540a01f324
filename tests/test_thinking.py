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


def run_opened(pieces: list[str], opened: bool) -> tuple[list[str | Thinking], int]:
    sp = ThinkSplitter(opened=opened)
    out: list[str | Thinking] = []
    for p in pieces:
        out += sp.feed(p)
    return out + sp.close(), sp.unopened


R1 = "Okay, the caller wants to end the call.\nI'll say goodbye.\n</think>\n\nGoodbye, and thanks for calling!"


def test_the_default_tags_are_the_four_shapes_models_write() -> None:
    for tag in ("think", "thinking", "reasoning", "thought", "THINKING"):
        got = run([f"Hi <{tag}>plan</{tag}>there"], tags=("think", "thinking", "reasoning", "thought"))
        assert (speech(got), thinking(got)) == ("Hi there", "plan")
    sp = ThinkSplitter()
    assert speech(sp.feed("a <thought>b</thought> c") + sp.close()) == "a  c"


def test_a_reply_opened_in_the_prompt_is_thinking_until_the_closing_tag() -> None:
    for pieces in ([R1], list(R1)):
        got, unopened = run_opened(pieces, opened=True)
        assert speech(got) == "\n\nGoodbye, and thanks for calling!"
        assert thinking(got) == "Okay, the caller wants to end the call.\nI'll say goodbye.\n"
        assert unopened == 0


def test_a_closing_tag_with_no_opening_is_counted_and_not_spoken() -> None:
    got, unopened = run_opened([R1], opened=False)
    assert speech(got) == R1.replace("</think>", "")  # what came before it was spoken: the upstream must be marked
    assert unopened == 1
    got, unopened = run_opened(["a</thi", "nk>b</think>c"], opened=False)
    assert (speech(got), unopened) == ("abc", 2)


def test_a_reasoning_field_first_means_the_content_is_speech() -> None:
    sp = ThinkSplitter(opened=True)
    sp.sent_apart()
    assert sp.feed("Hello!") == ["Hello!"] and not sp.thinking
    sp = ThinkSplitter(opened=True)
    sp.feed("thinking")
    sp.sent_apart()  # too late: the content already began inside thinking
    assert sp.thinking


def test_opens_thinking_matches_the_model_sent_upstream() -> None:
    from proxy.core.thinking import opens_thinking

    assert opens_thinking("DeepSeek-R1-Distill-Qwen-32B", ["deepseek-r1*"])
    assert opens_thinking("qwen3-30b-a3b-thinking-2507", ["qwen3-*-thinking*"])
    assert not opens_thinking("deepseek-v3", ["deepseek-r1*"])
    assert not opens_thinking("anything", [])


@given(TEXT, st.lists(st.integers(min_value=0, max_value=200), max_size=8), st.booleans())
def test_opened_or_not_any_split_gives_the_same_answer(text: str, cuts: list[int], opened: bool) -> None:
    whole = run_opened([text], opened)
    assert run_opened(split_at(text, cuts), opened)[1] == whole[1] == run_opened(list(text), opened)[1]
    join = lambda items: ("".join(i for i in items if isinstance(i, str)), thinking(items))  # noqa: E731
    assert join(run_opened(split_at(text, cuts), opened)[0]) == join(whole[0]) == join(run_opened(list(text), opened)[0])
    assert "".join(i.raw if isinstance(i, Thinking) else i for i in whole[0]) == text
