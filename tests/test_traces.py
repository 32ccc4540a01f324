"""Traces end to end (issue 30): callgate serving real turns against a real OTLP/HTTP
receiver on loopback (tests/otlp.py decodes ExportTraceServiceRequest with
opentelemetry-proto), the official openai client and Pipecat as runtimes, scripted
upstreams. A turn's span continues the client's ``traceparent``; attempt spans carry
the GenAI attributes with the upstream's token counts and forward their context
upstream; a hedge shows a lost and a won attempt; a stall its continuation; a hangup
is a span event; the end function's steps are spans; content and numbers leave only
as configured; each turn records its dead air."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import openai
import pytest

from proxy.demo.scripted_upstream import ScriptedReply, Stall

from .otlp import OtlpReceiver, Span
from .test_pool import HANGUP, pool  # noqa: F401  (the fixture)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"
USAGE = {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49}


@pytest.fixture(autouse=True)
def fast_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch processor exports every 50 ms (OTEL_BSP_SCHEDULE_DELAY), not 5 s."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")


def kinds(spans: list[Span], kind: str) -> list[Span]:
    return [s for s in spans if s.kind == kind]


async def say(p: Any, call_id: str = "c1", text: str = "hi", traceparent: str | None = TRACEPARENT) -> str:
    headers = {"X-Call-Id": call_id, "X-Caller-Number": "+15550001234"}
    if traceparent:
        headers["traceparent"] = traceparent
    async with p.client() as client:
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": text}], stream=True, extra_headers=headers,
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


async def test_a_turn_continues_the_clients_trace_and_its_attempt_carries_the_genai_attributes(pool: Any, otlp: OtlpReceiver) -> None:  # noqa: F811
    p = await pool({"a": [ScriptedReply(content=["Hello", " there."], usage=USAGE, id="chatcmpl-T", model="gpt-4o-2024-08-06")]},
                   telemetry={"otlp_endpoint": otlp.url})
    assert await say(p) == "Hello there."
    spans = await otlp.wait_for(2)
    [turn] = kinds(spans, "SERVER")
    [attempt] = kinds(spans, "CLIENT")
    assert (turn.trace_id, turn.parent_span_id, turn.name) == (TRACE, PARENT, "chat gpt-4o")
    assert turn.attributes["session.id"] == "c1" and turn.attributes["callgate.call.generation"] == 1
    assert turn.attributes["callgate.turn.status"] == "ok" and turn.attributes["callgate.turn.ttft_ms"] > 0
    assert (attempt.trace_id, attempt.parent_span_id) == (TRACE, turn.span_id)
    a = attempt.attributes
    assert (a["gen_ai.operation.name"], a["gen_ai.request.model"], a["gen_ai.response.model"], a["gen_ai.response.id"]) == (
        "chat", "gpt-4o", "gpt-4o-2024-08-06", "chatcmpl-T",
    )
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"], a["gen_ai.response.finish_reasons"]) == (42, 7, ["stop"])
    assert (a["callgate.attempt.outcome"], a["server.address"], a["gen_ai.provider.name"]) == ("won", "127.0.0.1", "openai")
    # the attempt forwarded its own context upstream: a provider's trace joins it
    assert p.ups["a"].requests[0].headers["traceparent"] == f"00-{TRACE}-{attempt.span_id}-01"
    # no content and no number by default
    assert "gen_ai.input.messages" not in turn.attributes and not any("5550001234" in s for span in spans for s in span.strings())


async def test_a_hedge_shows_a_lost_and_a_won_attempt(pool: Any, otlp: OtlpReceiver) -> None:  # noqa: F811
    p = await pool({"a": [ScriptedReply(content=["Slow A."], ttft_s=5)], "b": [ScriptedReply(content=["Fast ", "B."])]},
                   routing={"first_token_ms": 100}, telemetry={"otlp_endpoint": otlp.url})
    assert await say(p) == "Fast B."
    spans = await otlp.wait_for(3)
    [turn] = kinds(spans, "SERVER")
    attempts = sorted(kinds(spans, "CLIENT"), key=lambda s: s.attributes["callgate.attempt.number"])
    assert [(s.attributes["callgate.upstream"], s.attributes["callgate.attempt.reason"], s.attributes["callgate.attempt.outcome"])
            for s in attempts] == [("a", "first", "lost"), ("b", "hedge", "won")]
    assert "hedge" in turn.event_names


async def test_a_stall_shows_its_continuation(pool: Any, otlp: OtlpReceiver) -> None:  # noqa: F811
    p = await pool({"a": [ScriptedReply(content=["One, ", "two, "], stall=Stall(after=2))], "b": [ScriptedReply(content=["three."])]},
                   routing={"stall_ms": 150}, telemetry={"otlp_endpoint": otlp.url})
    assert await say(p) == "One, two, three."
    spans = await otlp.wait_for(3)
    [turn] = kinds(spans, "SERVER")
    outcomes = {s.attributes["callgate.upstream"]: (s.attributes["callgate.attempt.reason"], s.attributes["callgate.attempt.outcome"])
                for s in kinds(spans, "CLIENT")}
    assert outcomes == {"a": ("first", "stalled"), "b": ("continuation", "continued")}
    assert {"stall", "continuation"} <= set(turn.event_names)
    assert turn.attributes["callgate.turn.speech_gap_max_ms"] >= 150  # the stall is dead air
    p.ups["a"].release()


async def test_a_hangup_is_a_span_event_and_the_steps_are_spans(pool: Any, otlp: OtlpReceiver, tmp_path: Any) -> None:  # noqa: F811
    from .conftest import Receiver, serve_app

    recv = Receiver()
    async with serve_app(recv.app()) as hook:
        p = await pool({"a": [ScriptedReply(content=["Thanks. ", HANGUP])]}, telemetry={"otlp_endpoint": otlp.url},
                       end_function={"poll_s": 0.05, "after_hangup_s": 0, "sweep_s": 0.2,
                                     "steps": [{"name": "crm", "kind": "webhook", "url": f"{hook}/crm"}]})
        assert await say(p, call_id="c-bye") == "Thanks. Bye."
        await otlp.wait(lambda r: any(s.name == "end_function crm" for s in r.spans))
    [turn] = kinds(otlp.spans, "SERVER")
    [hangup] = [e for e in turn.events if e.name == "hangup"]
    assert (hangup.attributes["callgate.command.source"], hangup.attributes["callgate.command.function"]) == ("text_command", "hangup")
    assert "callgate.command.args" not in hangup.attributes  # the endword is content
    [step] = [s for s in otlp.spans if s.name == "end_function crm"]
    assert (step.attributes["session.id"], step.attributes["callgate.step.outcome"]) == ("c-bye", "done")


async def test_content_is_exported_only_with_capture_content(pool: Any, otlp: OtlpReceiver) -> None:  # noqa: F811
    p = await pool({"a": [ScriptedReply(content=["Call me at ", "+15550001234."])]},
                   telemetry={"otlp_endpoint": otlp.url, "capture_content": True})
    await say(p, text="My number is +15550001234")
    [turn] = kinds(await otlp.wait_for(2), "SERVER")
    assert "My number is" in turn.attributes["gen_ai.input.messages"] and "Call me at" in turn.attributes["gen_ai.output.messages"]
    assert not any("5550001234" in s for s in turn.strings())  # numbers never: masked as on the operator page


async def test_pipecat_as_the_runtime_gets_a_span_per_turn(stack: Any, otlp: OtlpReceiver) -> None:
    pytest.importorskip("pipecat")
    from .test_frameworks import GOODBYE, HANGUP_IN_ONE_CHUNK, WINDOW, run_pipecat

    s = await stack([HANGUP_IN_ONE_CHUNK, GOODBYE], strict=True, end_function=WINDOW, telemetry={"otlp_endpoint": otlp.url})
    texts, _ = await run_pipecat(f"{s.url}/pipecat/v1", "pc-trace-1")
    assert "".join(texts) == "Thanks for calling. Goodbye!"
    await otlp.wait(lambda r: len(kinds(r.spans, "SERVER")) == 2)
    turns = kinds(otlp.spans, "SERVER")
    assert {t.attributes["session.id"] for t in turns} == {"pc-trace-1"}
    assert {t.attributes["callgate.profile"] for t in turns} == {"pipecat"}
    assert sorted(t.event_names.count("hangup") for t in turns) == [0, 1]


async def test_dead_air_is_recorded_per_turn(pool: Any) -> None:  # noqa: F811
    p = await pool({"a": [ScriptedReply(content=["One. ", "Two. ", "Three."], interval_s=0.1)]})
    await say(p, traceparent=None)
    turn = (await p.record())["turns"][0]
    assert 0 < turn["speech_gap_max_ms"] < 5000  # recorded end to end; its arithmetic is tests/test_gaps.py's


def _shape(tree: str) -> str:
    """A printed tree without what changes from run to run: durations, times, event ids, a new trace's id."""
    tree = re.sub(r"\d+\.\d+", "#", tree)
    tree = re.sub(r"evt_[0-9a-f]+", "evt_#", tree)
    return re.sub(r"trace (?!" + TRACE + r")[0-9a-f]{32}", "trace #", tree)


async def test_the_trace_in_the_operations_doc_is_what_a_served_call_prints(otlp: OtlpReceiver, tmp_path: Any) -> None:
    from .example_trace import example_trace

    printed = await example_trace(otlp, str(tmp_path / "cg.db"))
    doc = (Path(__file__).parents[1] / "docs" / "operations.md").read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```text\n(.*?)\n```", doc, re.S) if b.startswith(f"trace {TRACE}")]
    assert _shape(printed) == _shape(block)
    assert "callgate.attempt.outcome=lost" in printed and "event hangup" in printed and "end_function crm" in printed
