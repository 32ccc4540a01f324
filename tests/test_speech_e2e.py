"""Speech safety through the server (issue 29): a tool call the model wrote as text
(Hermes/Qwen form, split across chunks) hangs up a Pipecat-profile call once with
source ``text_tool_call``, nothing of it spoken; a goodbye phrase ends a call; a model
whose template opens ``<think>`` in the prompt (``thinking_open_models``) speaks only
what follows ``</think>``, and one not so marked is counted and named in the log."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from proxy.demo.scripted_upstream import ScriptedReply

from .test_pool import pool, say_profile  # noqa: F401  (the fixture)

HERMES_END_CALL = ['Thanks for calling. <tool', '_call>{"name": "end_call", "argu', 'ments": {}}</tool_call>']


async def test_a_tool_call_written_as_text_hangs_up_once_and_is_never_spoken(pool: Any) -> None:  # noqa: F811
    p = await pool({"a": [ScriptedReply(content=HERMES_END_CALL)]})
    heard = await say_profile(p, "pipecat", call_id="tt-1")
    assert heard == "Thanks for calling. "
    record = await p.record("tt-1")
    assert [(e["type"], e["source"]) for e in record["events"]] == [("hangup", "text_tool_call"), ("call.ended", "text_tool_call")]
    assert "tool_call" not in record["turns"][0]["spoken_text"]


async def test_a_goodbye_phrase_ends_the_call(pool: Any) -> None:  # noqa: F811
    p = await pool({"a": [ScriptedReply(content=["That is all. ", "Have a nice day!"])]},
                   profiles={"pipecat": {"end_call_phrases": ["have a nice day"]}})
    assert await say_profile(p, "pipecat", call_id="ph-1") == "That is all. Have a nice day!"
    record = await p.record("ph-1")
    assert [(e["type"], e["source"]) for e in record["events"]] == [("hangup", "phrase"), ("call.ended", "phrase")]


def _unopened(upstream: str, model: str) -> float:
    return REGISTRY.get_sample_value("callgate_thinking_unopened_total", {"upstream": upstream, "model": model}) or 0.0


@pytest.mark.parametrize("marked", [True, False])
async def test_thinking_opened_in_the_prompt(pool: Any, caplog: pytest.LogCaptureFixture, marked: bool) -> None:  # noqa: F811
    reply = ScriptedReply(content=["The caller wants ", "the hours.</think>", "We open at nine."])
    p = await pool({"a": [reply]}, entry={"a": {"models": {"*": "deepseek-r1-distill-qwen-7b"},
                                                 "thinking_open_models": ["deepseek-r1*"] if marked else []}},
                   profiles={"pipecat": {"thinking": "remove"}})
    before = _unopened("a", "deepseek-r1-distill-qwen-7b")
    heard = await say_profile(p, "pipecat", call_id=f"th-{marked}")
    if marked:
        assert heard == "We open at nine."
        assert (await p.record(f"th-{marked}"))["turns"][0]["reasoning_text"] == "The caller wants the hours."
        assert _unopened("a", "deepseek-r1-distill-qwen-7b") == before
    else:  # not marked: spoken (as before 0.7), the stray closing tag dropped, counted, and the log says what to set
        assert heard == "The caller wants the hours.We open at nine."
        assert _unopened("a", "deepseek-r1-distill-qwen-7b") == before + 1
        assert any("thinking_open_models" in r.getMessage() for r in caplog.records)
