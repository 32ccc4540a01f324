"""Traces (proxy/telemetry/): the facade the reply machine calls, exported through the
real OpenTelemetry SDK and OTLP/HTTP exporter to a real receiver on 127.0.0.1
(tests/otlp.py, decoding with opentelemetry-proto); off, nothing is imported."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from proxy.config import TelemetryConfig
from proxy.telemetry import NOOP, Telemetry, TurnEvent, build, traces_endpoint

from .otlp import OtlpReceiver, Span

PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"
NUMBER = "+4915112345567"


def tracing(receiver: OtlpReceiver, **cfg: Any) -> Telemetry:
    """Traces to ``receiver``, batches sent every 20 ms (nothing from the environment)."""
    t = build(TelemetryConfig(otlp_endpoint=receiver.url, **cfg), ["callerNumber"], env={}, schedule_delay_ms=20)
    assert t.enabled
    return t


def by_kind(spans: list[Span], kind: str) -> list[Span]:
    return [s for s in spans if s.kind == kind]


# -- off ---------------------------------------------------------------------------------------


def test_off_by_default_every_span_is_the_shared_no_op() -> None:
    assert build(TelemetryConfig(), env={}) is NOOP
    turn = NOOP.turn("gpt-4o", "c1", 1, "openai", TRACEPARENT)
    attempt = turn.attempt("default", "https://api.openai.com/v1", "gpt-4o")
    assert turn is NOOP.turn(None, None, 1, "ims") and attempt is turn.attempt("b", "http://x", None)
    assert attempt.trace_headers() == {} and turn.trace_headers() == {}
    attempt.end("won", input_tokens=1)
    turn.end("ok", ttft_ms=1.0)
    NOOP.step("c1", 1, "c1", "crm", "webhook", 1, "c1:crm").end("done")
    assert NOOP.flush() is True


def test_the_endpoint_comes_from_the_config_or_the_standard_variables() -> None:
    cfg = TelemetryConfig()
    assert traces_endpoint(cfg, {}) is None
    assert traces_endpoint(cfg, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}) == "http://c:4318/v1/traces"
    assert traces_endpoint(cfg, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom"}) == "http://c:4318/custom"
    configured = TelemetryConfig(otlp_endpoint="http://collector:4318")
    assert traces_endpoint(configured, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318"}) == "http://collector:4318/v1/traces"
    assert traces_endpoint(configured, {"OTEL_SDK_DISABLED": "true"}) is None
    assert traces_endpoint(configured, {"OTEL_TRACES_EXPORTER": "none"}) is None


@pytest.mark.parametrize("on", [False, True], ids=["off", "on"])
def test_serving_a_turn_with_traces_off_imports_nothing_of_opentelemetry(tmp_path: Any, on: bool) -> None:
    """In a fresh interpreter: callgate serves a chat completion, ends the call and runs
    an end-function step with the default config; ``opentelemetry`` is never imported
    (and it is, with an endpoint in the environment: the check can fail)."""
    script = textwrap.dedent(f"""
        import asyncio, sys
        import aiohttp
        from proxy.config import parse_config
        from proxy.demo.scripted_upstream import ScriptedReply, ScriptedUpstream
        from proxy.server.app import running
        from tests.conftest import serve_app

        async def main():
            upstream = ScriptedUpstream([ScriptedReply(content=["Hello ", "there."])])
            async with serve_app(upstream.app()) as up:
                cfg = parse_config({{"upstream": {{"base_url": up + "/v1"}}, "storage": {{"path": "{tmp_path}/cg.db"}},
                                    "end_function": {{"poll_s": 0.05, "steps": [{{"name": "tag", "kind": "outcome"}}]}}}})
                async with running(cfg, host="127.0.0.1", port=0) as (app, url):
                    async with aiohttp.ClientSession() as s:
                        body = {{"model": "m", "stream": True, "messages": [{{"role": "user", "content": "hi"}}]}}
                        async with s.post(url + "/v1/chat/completions", json=body, headers={{"X-Call-Id": "c1"}}) as r:
                            assert r.status == 200, r.status
                            await r.read()
                        async with s.post(url + "/v1/calls/c1/end", json={{"reason": "caller_hangup"}}) as r:
                            assert r.status == 200, r.status
                    from proxy.server.services import SERVICES
                    jobs = await app[SERVICES].pipeline.wait_call("c1")
                    assert [j.status for j in jobs] == ["done"], jobs
            print(sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"))

        asyncio.run(main())
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if on:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens: spans are dropped
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr[-3000:]
    imported = out.stdout.strip().splitlines()[-1]
    assert (imported != "[]") if on else (imported == "[]"), imported


def test_an_endpoint_without_the_extra_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Configured: the server refuses to start, naming the extra; from the environment
    alone (set for other services, perhaps): a warning, and traces stay off."""
    from proxy.errors import ConfigError

    monkeypatch.setitem(sys.modules, "proxy.telemetry.otel", None)  # as if opentelemetry were not installed
    with pytest.raises(ConfigError, match=r"telemetry.otlp_endpoint: traces need the telemetry extra \(pip install 'callgate\[telemetry\]'\)"):
        build(TelemetryConfig(otlp_endpoint="http://c:4318"), env={})
    assert build(TelemetryConfig(), env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) is NOOP


# -- on ----------------------------------------------------------------------------------------


async def test_a_turn_continues_the_runtimes_trace_and_its_attempts_carry_the_genai_attributes(otlp: OtlpReceiver) -> None:
    t = tracing(otlp)
    turn = t.turn("gpt-4o", "call-7", 2, "ims", TRACEPARENT, "vendor=abc", request_id="req_1")
    attempt = turn.attempt("primary", "https://user:sk-secret@api.openai.com:443/v1?api-key=sk-q", "gpt-4o-mini")
    headers = attempt.trace_headers()
    attempt.event("first_token")
    attempt.end("won", response_model="gpt-4o-mini-2024-07-18", response_id="chatcmpl-9", finish_reasons=["stop"],
                input_tokens=42, output_tokens=7, ttft_ms=180.5)
    turn.end("ok", ttft_ms=181.0, speech_gap_max_ms=240.0)
    spans = await otlp.wait_for(2)
    t.shutdown()

    [server] = by_kind(spans, "SERVER")
    [client] = by_kind(spans, "CLIENT")
    assert (server.trace_id, server.parent_span_id, server.name) == (PARENT_TRACE, PARENT_SPAN, "chat gpt-4o")
    assert server.attributes == {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "session.id": "call-7",
        "callgate.call.generation": 2, "callgate.profile": "ims", "callgate.request.id": "req_1",
        "callgate.turn.status": "ok", "callgate.turn.ttft_ms": 181.0, "callgate.turn.speech_gap_max_ms": 240.0,
    }
    assert (client.trace_id, client.parent_span_id, client.name) == (PARENT_TRACE, server.span_id, "chat gpt-4o-mini")
    assert client.attributes == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "server.address": "api.openai.com", "server.port": 443, "callgate.upstream": "primary",
        "callgate.attempt.number": 1, "callgate.attempt.reason": "first", "callgate.attempt.outcome": "won",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.response.id": "chatcmpl-9",
        "gen_ai.response.finish_reasons": ["stop"], "gen_ai.usage.input_tokens": 42, "gen_ai.usage.output_tokens": 7,
        "callgate.attempt.ttft_ms": 180.5,
    }
    assert client.event_names == ["first_token"]
    assert server.resource["service.name"] == "callgate"
    # the upstream request carries the attempt's context (W3C), and the runtime's tracestate
    assert headers == {"traceparent": f"00-{PARENT_TRACE}-{client.span_id}-01", "tracestate": "vendor=abc"}
    assert not any("sk-" in s for span in spans for s in span.strings())


async def test_without_a_traceparent_a_turn_starts_a_trace_and_a_bad_one_is_ignored(otlp: OtlpReceiver) -> None:
    t = tracing(otlp, service_name="callgate-eu", headers={"x-team": "voice"})
    t.turn("m", "c1", 1, "openai").end("ok")
    t.turn("m", "c2", 1, "openai", "00-not-a-traceparent-01").end("ok")
    spans = await otlp.wait_for(2)
    t.shutdown()
    assert [s.parent_span_id for s in spans] == ["", ""]
    assert len({s.trace_id for s in spans}) == 2 and PARENT_TRACE not in {s.trace_id for s in spans}
    assert {s.resource["service.name"] for s in spans} == {"callgate-eu"}
    assert (otlp.headers["x-team"], otlp.headers["Content-Type"]) == ("voice", "application/x-protobuf")


async def test_a_runtimes_unsampled_trace_is_not_exported(otlp: OtlpReceiver) -> None:
    t = tracing(otlp)
    turn = t.turn("m", "c1", 1, "openai", f"00-{PARENT_TRACE}-{PARENT_SPAN}-00")
    turn.attempt("a", "http://127.0.0.1:1/v1", "m").end("won")
    turn.end("ok")
    t.turn("m", "c2", 1, "openai").end("ok")  # sampled: arrives, and alone
    spans = await otlp.wait_for(1)
    await asyncio.to_thread(t.flush)
    t.shutdown()
    assert [s.attributes["session.id"] for s in otlp.spans] == ["c2"] and spans


async def test_a_hedge_shows_a_lost_and_a_won_attempt_and_the_events(otlp: OtlpReceiver) -> None:
    t = tracing(otlp)
    turn = t.turn("gpt-4o", "c1", 1, "livekit")
    slow = turn.attempt("a", "https://api.openai.com/v1", "gpt-4o")
    turn.event(TurnEvent.HEDGE, {"callgate.upstream": "b", "callgate.after_ms": 800})
    fast = turn.attempt("b", "https://api.groq.com/openai/v1", "llama-3.3-70b", number=2, reason="hedge")
    fast.end("won", finish_reasons=["stop"], input_tokens=40, output_tokens=12)
    slow.end("lost")
    turn.control_event("hangup", event_id="evt_1", function="hangup", source="text_command", args={"endword": "Goodbye!"})
    turn.control_event("command.rejected", function="transfer", source="tool_call", code="not_allowed", args={"callee": NUMBER})
    turn.event(TurnEvent.STALL, {"callgate.upstream": "b"})
    turn.event(TurnEvent.CONTINUATION, {"callgate.upstream": "a"})
    turn.end("ok")
    spans = await otlp.wait_for(3)
    t.shutdown()
    [server] = by_kind(spans, "SERVER")
    attempts = sorted(by_kind(spans, "CLIENT"), key=lambda s: s.attributes["callgate.attempt.number"])
    assert [(a.attributes["callgate.upstream"], a.attributes["callgate.attempt.reason"], a.attributes["callgate.attempt.outcome"],
             a.attributes["gen_ai.provider.name"]) for a in attempts] == [
        ("a", "first", "lost", "openai"), ("b", "hedge", "won", "groq")]
    assert {a.parent_span_id for a in attempts} == {server.span_id}
    assert server.event_names == ["hedge", "hangup", "command.rejected", "stall", "continuation"]
    hangup, rejected = server.events[1], server.events[2]
    assert hangup.attributes == {"callgate.command.function": "hangup", "callgate.command.source": "text_command", "callgate.event.id": "evt_1"}
    assert rejected.attributes == {"callgate.command.function": "transfer", "callgate.command.source": "tool_call", "callgate.command.reject_code": "not_allowed"}


async def test_content_and_numbers_leave_only_as_configured(otlp: OtlpReceiver) -> None:
    """By default no content at all; with ``capture_content`` the caller's words, the
    speech and the tool arguments, phone numbers (and ``log_mask.fields``) masked."""
    for capture in (False, True):
        t = tracing(otlp, capture_content=capture)
        turn = t.turn("m", f"c-{capture}", 1, "ims")
        turn.content(user_text=f"Call me back on {NUMBER}", speech="Sure, I will.",
                     tool_calls=[{"id": "t1", "name": "transfer_call", "arguments": {"callee": NUMBER}}])
        turn.control_event("transfer", function="transfer", args={"callee": NUMBER, "msg": "One moment"})
        turn.event(TurnEvent.STALL, {"note": f"callerNumber={NUMBER}"})
        turn.end("error", error=f"upstream said {NUMBER}")
        await otlp.wait_for(1, name="chat m") if not capture else await otlp.wait_for(2, name="chat m")
        t.shutdown()
    off, on = otlp.named("chat m")
    strings = off.strings() + on.strings()
    assert not any(NUMBER in s for s in strings)
    assert "gen_ai.input.messages" not in off.attributes and "gen_ai.output.messages" not in off.attributes
    assert "callgate.command.args" not in off.events[0].attributes
    assert off.status == "ERROR" and off.attributes["error.type"] == "upstream said +49151****567"
    assert off.events[1].attributes == {"note": "callerNumber=+49151****567"}

    assert json.loads(on.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Call me back on +49151****567"}]}]
    assert json.loads(on.attributes["gen_ai.output.messages"]) == [{"role": "assistant", "parts": [
        {"type": "text", "content": "Sure, I will."},
        {"type": "tool_call", "id": "t1", "name": "transfer_call", "arguments": {"callee": "+49151****567"}}]}]
    assert json.loads(on.events[0].attributes["callgate.command.args"]) == {"callee": "+49151****567", "msg": "One moment"}


async def test_a_collector_that_is_down_never_fails_a_span(otlp: OtlpReceiver) -> None:
    """Ending spans while the collector refuses every export neither raises nor waits
    for it (the exporter works in its own thread); nothing arrives, and once it
    answers again, the next spans do."""
    otlp.fail_with = 503
    t = tracing(otlp, max_queue_size=64, export_timeout_s=0.5)
    for i in range(200):  # more than the queue holds: the newest are dropped
        turn = t.turn("m", f"c{i}", 1, "openai")
        turn.attempt("a", "http://127.0.0.1:1/v1", "m").end("failed", error="unreachable")
        turn.end("upstream_error", error="unreachable")
    await otlp.wait(lambda r: r.requests >= 1)
    assert otlp.spans == []
    otlp.fail_with = None
    t.turn("m", "after", 1, "openai").end("ok")
    await otlp.wait(lambda r: any(s.attributes.get("session.id") == "after" for s in r.spans), timeout=20)
    await asyncio.to_thread(t.shutdown)
