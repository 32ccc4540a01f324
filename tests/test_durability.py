"""The database as the source of truth: recovery from what a dead process left,
dead letters and their retry, bounded memory and stored text, upstream anomalies
recorded as they happened, and a database of the first layout moved forward."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from proxy.cli import main
from proxy.config import parse_config
from proxy.demo.scripted_upstream import ScriptedReply, chunk_event
from proxy.server.app import running
from proxy.server.services import SERVICES
from proxy.storage import ops

from . import rows

from .conftest import Receiver, serve_app
from .test_runtimes import events_until_end

PLAIN = ScriptedReply(content=["Hello."])


def body(stream: bool = True) -> dict[str, Any]:
    return {"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


async def post(url: str, call_id: str | None = None, payload: dict[str, Any] | None = None) -> tuple[int, bytes]:
    headers = {"X-Call-Id": call_id} if call_id else {}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/v1/chat/completions", json=payload or body(), headers=headers) as r:
            return r.status, await r.read()


# -- upstream anomalies -------------------------------------------------------------------


async def test_a_data_line_that_is_not_json_ends_the_stream_with_an_error(stack: Any) -> None:
    s = await stack([ScriptedReply(raw=chunk_event({"content": "Hel"}) + b"data: {not json\n\n" + chunk_event({"content": "lo"}, "stop") + b"data: [DONE]\n\n")])
    status, got = await post(s.url, "anomaly-1")
    assert status == 200
    assert got.startswith(chunk_event({"content": "Hel"}))
    events = [line for line in got.split(b"\n\n") if line]
    assert json.loads(events[-2][6:])["error"]["code"] == "upstream_stream_error" and events[-1] == b"data: [DONE]"
    assert b"data: {not json" not in got  # the line the official client would choke on never reaches it
    turn = (await s.record("anomaly-1"))["turns"][0]
    assert turn["status"] == "upstream_error" and "not JSON" in turn["error"]


async def test_html_to_a_streaming_request_is_a_502(stack: Any) -> None:
    s = await stack([ScriptedReply(raw=b"<html>maintenance</html>", content_type="text/html")])
    status, got = await post(s.url, "anomaly-2")
    assert status == 502 and json.loads(got)["error"]["code"] == "upstream_bad_reply"
    turn = (await s.record("anomaly-2"))["turns"][0]
    assert turn["status"] == "upstream_error" and "text/html" in turn["error"]
    with pytest.raises(openai.APIStatusError):
        client = openai.AsyncOpenAI(base_url=f"{s.url}/v1", api_key="k", max_retries=0)
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True)


async def test_a_stream_cut_before_its_finish_reason_is_incomplete(stack: Any) -> None:
    s = await stack([ScriptedReply(raw=chunk_event({"content": "Hel"}))])
    status, got = await post(s.url, "anomaly-3")
    assert status == 200 and got.endswith(b"data: [DONE]\n\n")
    assert b'"code":"upstream_incomplete"' in got.replace(b" ", b"")
    assert (await s.record("anomaly-3"))["turns"][0]["status"] == "upstream_incomplete"


async def test_a_finished_stream_without_done_gets_done(stack: Any) -> None:
    s = await stack([ScriptedReply(raw=chunk_event({"content": "Hi"}) + chunk_event({}, "stop"))])
    status, got = await post(s.url, "anomaly-4")
    assert got.endswith(b"data: [DONE]\n\n") and b"error" not in got
    turn = (await s.record("anomaly-4"))["turns"][0]
    assert (turn["status"], turn["error"]) == ("ok", "the upstream sent no [DONE]")


async def test_non_json_to_a_plain_request_is_a_502(stack: Any) -> None:
    s = await stack([ScriptedReply(raw=b"oops", content_type="text/plain")])
    status, got = await post(s.url, "anomaly-5", body(stream=False))
    assert status == 502 and (await s.record("anomaly-5"))["turns"][0]["status"] == "upstream_error"


# -- bounded memory and stored text --------------------------------------------------------


async def test_stored_turn_text_is_capped_but_the_stream_is_not(stack: Any) -> None:
    pieces = ["x" * 1000] * 50
    s = await stack([ScriptedReply(content=pieces)], storage={"max_turn_chars": 2000})
    status, got = await post(s.url, "long-1")
    assert got.count(b"x" * 1000) == 50  # all of it reached the runtime
    turn = (await s.record("long-1"))["turns"][0]
    assert turn["raw_text"] == "x" * 2000 + "…[+48000 chars]" and turn["spoken_text"] == turn["raw_text"]


async def test_ended_calls_leave_memory(stack: Any) -> None:
    s = await stack([PLAIN])
    for i in range(20):
        await post(s.url, None)  # calls without an id end with their reply
    await s.registry.drain()
    assert len(s.registry) == 0
    assert len(await s.store.read(ops.list_calls, status="ended")) == 20


# -- dead letters ------------------------------------------------------------------------------


async def test_a_delivery_that_stays_failing_is_a_dead_letter_and_is_resent(stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recv = Receiver(statuses=[503] * 100)
    async with serve_app(recv.app()) as hook:
        s = await stack(
            [ScriptedReply(content=['<imsagent_hangup endword="Bye"/>'])],
            control={"webhook": {"url": f"{hook}/events", "backoff_s": 0.01, "max_backoff_s": 0.02, "max_age_s": 0.5}},
        )
        await post(s.url, "dead-1")
        await s.registry.drain()
        await s.delivery.settled()
        deliveries = (await s.record("dead-1"))["control_deliveries"]
        assert [(d["type"], d["status"]) for d in deliveries] == [("hangup", "failed"), ("call.ended", "failed")]
        assert deliveries[0]["last_error"].startswith("stale: not delivered within 0.5 s; last error: HTTP 503")
        assert deliveries[0]["attempts"] >= 2  # retried while fresh
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f'storage: {{path: "{s.store.path}"}}\n')
        assert main(["deliveries", "list", "--failed", "--config", str(cfg)]) == 0
        out = capsys.readouterr().out
        assert "hangup" in out and "call.ended" in out and "2 failed" in out
        recv.statuses.clear()  # the call layer is back
        assert main(["deliveries", "retry", "--all-failed", "--config", str(cfg)]) == 0
        assert "2 delivery(ies) back to pending" in capsys.readouterr().out
        s.delivery.kick()
        await s.delivery.settled()
        assert [b["type"] for b in recv.bodies] == ["hangup", "call.ended"]  # in order, once each
        assert [d["status"] for d in (await s.record("dead-1"))["control_deliveries"]] == ["done", "done"]


# -- recovery from what a dead process left ------------------------------------------------------


def dead_process_db(path: Path, now: float) -> None:
    """A database as a process killed mid-call leaves it: an idle call, a call whose
    hangup was recorded but not its end, a call without an id, all with a turn in
    progress of an instance that no longer beats."""
    db = rows.store_at(path)
    for key, anonymous in (("idle-1", False), ("hung-1", False), ("req_x", True)):
        db.run_sync(ops.heartbeat, "dead", "h", 1, now - 100)
        start = rows.call(key, anonymous=anonymous, started_at=now - 100)
        db.run_sync(ops.begin_turn, start, rows.turn(f"r-{key}", "dead", started_at=now - 100), None, now - 100)
    hangup = rows.event("evt_h", "hangup", call_id="hung-1", source="tool_call")
    db.run_sync(ops.add_events, "hung-1", [hangup], False, now - 100)
    db.close_sync()


async def test_start_recovers_what_a_dead_process_left(tmp_path: Path) -> None:
    now = time.time()
    dead_process_db(tmp_path / "cg.db", now)
    recv = Receiver()
    async with serve_app(recv.app()) as hook:
        cfg = parse_config({
            "upstream": {"base_url": "http://127.0.0.1:9/v1"},
            "storage": {"path": str(tmp_path / "cg.db")},
            "end_function": {"idle_timeout_s": 30, "after_hangup_s": 3, "steps": [{"name": "crm", "kind": "webhook", "url": f"{hook}/crm"}]},
        })
        async with running(cfg, port=0) as (app, url):
            s = app[SERVICES]
            records = {k: await s.registry.record(k) for k in ("idle-1", "hung-1", "req_x")}
            for k in records:
                await s.pipeline.wait_call(k)
    assert {k: (r["status"], r["end_reason"]) for k, r in records.items()} == {
        "idle-1": ("ended", "idle_timeout"), "hung-1": ("ended", "agent_hangup"), "req_x": ("ended", "response_finished")
    }
    assert all(r["turns"][0]["status"] == "interrupted" for r in records.values())
    assert records["hung-1"]["end_source"] == "tool_call"
    assert sorted(g["headers"]["Idempotency-Key"] for g in recv.delivered) == ["hung-1:crm", "idle-1:crm", "req_x:crm"]


async def test_the_idle_sweep_reads_the_database_not_memory(stack: Any) -> None:
    s = await stack([PLAIN], end_function={"idle_timeout_s": 0.3, "sweep_s": 0.05})
    await post(s.url, "sweep-1")
    await s.registry.drain()
    s.registry.cache.forget(s.registry.get("sweep-1"))  # as if this process had restarted
    events = await events_until_end(s.url, "sweep-1")
    assert [(e["type"], e.get("reason")) for e in events] == [("call.ended", "idle_timeout")]


# -- the first layout ------------------------------------------------------------------------


V0 = """
CREATE TABLE calls (id TEXT PRIMARY KEY, status TEXT NOT NULL, end_reason TEXT, started_at REAL NOT NULL,
    ended_at REAL, updated_at REAL NOT NULL, record TEXT NOT NULL);
