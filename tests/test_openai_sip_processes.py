"""The OpenAI SIP front door across real processes: two ``callgate serve`` on one
SQLite database, the sideband's owner killed with SIGKILL mid-call, the call finished
by the other without a second hangup, the end function run once (a webhook step on
loopback, counted). The scripted OpenAI (:mod:`proxy.demo.scripted_openai`) runs in
this process."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from proxy.demo import sip_scripts as sc
from proxy.demo.scripted_openai import ScriptedOpenAI

from .conftest import Receiver, serve_app
from .lab import until
from .process import ServeProcess
from .sip_lab import hook_url, sip_config

BYE = "Thank you for calling, goodbye!"


def _config(tmp_path: Path, api: str, openai_url: str, hook: str) -> Path:
    data = {
        "storage": {"path": str(tmp_path / "cg.db")},
        "front_doors": sip_config(api, openai_url, lease_s=1.0),
        "end_function": {"steps": [{"name": "crm", "kind": "webhook", "url": f"{hook}/crm"}], "sweep_s": 0.3, "poll_s": 0.1},
        "log_level": "info",
    }
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(data))
    return cfg


def _script(api: str) -> tuple[list[sc.Step], int]:
    """Realtime: the owner is killed before the caller says goodbye (the other does the
    one hangup). Live: it is killed after its /hangup, before session.closed (the
    other must not hang up again). The index of the step the kill waits for."""
    if api == "realtime":
        script = [
            *sc.rt_session(), *sc.rt_response("r0", "Example Co, how can I help?"), sc.Gate("go"),
            *sc.rt_user("u1", "That is all, thanks."), *sc.rt_response("r1", "Okay.", calls=[("call_1", "hangup", {"endword": BYE})]),
            sc.Expect("conversation.item.create"), *sc.rt_closing_response("r_bye", BYE),
        ]
        return script, script.index(sc.Gate("go"))
    script = [
        *sc.live_started(), *sc.live_says("Example Co, how can I help?"), *sc.live_caller("That is all, thanks."),
        *sc.live_delegation("del_1", [("call_1", "hangup", {"endword": BYE})]), sc.Expect("response.item.create"),
        sc.Expect("session.commentary.append"), *sc.live_says(BYE),
    ]
    return script, len(script)


def _row(db: Path, call_id: str) -> dict[str, Any]:
    with sqlite3.connect(db) as c:
        c.row_factory = sqlite3.Row
        row = c.execute("SELECT status, owner, hangup, attaches FROM sip_calls WHERE id = ?", (call_id,)).fetchone()
        jobs = c.execute("SELECT status, attempts FROM jobs WHERE call_key = ?", (call_id,)).fetchall()
    return {**dict(row), "jobs": [tuple(j) for j in jobs]} if row else {}


@pytest.mark.parametrize("api", ["realtime", "live"])
async def test_the_owner_killed_mid_call_and_the_other_instance_finishes_it(tmp_path: Path, api: str) -> None:
    oa, recv = ScriptedOpenAI(), Receiver()
    call_id = f"{'rtc' if api == 'realtime' else 'live'}_kill"
    script, kill_at = _script(api)
    oa.add(api, call_id, script, close_gate="closed" if api == "live" else "")
    async with serve_app(oa.app()) as oa_url, serve_app(recv.app()) as hook:
        cfg = _config(tmp_path, api, oa_url, hook)
        a, b = ServeProcess(cfg), ServeProcess(cfg)
        await a.start()
        await b.start()
        async with aiohttp.ClientSession() as http:
            assert await oa.deliver(hook_url(a.url), call_id, session=http) == [200]
        if api == "realtime":
            await oa.wait(lambda: oa.calls[call_id].pos == kill_at, 15)
        else:
            await oa.wait(lambda: oa.count("hangup") == 1, 15)
        await a.kill()
        await oa.wait(lambda: oa.calls[call_id].attaches == 2, 15)  # the other took it over, attached again
        oa.gate("go" if api == "realtime" else "closed").set()
        await recv.wait(lambda r: len(r.delivered) >= 1, 15)
        await until(lambda: _row(tmp_path / "cg.db", call_id).get("jobs") == [("done", 1)], 10, "the end function done")
        async with aiohttp.ClientSession() as http, http.get(f"{b.url}/v1/calls/{call_id}") as r:
            rec = await r.json()
        assert await b.stop() == 0
    row = _row(tmp_path / "cg.db", call_id)
    assert (oa.count("accept"), oa.count("hangup"), len(recv.delivered)) == (1, 1, 1)
    assert (row["status"], row["attaches"]) == ("ended", 2) and row["hangup"] in ("claimed", "sent")  # killed before or after it heard the answer
    assert (rec["status"], rec["end_reason"], rec["end_source"]) == ("ended", "agent_hangup", "openai_sip")
    assert [e["type"] for e in rec["events"]] == ["hangup", "call.ended"]
    assert any("openai sip call taken over" in line for line in b.log), "".join(b.log[-20:])
    crm = recv.bodies[0]
    assert crm["call_id"] == call_id and crm["end_reason"] == "agent_hangup"
    if api == "realtime":  # the other instance heard the goodbye through to its end before hanging up
        t = oa.timeline
        assert t.index(("sent", "output_audio_buffer.stopped", "r_bye")) < t.index(("rest", "hangup", call_id))
        assert {"role": "user", "text": "That is all, thanks."} in rec["transcript"]
    else:
        assert rec["usage"]["seconds"] == 42.0  # session.closed's, heard by the other instance
