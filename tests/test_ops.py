"""The operations CLI, the end-function sandbox, and log masking."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from proxy.cli import main
from proxy.cli.ops import parse_since
from proxy.logs import MaskingFilter, mask, mask_text
from proxy.storage import ops

from . import rows

RECORD = {
    "id": "rec-1",
    "started_at": "2026-11-20T10:00:00+00:00",
    "ended_at": "2026-11-20T10:03:00+00:00",
    "end_reason": "agent_hangup",
    "end_source": "text_command",
    "state": {"intent": "quote"},
    "metadata": {"callerNumber": "+8613800138000", "caller_number": "+8613800138000"},
    "transcript": [{"role": "user", "text": "I want a quote"}, {"role": "assistant", "text": "Sure. Bye."}],
    "turns": [],
    "events": [{"id": "e1", "seq": 1, "type": "hangup", "source": "text_command", "endword": "Bye.", "attrs": {"endword": "Bye."}}],
}


def write_config(tmp_path: Path, steps: str = "") -> Path:
    cfg = tmp_path / "callgate.yaml"
    cfg.write_text(f'storage: {{path: "{tmp_path / "cg.db"}"}}\nend_function:\n  steps:\n{steps or "    []"}\n')
    return cfg


def test_sandbox_prints_what_would_be_sent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    steps = f"""
    - {{name: outcome, kind: outcome}}
    - {{name: summary, kind: summary, llm: {{base_url: "http://llm.invalid/v1", model: m1}}}}
    - {{name: crm, kind: webhook, url: "http://crm.invalid/calls", after: [summary, outcome], fields: [id, outcome_tags, results], headers: {{X-Team: sales}}}}
    - {{name: sms, kind: sms, url: "http://sms.invalid/send", from: "+100", template: "Thanks {{call_id}}"}}
    - {{name: tx, kind: analytics, path: "{tmp_path / 'tx.jsonl'}"}}
    - {{name: only_transfers, kind: webhook, url: "http://x.invalid", when: {{outcome_tags_any: [transferred]}}}}
    - {{name: custom, kind: python, function: "tests.hooks:record"}}