CREATE TABLE jobs (id INTEGER PRIMARY KEY, call_id TEXT NOT NULL, step TEXT NOT NULL, kind TEXT NOT NULL,
    after TEXT NOT NULL DEFAULT '[]', status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL,
    last_error TEXT, response_code INTEGER, duration_ms REAL, output TEXT, idempotency_key TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, UNIQUE (call_id, step));
CREATE TABLE deliveries (event_id TEXT PRIMARY KEY, call_id TEXT NOT NULL, seq INTEGER NOT NULL, payload TEXT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL);
"""


def test_a_database_of_the_first_layout_is_moved_forward(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(V0)
    record = {
        "id": "old-1", "status": "ended", "started_at": "2026-11-01T10:00:00+00:00", "ended_at": "2026-11-01T10:01:00+00:00",
        "end_reason": "agent_hangup", "end_source": "text_command", "state": {"k": 1}, "metadata": {"callerNumber": "+1"},
        "turns": [{"request_id": "r1", "started_at": "2026-11-01T10:00:01+00:00", "stream": True, "user_text": "hi",
                   "raw_text": "Bye", "spoken_text": "Bye", "status": "ok"}],
        "events": [{"id": "e1", "seq": 1, "type": "hangup", "source": "text_command"}, {"id": "e2", "seq": 2, "type": "call.ended", "source": "text_command", "reason": "agent_hangup"}],
    }
    old.execute("INSERT INTO calls VALUES ('old-1', 'ended', 'agent_hangup', 1, 2, 2, ?)", (json.dumps(record),))
    old.execute("INSERT INTO jobs (call_id, step, kind, status, next_at, idempotency_key, created_at, updated_at) VALUES ('old-1', 'crm', 'webhook', 'done', 0, 'old-1:crm', 1, 1)")
    old.execute("INSERT INTO deliveries VALUES ('e1', 'old-1', 1, ?, 'done', 1, NULL, 1, 1)", (json.dumps(record["events"][0]),))
    old.commit()
    old.close()
    db = rows.store_at(path)
    got = db.run_sync(ops.call_record, "old-1")
    db.close_sync()
    assert (got["status"], got["end_reason"], got["state"]) == ("ended", "agent_hangup", {"k": 1})
    assert got["transcript"] == [{"role": "user", "text": "hi"}, {"role": "assistant", "text": "Bye"}]
    assert [e["type"] for e in got["events"]] == ["hangup", "call.ended"]
    assert got["end_function"]["steps"][0]["status"] == "done" and got["control_deliveries"][0]["status"] == "done"


async def test_the_sweep_deletes_calls_past_retention(stack: Any) -> None:
    s = await stack([PLAIN], storage={"retention_days": 1 / 86400})  # one second
    await post(s.url, "kept")
    for _ in range(3):
        await post(s.url, None)  # anonymous calls end with their reply
    await s.registry.drain()
    assert len(await s.store.read(ops.list_calls, status="ended")) == 3
    ended_before = time.time() - 1
    await s.store.write(lambda c: c.execute("UPDATE calls SET ended_at = ? WHERE status = 'ended'", (ended_before - 1,)))
    await s.registry.sweep()
    assert [(c["id"], c["status"]) for c in await s.store.read(ops.list_calls)] == [("kept", "active")]
