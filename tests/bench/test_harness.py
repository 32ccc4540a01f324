"""The benchmark harness at tiny sizes (a few seconds): that it runs and counts, never
how fast anything is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from . import chat_body
from .peers import Target
from .run import ROOT
from .upstream import _spec_in_messages
from .versus import print_tables


def test_the_spec_travels_in_the_last_message_of_a_real_sized_body() -> None:
    spec = {"chunks": 3, "interval_ms": 5, "ttft_ms": 1, "command": True}
    body = json.loads(chat_body(spec, real=True))
    assert len(json.dumps(body["messages"][0])) > 4000 and len(body["tools"]) == 6 and len(body["messages"]) == 42
    assert _spec_in_messages(body) == spec and "bench" not in body
    assert json.loads(chat_body(spec, real=False))["bench"] == spec


def test_a_peer_not_installed_is_skipped_with_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from . import peers

    monkeypatch.setattr(peers, "LITELLM", tmp_path / "none" / "bin" / "litellm")
    monkeypatch.setattr(peers, "PORTKEY", tmp_path / "none.js")
    assert "make bench-peers" in (Target("litellm", 1, tmp_path).missing() or "")
    assert "make bench-peers" in (Target("portkey", 1, tmp_path).missing() or "")
    assert Target("direct", 1, tmp_path).missing() is None


def test_the_writes_benchmark_runs_and_counts() -> None:
    done = subprocess.run([sys.executable, "-m", "tests.bench.writes", "--calls", "20", "--burst"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "80 turns, 20 calls" in done.stdout and "µs per turn" in done.stdout


def test_the_side_by_side_tables_print_added_time_and_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    def row(part: str, target: str, ttft99: float, us_chunk: float | None) -> dict[str, object]:
        return {"part": part, "level": 100, "target": target, "errors": 0, "requests": 200, "chunks": 8000, "ttft50": 1.0,
                "ttft99": ttft99, "chunk50": 0.5, "chunk99": 1.0, "cpu_s": 1.0, "us_request": 100.0, "us_chunk": us_chunk,
                "rss_mib": 50.0, "gen_cpu_s": 2.0, "up_cpu_s": 1.0, **({"call_minutes": 10.0} if part == "calls" else {})}

    rows = [row(p, t, v, c) for p in ("sync", "calls") for t, v, c in (("direct", 2.0, None), ("nginx", 3.0, 10.0), ("callgate 1 process", 9.0, 40.0))]
    print_tables(rows)
    out = capsys.readouterr().out
    assert "   +7.00" in out and "  4.0 " in out  # added first-token p99 over direct; CPU per chunk 4x nginx's
    assert "nginx                         100" in out and "callgate 1 process       below the lowest level" in out


def test_the_traces_receiver_counts_spans_across_a_restart_on_one_port(tmp_path: Path) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind

    from .traces import Receiver

    receiver = Receiver(tmp_path, "on")
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces", timeout=5)))
    tracer = provider.get_tracer("harness")
    try:
        for turns in (2, 1):  # up, then stopped and started again on the same port
            receiver.start()
            for _ in range(turns):
                with tracer.start_as_current_span("chat bench", kind=SpanKind.SERVER):
                    tracer.start_span("chat bench", kind=SpanKind.CLIENT).end()
            receiver.stop()
    finally:
        receiver.stop()
        provider.shutdown()
    assert {k: len(v) for k, v in receiver.ids.items()} == {"SERVER": 3, "CLIENT": 3} and receiver.requests == 6


def test_the_traces_table_adds_over_traces_off_and_judges_the_down_window(capsys: pytest.CaptureFixture[str]) -> None:
    from .traces import Way, figures, print_table, verdict, window

    assert window([[10, 5], [20, 9], [30, 1], [40, 7]], 20, 30) == [1, 9]

    def way(name: str, extra_us: int, spans: int | None) -> Way:
        lat = [1000 + extra_us] * 100
        load = {"latency_us": lat, "ttft_us": lat, "chunk_timeline_us": [[t, v] for t, v in enumerate(lat)],
                "ttft_timeline_us": [], "requests": 10, "replies_complete": 10, "errors": 0, "chunks_seen": 100, "t0_us": 0}
        return Way(name, load, (0.0, 1.0), cpu_s=0.01, spans=spans, spans_expected=20)

    print_table([way("off", 0, None), way("on", 200, 20), way("down", 1500, 14)], 10)
    out = capsys.readouterr().out
    assert "   +1.50" in out and "14/20" in out and "    6 " in out and "  100.0" in out  # added p99, spans, lost, µs per chunk
    assert "0 replies lost; p99 over traces off: per chunk +1.50 ms (window +1.50)" in out and "does NOT hold" in out
    # two identical callgates 2 ms apart: +1.5 ms is below what this machine can tell
    ways = [way("off", 0, None), way("off2", 2000, None), way("down", 1500, 14)]
    assert "not measurable here: within the noise floor (off2 vs off: up to 2.00 ms)" in verdict(ways[2], {w.name: figures(w) for w in ways})