"""
    cfg = write_config(tmp_path, steps)
    rec = tmp_path / "call.json"
    rec.write_text(json.dumps(RECORD))
    assert main(["end-function", "test", "--config", str(cfg), "--call", str(rec)]) == 0
    out = capsys.readouterr().out
    assert "end function for call rec-1 (sandbox: nothing was sent)" in out
    assert "1. outcome (outcome): done" in out
    assert "LLM call skipped: m1 at http://llm.invalid/v1" in out
    assert "would POST http://crm.invalid/calls" in out and "Idempotency-Key: rec-1:crm" in out and "X-Team: sales" in out
    assert '"outcome_tags": ["agent_hangup", "completed"]' in out
    assert "would POST http://sms.invalid/send" in out and '"to": "+8613800138000"' in out and '"text": "Thanks rec-1"' in out
    assert f"would append to {tmp_path / 'tx.jsonl'}" in out
    assert "only_transfers (webhook): skipped - when: none of the outcome tags ['transferred']" in out
    assert "custom (python): done" in out
    assert not (tmp_path / "tx.jsonl").exists()  # nothing was written
    assert main(["end-function", "test", "--config", str(cfg), "--call", str(rec), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["status"] for s in report["steps"]] == ["done", "done", "done", "done", "done", "skipped", "done"]


def test_sandbox_bad_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path)
    (tmp_path / "bad.json").write_text("[1]")
    assert main(["end-function", "test", "--config", str(cfg), "--call", str(tmp_path / "bad.json")]) == 2
    assert "not a call record" in capsys.readouterr().err


def test_calls_and_jobs_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path)
    assert main(["calls", "list", "--config", str(cfg)]) == 2  # no database yet
    assert "no database" in capsys.readouterr().err
    db = rows.store_at(tmp_path / "cg.db")
    now = time.time()
    db.run_sync(ops.begin_turn, rows.call("live-1", started_at=now), rows.turn("r-1", "t", started_at=now), None, now)
    db.run_sync(ops.put_record, RECORD, [("crm", "webhook", []), ("after", "webhook", ["crm"])], now)
    db.run_sync(lambda c: c.execute("UPDATE jobs SET status = 'failed', last_error = 'HTTP 500', response_code = 500 WHERE step = 'crm'"))
    db.run_sync(lambda c: c.execute("UPDATE jobs SET status = 'blocked', last_error = 'after: step ''crm'' failed' WHERE step = 'after'"))
    db.close_sync()

    assert main(["calls", "list", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert out.index("live-1") < out.index("rec-1")  # newest first
    assert "agent_hangup" in out and "1 blocked, 1 failed" in out and "(2 call(s))" in out
    assert main(["calls", "list", "--config", str(cfg), "--status", "ended"]) == 0
    assert "live-1" not in capsys.readouterr().out
    assert main(["calls", "list", "--config", str(cfg), "--since", "not-a-time"]) == 2
    capsys.readouterr()

    assert main(["calls", "show", "rec-1", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "end function: failed" in out and "crm (webhook): failed, 0 attempt(s) HTTP 500  error: HTTP 500" in out
    assert main(["calls", "show", "rec-1", "--config", str(cfg), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["transcript"] == RECORD["transcript"] and exported["end_function"]["status"] == "failed"
    assert main(["calls", "show", "nope", "--config", str(cfg)]) == 1
    capsys.readouterr()

    assert main(["jobs", "list", "--config", str(cfg), "--failed"]) == 0
    out = capsys.readouterr().out
    assert "crm" in out and "after" not in out.split("\n", 1)[1] and "(1 job(s))" in out
    assert main(["jobs", "retry", "--config", str(cfg)]) == 2
    capsys.readouterr()
    assert main(["jobs", "retry", "--all-failed", "--config", str(cfg)]) == 0
    assert "2 job(s) back to pending" in capsys.readouterr().out
    db = rows.store_at(tmp_path / "cg.db")
    assert [j.status for j in db.run_sync(ops.jobs_for_call, "rec-1")] == ["pending", "pending"]
    db.close_sync()


def test_parse_since() -> None:
    assert parse_since("30m", now=10_000) == 10_000 - 1800
    assert parse_since("2h", now=10_000) == 10_000 - 7200
    assert parse_since("2026-11-20T00:00:00") == parse_since("2026-11-20T00:00:00+00:00")
    with pytest.raises(ValueError):
        parse_since("yesterday")


def test_masking() -> None:
    assert mask("+4915112345567") == "+49151****567"
    line = "transfer call_id=c-1 callee=+4915112345567 caller=05718888 at 2026-11-20 10:11:12 sms to 13912345678 evt_3f9a12345678"
    assert mask_text(line, ["callee", "caller"]) == (
        "transfer call_id=c-1 callee=+49151****567 caller=05****88 at 2026-11-20 10:11:12 sms to 139123****678 evt_3f9a12345678"
    )
    assert mask_text('{"to": "+8613800138000"}', ["to"], phone_numbers=False) == '{"to": "+86138****000"}'


def test_masking_filter_on_a_handler(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("callgate.test_masking")
    caplog.handler.addFilter(MaskingFilter(["callee"]))
    try:
        logger.warning("control event callee=%s", "+4915112345567")
    finally:
        caplog.handler.filters.clear()
    assert caplog.messages == ["control event callee=+49151****567"]


async def test_sandbox_live_sends_for_real(tmp_path: Path) -> None:
    from proxy.config import load_config
    from proxy.endfn.sandbox import run_sandbox

    from .conftest import Receiver, serve_app

    recv = Receiver()
    async with serve_app(recv.app()) as hook:
        cfg = write_config(tmp_path, f'    - {{name: crm, kind: webhook, url: "{hook}/calls", fields: [id, end_reason]}}')
        report = await run_sandbox(load_config(cfg), RECORD, live=True)
    assert report["live"] is True and report["steps"][0]["status"] == "done"
    assert recv.bodies == [{"id": "rec-1", "end_reason": "agent_hangup"}]
    assert recv.headers[0]["Idempotency-Key"] == "rec-1:crm"


def test_calls_purge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path)
    db = rows.store_at(tmp_path / "cg.db")
    now = time.time()
    for key in ("a", "b"):
        db.run_sync(ops.begin_turn, rows.call(key, started_at=now), rows.turn(f"r-{key}", "t", started_at=now), None, now)
    ended = {"id": "e-a", "type": "call.ended", "call_id": "a", "source": "call_layer", "reason": "x"}
    db.run_sync(ops.end_call, "a", ended, None, [], False, now - 3 * 86400)
    db.close_sync()
    assert main(["calls", "purge", "--config", str(cfg), "--before", "yesterday"]) == 2
    assert "--before 'yesterday'" in capsys.readouterr().err
    assert main(["calls", "purge", "--config", str(cfg), "--before", "4d"]) == 0
    assert capsys.readouterr().out.startswith("0 ended call(s) deleted")
    assert main(["calls", "purge", "--config", str(cfg), "--before", "2d"]) == 0
    assert capsys.readouterr().out.startswith("1 ended call(s) deleted")
    db = rows.store_at(tmp_path / "cg.db")
    assert [c["id"] for c in db.run_sync(ops.list_calls)] == ["b"]
    db.close_sync()


def test_json_log_lines_carry_the_pairs_as_fields_masked() -> None:
    import io

    from proxy.logs import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(MaskingFilter(["callee"]))
    logger = logging.getLogger("callgate.test_json")
    logger.addHandler(handler)
    try:
        logger.warning("control event call_id=%s callee=%s attempts=%d retry in %ss", "c-1", "+4915112345567", 3, 0.5)
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("step failed step=%s", "crm")
    finally:
        logger.removeHandler(handler)
    first, second = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert first["level"] == "warning" and first["logger"] == "callgate.test_json"
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert first["message"] == "control event call_id=c-1 callee=+49151****567 attempts=3 retry in 0.5s"
    assert (first["call_id"], first["callee"], first["attempts"]) == ("c-1", "+49151****567", 3)
    assert second["step"] == "crm" and "ValueError: boom" in second["exception"]


def _finished_call(db: Any, key: str, now: float) -> None:
    turn = rows.turn(f"r-{key}", "t", started_at=now, user_text="my number is +4915112345567")
    db.run_sync(ops.begin_turn, rows.call(key, started_at=now), turn, None, now)
    outcome = rows.outcome(raw='Bye.<imsagent_hangup endword="Bye."/>', spoken="Bye.", ttft_ms=210.4, duration_ms=480.2)
    db.run_sync(ops.finish_turn, key, f"r-{key}", outcome, [], [], now + 0.5)
    hangup = rows.event(f"h-{key}", "hangup", call_id=key, endword="Bye.")
    db.run_sync(ops.add_events, key, [hangup], False, now + 0.5)
    ended = {"id": f"e-{key}", "type": "call.ended", "call_id": key, "source": "text_command", "reason": "agent_hangup"}
    db.run_sync(ops.end_call, key, ended, None, [], False, now + 1)


def test_calls_tail_of_one_call_prints_it_and_stops_at_its_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path)
    db = rows.store_at(tmp_path / "cg.db")
    _finished_call(db, "t-1", time.time() - 60)
    _finished_call(db, "t-2", time.time() - 30)
    db.close_sync()
    assert main(["calls", "tail", "t-1", "--config", str(cfg)]) == 0
    lines = [line.split(" ", 1)[1] for line in capsys.readouterr().out.splitlines()]  # without the time
    assert lines == [
        "t-1 turn 1 ok 210/480 ms 'my number is +49151****567' -> 'Bye.'",
        "t-1 #1 hangup source='text_command' endword='Bye.'",
        "t-1 #2 call.ended source='text_command' reason='agent_hangup'",
    ]


async def test_calls_tail_follows_new_calls(tmp_path: Path) -> None:
    import asyncio
    import sys

    cfg = write_config(tmp_path)
    db = rows.store_at(tmp_path / "cg.db")
    _finished_call(db, "before", time.time() - 60)  # before the tail started: not shown
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy.cli", "calls", "tail", "--config", str(cfg), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        # the tail reads from the moment it starts; this call is stamped after that
        _finished_call(db, "live", time.time() + 30)
        got = [(await asyncio.wait_for(proc.stdout.readline(), 20)).decode() for _ in range(3)]
    finally:
        proc.kill()
        await proc.wait()
        db.close_sync()
    assert [line.split(" ")[1:3] for line in got] == [["live", "turn"], ["live", "#1"], ["live", "#2"]]
