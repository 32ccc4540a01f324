"""The durable end-function pipeline: DAG order and concurrency, retries, dead letters,
timeouts, conditions, built-in steps, restart. Real SQLite files, real receivers."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from openai import AsyncOpenAI
from standardwebhooks.webhooks import Webhook

from proxy.config import parse_config
from proxy.demo.scripted_upstream import ScriptedReply, ScriptedUpstream
from proxy.server.app import running
from proxy.storage import SqliteStore, ops

from .conftest import Receiver, serve_app

FAST = {"attempts": 3, "backoff_s": 0.01, "max_backoff_s": 0.05}
HANGUP = ScriptedReply(content=["Thanks! ", '<imsagent_hangup endword="Bye." outcome="lead_collected"/>'])
PLAIN = ScriptedReply(content=["Sure."])


async def end_call(url: str, call_id: str, reason: str = "caller_hangup", state: dict | None = None, *, talk_first: bool = False) -> None:
    """The call layer reports the end (``talk_first``: after one turn, as a call that
    never had a turn does not exist)."""
    if talk_first:
        await talk(url, call_id)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/v1/calls/{call_id}/end", json={"reason": reason, "state": state or {}}) as r:
            assert r.status == 200


async def talk(url: str, call_id: str, text: str = "I'd like a quote", **kw: Any) -> str:
    client = AsyncOpenAI(base_url=f"{url}/v1", api_key="k", default_headers={"X-Call-Id": call_id}, max_retries=0)
    stream = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": text}], stream=True, **kw)
    heard = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    await client.close()
    return heard


@pytest.fixture
async def receiver() -> Any:
    r = Receiver()
    async with serve_app(r.app()) as url:
        r.url = url  # type: ignore[attr-defined]
        yield r


def hook(name: str, receiver: Receiver, **kw: Any) -> dict[str, Any]:
    return {"name": name, "kind": "webhook", "url": f"{receiver.url}/{name}", "retry": FAST, **kw}  # type: ignore[attr-defined]


async def test_independent_steps_run_concurrently_and_after_waits(stack: Any, receiver: Receiver) -> None:
    both_arrived = asyncio.Event()
    receiver.hold["a"] = both_arrived
    receiver.hold["b"] = both_arrived
    steps = [hook("a", receiver), hook("b", receiver), hook("c", receiver, after=["a", "b"])]
    s = await stack([PLAIN], end_function={"steps": steps})
    await end_call(s.url, "dag-1", talk_first=True)
    # a and b are both in flight at once: neither is answered before the other arrived
    await receiver.wait(lambda r: {"a", "b"} <= {g["path"] for g in r.got})
    assert receiver.on("c") == []
    both_arrived.set()
    jobs = await s.pipeline.wait_call("dag-1")
    assert [(j.step, j.status) for j in jobs] == [("a", "done"), ("b", "done"), ("c", "done")]
    assert receiver.answered.index("c") > max(receiver.answered.index("a"), receiver.answered.index("b"))


async def test_retries_keep_the_idempotency_key(stack: Any, receiver: Receiver) -> None:
    receiver.script["crm"] = [500, 503]
    s = await stack([PLAIN], end_function={"steps": [hook("crm", receiver)]})
    await end_call(s.url, "retry-1", talk_first=True)
    [job] = await s.pipeline.wait_call("retry-1")
    assert (job.status, job.attempts, job.response_code) == ("done", 3, 200)
    keys = [g["headers"]["Idempotency-Key"] for g in receiver.on("crm")]
    assert keys == ["retry-1:crm"] * 3
    assert [g["headers"]["webhook-id"] for g in receiver.on("crm")] == keys


async def test_dead_letter_blocks_dependents_others_go_on_and_retry_revives(stack: Any, receiver: Receiver) -> None:
    receiver.script["crm"] = [500, 500, 500]
    steps = [hook("crm", receiver), hook("after_crm", receiver, after=["crm"]), hook("tickets", receiver)]
    s = await stack([PLAIN], end_function={"steps": steps})
    await end_call(s.url, "dead-1", talk_first=True)
    jobs = {j.step: j for j in await s.pipeline.wait_call("dead-1")}
    assert (jobs["crm"].status, jobs["crm"].attempts, jobs["crm"].last_error) == ("failed", 3, "HTTP 500")
    assert jobs["after_crm"].status == "blocked" and "crm" in jobs["after_crm"].last_error
    assert jobs["tickets"].status == "done"
    assert await s.store.write(ops.retry_jobs, None, time.time()) == 2  # the failed step and the one blocked behind it
    s.pipeline.kick()
    jobs = {j.step: j for j in await s.pipeline.wait_call("dead-1")}
    assert jobs["crm"].status == "done" and jobs["after_crm"].status == "done"
    assert len(receiver.on("crm")) == 4 and len(receiver.on("after_crm")) == 1 and len(receiver.on("tickets")) == 1


async def test_refusal_is_not_retried(stack: Any, receiver: Receiver) -> None:
    receiver.script["crm"] = [422]
    s = await stack([PLAIN], end_function={"steps": [hook("crm", receiver)]})
    await end_call(s.url, "refused-1", talk_first=True)
    [job] = await s.pipeline.wait_call("refused-1")
    assert (job.status, job.attempts, job.response_code) == ("failed", 1, 422)


async def test_timeout(stack: Any, receiver: Receiver) -> None:
    receiver.hold["slow"] = asyncio.Event()  # never answers
    s = await stack([PLAIN], end_function={"steps": [hook("slow", receiver, timeout_s=0.2, retry={"attempts": 2, "backoff_s": 0.01})]})
    await end_call(s.url, "slow-1", talk_first=True)
    [job] = await s.pipeline.wait_call("slow-1")
    assert job.status == "failed" and job.attempts == 2 and "HTTP" not in (job.last_error or "")
    receiver.hold["slow"].set()


async def test_when_conditions(stack: Any, receiver: Receiver) -> None:
    steps = [
        hook("on_hangup", receiver, when={"end_reason": ["agent_hangup"]}),
        hook("on_lead", receiver, when={"outcome_tags_any": ["lead_collected"]}),
        hook("vip", receiver, when={"state": {"customer.tier": "gold"}}),
        hook("not_vip", receiver, when={"state_set": ["customer.tier"], "not_end_reason": ["agent_hangup"]}),
    ]
    s = await stack([HANGUP, PLAIN], end_function={"steps": steps})
    await talk(s.url, "when-1")  # the model hangs up with outcome="lead_collected"
    jobs = {j.step: j for j in await s.pipeline.wait_call("when-1")}
    assert jobs["on_hangup"].status == "done" and jobs["on_lead"].status == "done"
    assert jobs["vip"].status == "skipped" and "customer.tier" in jobs["vip"].last_error
    assert jobs["not_vip"].status == "skipped"
    await end_call(s.url, "when-2", state={"customer": {"tier": "gold"}}, talk_first=True)
    jobs = {j.step: j for j in await s.pipeline.wait_call("when-2")}
    assert [jobs[n].status for n in ("on_hangup", "on_lead", "vip", "not_vip")] == ["skipped", "skipped", "done", "done"]


async def test_outputs_and_state_reach_later_steps(stack: Any, receiver: Receiver) -> None:
    steps = [
        {"name": "outcome", "kind": "outcome", "tags": ["inbound"]},
        {"name": "custom", "kind": "python", "function": "tests.hooks:record", "after": ["outcome"]},
        hook("crm", receiver, after=["custom"], secret="whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()),
    ]
    tool = [{"index": 0, "id": "call_q", "type": "function", "function": {"name": "get_quote", "arguments": '{"plan": "gold"}'}}]
    s = await stack([ScriptedReply(tool_calls=tool, finish_reason="tool_calls")], end_function={"steps": steps})
    await talk(s.url, "state-1")
    async with aiohttp.ClientSession() as http:
        async with http.patch(f"{s.url}/v1/calls/state-1/state", json={"lead": {"name": "Li"}, "temp": 1}) as r:
            assert (await r.json())["state"]["lead"] == {"name": "Li"}
        async with http.patch(f"{s.url}/v1/calls/state-1/state", json={"temp": None, "lead": {"phone": "138"}}) as r:
            assert r.status == 200
    await end_call(s.url, "state-1", state={"intent": "quote"})
    jobs = {j.step: j for j in await s.pipeline.wait_call("state-1")}
    assert jobs["outcome"].output["tags"] == ["user_hangup", "inbound"]
    [got] = receiver.on("crm")
    body = json.loads(got["body"])
    assert body["state"]["lead"] == {"name": "Li", "phone": "138"} and "temp" not in body["state"]
    assert body["state"]["intent"] == "quote"
    assert body["state"]["tool_calls"][0]["name"] == "get_quote" and body["state"]["tool_calls"][0]["arguments"] == {"plan": "gold"}
    assert body["results"]["custom"]["seen"] == "state-1"
    assert body["results"]["outcome"]["tags"] == ["user_hangup", "inbound"]
    # the Standard Webhooks signature verifies with the library's own verifier
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    headers = {k.lower(): v for k, v in got["headers"].items()}
    Webhook(secret).verify(got["body"].decode(), headers)
    async with aiohttp.ClientSession() as http:
        async with http.patch(f"{s.url}/v1/calls/state-1/state", json={"late": True}) as r:
            assert r.status == 409 and (await r.json())["error"]["code"] == "call_ended"


async def test_summary_through_the_openai_client_and_fallback(stack: Any, receiver: Receiver) -> None:
    summary = {
        "summary": "The caller asked for a quote and was thanked.", "topic": "quote", "caller_intent": "get a quote",
        "sentiment": "positive", "resolution": "resolved", "outcome_tags": ["lead_collected"],
        "follow_up_required": True, "follow_up_time": "tomorrow",
    }
    llm = ScriptedUpstream([ScriptedReply(content=[json.dumps(summary)])])
    async with serve_app(llm.app()) as llm_url:
        steps = [
            {"name": "summary", "kind": "summary", "llm": {"base_url": f"{llm_url}/v1", "api_key": "sk-sum", "model": "gpt-x"}},
            {"name": "summary_down", "kind": "summary", "llm": {"base_url": "http://127.0.0.1:9/v1", "timeout_s": 2}},
        ]
        s = await stack([HANGUP], end_function={"steps": steps})
        await talk(s.url, "sum-1")
        jobs = {j.step: j for j in await s.pipeline.wait_call("sum-1")}
    assert jobs["summary"].output == {**summary, "generated_by": "llm", "model": "gpt-x"}
    sent = llm.requests[0]
    assert sent.headers["Authorization"] == "Bearer sk-sum" and sent.body["model"] == "gpt-x"
    assert sent.body["response_format"]["type"] == "json_schema"
    assert "I'd like a quote" in sent.body["messages"][1]["content"]
    down = jobs["summary_down"]
    assert down.status == "done" and down.output["generated_by"] == "rules" and "Connection" in down.output["fallback_reason"]
    assert down.output["resolution"] == "resolved" and "lead_collected" in down.output["outcome_tags"]


async def test_sms_presets_and_analytics_jsonl(stack: Any, receiver: Receiver, tmp_path: Path) -> None:
    steps = [
        {"name": "sms", "kind": "sms", "url": f"{receiver.url}/sms", "from": "+100", "template": "Hi, ref {call_id} ({end_reason})", "retry": FAST},
        {"name": "twilio", "kind": "sms", "preset": "twilio", "url": f"{receiver.url}/twilio", "from": "+100",
         "username": "AC123", "password": "tok", "to": "{state.callback}", "retry": FAST},
        {"name": "nobody", "kind": "sms", "url": f"{receiver.url}/sms2", "to": "{state.missing}", "retry": FAST},
        {"name": "analytics", "kind": "analytics", "path": str(tmp_path / "tx.jsonl")},
    ]
    s = await stack([PLAIN, HANGUP], end_function={"steps": steps})
    await talk(s.url, "sms-1", extra_body={"extendData": {"callerNumber": "+8613800138000", "instanceId": "sms-1"}})
    async with aiohttp.ClientSession() as http:  # the call layer sets state mid-call
        async with http.patch(f"{s.url}/v1/calls/sms-1/state", json={"callback": "+8613900000000"}) as r:
            assert r.status == 200
    await talk(s.url, "sms-1", "that's all")
    jobs = {j.step: j for j in await s.pipeline.wait_call("sms-1")}
    [generic] = receiver.on("sms")
    assert json.loads(generic["body"]) == {"to": "+8613800138000", "from": "+100", "text": "Hi, ref sms-1 (agent_hangup)", "call_id": "sms-1"}
    assert generic["headers"]["Idempotency-Key"] == "sms-1:sms"
    [tw] = receiver.on("twilio")
    form = parse_qs(tw["body"].decode())
    assert form["To"] == ["+8613900000000"] and form["From"] == ["+100"] and form["Body"] == ["Thank you for your call. Reference: sms-1."]
    assert tw["headers"]["Authorization"] == "Basic " + base64.b64encode(b"AC123:tok").decode()
    assert tw["headers"]["I-Twilio-Idempotency-Token"] == "sms-1:twilio"
    assert jobs["nobody"].status == "failed" and jobs["nobody"].attempts == 1 and "no recipient" in jobs["nobody"].last_error
    [line] = (tmp_path / "tx.jsonl").read_text().splitlines()
    tx = json.loads(line)
    assert tx["transactionId"] == "sms-1:analytics" and tx["request"]["event"] == "HANGUP"
    assert tx["request"]["callMeta"]["callerId"] == "+8613800138000" and tx["callgate"]["endedBy"] == "agent"
    assert tx["callgate"]["outcomeTags"] == ["agent_hangup", "completed", "lead_collected"]


async def test_records_and_steps_survive_a_restart(tmp_path: Path, receiver: Receiver) -> None:
    receiver.script["crm"] = [500] * 10
    upstream = ScriptedUpstream([HANGUP])
    async with serve_app(upstream.app()) as up:
        cfg = parse_config({
            "upstream": {"base_url": f"{up}/v1"},
            "storage": {"path": str(tmp_path / "cg.db")},
            "end_function": {"poll_s": 0.05, "after_hangup_s": 0, "steps": [hook("crm", receiver, retry={"attempts": 10, "backoff_s": 30})]},
        })
        async with running(cfg, port=0) as (_, url):
            await talk(url, "restart-1")
            await receiver.wait(lambda r: len(r.got) >= 1)
        receiver.script["crm"] = []
        async with running(cfg, port=0) as (app, url):
            from proxy.server.services import SERVICES

            s = app[SERVICES]
            [job] = await s.store.read(ops.jobs_for_call, "restart-1")
            assert job.status == "pending" and job.attempts == 1  # resumed from the database
            await s.store.write(lambda c: c.execute("UPDATE jobs SET next_at = 0"))  # as if its 30 s backoff had passed
            s.pipeline.kick()
            [job] = await s.pipeline.wait_call("restart-1")
            assert job.status == "done"
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}/v1/calls/restart-1") as r:
                    record = await r.json()
                async with http.get(f"{url}/v1/calls/restart-1/events") as r:
                    events = (await r.read()).decode()
                async with http.post(f"{url}/v1/calls/restart-1/end", json={"reason": "again"}) as r:
                    assert (await r.json())["already_ended"] is True
    assert record["status"] == "ended" and record["end_reason"] == "agent_hangup"
    assert record["transcript"][1]["text"] == "Thanks! Bye."
    assert record["end_function"]["steps"][0]["status"] == "done"
    assert [l[7:] for l in events.splitlines() if l.startswith("event: ")] == ["hangup", "call.ended"]
    assert {g["headers"]["Idempotency-Key"] for g in receiver.on("crm")} == {"restart-1:crm"}


async def test_shutdown_lets_steps_finish_within_grace_and_leaves_the_rest(tmp_path: Path, receiver: Receiver) -> None:
    quick, stuck = asyncio.Event(), asyncio.Event()
    receiver.hold["quick"] = quick
    receiver.hold["stuck"] = stuck
    upstream = ScriptedUpstream([PLAIN])
    async with serve_app(upstream.app()) as up:
        await _shutdown_with_a_stuck_step(tmp_path, receiver, f"{up}/v1", quick, stuck)


async def _shutdown_with_a_stuck_step(tmp_path: Path, receiver: Receiver, upstream: str, quick: asyncio.Event, stuck: asyncio.Event) -> None:
    cfg = parse_config({
        "upstream": {"base_url": upstream},
        "storage": {"path": str(tmp_path / "cg.db")},
        "end_function": {"poll_s": 0.05, "shutdown_grace_s": 0.5, "steps": [hook("quick", receiver), hook("stuck", receiver)]},
    })
    async with running(cfg, port=0) as (app, url):
        from proxy.server.services import SERVICES

        pipeline = app[SERVICES].pipeline
        stop = pipeline.stop

        async def stop_while_quick_answers(grace_s: float) -> None:
            quick.set()  # the quick receiver answers once shutdown has begun
            await stop(grace_s)

        pipeline.stop = stop_while_quick_answers  # type: ignore[method-assign]
        await end_call(url, "grace-1", talk_first=True)
        await receiver.wait(lambda r: {"quick", "stuck"} <= {g["path"] for g in r.got})
    db = SqliteStore(tmp_path / "cg.db")
    assert {j.step: j.status for j in db.run_sync(ops.jobs_for_call, "grace-1")} == {"quick": "done", "stuck": "running"}
    db.close_sync()
    stuck.set()
    async with running(cfg, port=0) as (app, _):
        from proxy.server.services import SERVICES

        jobs = await app[SERVICES].pipeline.wait_call("grace-1")
    assert {j.step: (j.status, j.attempts) for j in jobs} == {"quick": ("done", 1), "stuck": ("done", 2)}
    assert len(receiver.on("quick")) == 1 and len(receiver.on("stuck")) == 2


async def test_a_call_that_outlives_a_restart_keeps_its_turns_and_state(tmp_path: Path, receiver: Receiver) -> None:
    upstream = ScriptedUpstream([ScriptedReply(content=["How can I help?"]), HANGUP])
    async with serve_app(upstream.app()) as up:
        cfg = parse_config({
            "upstream": {"base_url": f"{up}/v1"},
            "storage": {"path": str(tmp_path / "cg.db")},
            "end_function": {"poll_s": 0.05, "after_hangup_s": 0, "steps": [hook("crm", receiver)]},
        })
        async with running(cfg, port=0) as (_, url):
            await talk(url, "long-1", "hello")
            async with aiohttp.ClientSession() as http:
                async with http.patch(f"{url}/v1/calls/long-1/state", json={"account": "A-7"}) as r:
                    assert r.status == 200
        async with running(cfg, port=0) as (app, url):  # callgate restarted mid-call
            assert await talk(url, "long-1", "that's all") == "Thanks! Bye."
            from proxy.server.services import SERVICES

            await app[SERVICES].pipeline.wait_call("long-1")
    [got] = receiver.on("crm")
    body = json.loads(got["body"])
    assert body["state"] == {"account": "A-7"}
    assert [t["text"] for t in body["transcript"]] == ["hello", "How can I help?", "that's all", "Thanks! Bye."]
    assert [e["type"] for e in body["events"]] == ["hangup", "call.ended"]


async def test_each_step_gets_its_own_copy_of_the_call(stack: Any) -> None:
    """A step that changes its conv.state, conv.metadata or transcript changes nothing
    a later step sees (the pipeline caches the record it reads once per call)."""
    from . import hooks

    steps = [
        {"name": "scribble", "kind": "python", "function": "tests.hooks:scribble"},
        {"name": "look", "kind": "python", "function": "tests.hooks:look", "after": ["scribble"]},
    ]
    s = await stack([PLAIN], end_function={"steps": steps})
    await end_call(s.url, "copy-1", state={"k": 1}, talk_first=True)
    jobs = {j.step: j for j in await s.pipeline.wait_call("copy-1")}
    assert jobs["look"].output == {"state": False, "metadata": False, "transcript": False}
    assert hooks.CALLS[-1].state == {"k": 1}


async def test_a_reused_call_ids_events_and_steps_carry_the_runtimes_id(stack: Any, receiver: Receiver) -> None:
    """The call layer matches on its own id: the second call under "again" sends its
    hangup (and the end function sees it) as call_id "again", generation 2."""
    from . import hooks

    steps = [{"name": "custom", "kind": "python", "function": "tests.hooks:record"}]
    s = await stack([PLAIN, HANGUP], end_function={"steps": steps, "after_hangup_s": 0},
                    control={"webhook": {"url": f"{receiver.url}/events"}})  # type: ignore[attr-defined]
    await end_call(s.url, "again", talk_first=True)
    await s.pipeline.wait_call("again")
    assert await talk(s.url, "again") == "Thanks! Bye."
    await s.pipeline.wait_call("again~2")
    await s.delivery.settled()
    sent = [json.loads(g["body"]) for g in receiver.on("events")]
    assert [(e["type"], e["call_id"], e["generation"]) for e in sent] == [
        ("call.ended", "again", 1), ("hangup", "again", 2), ("call.ended", "again", 2)
    ]
    assert [(c.id, c.generation, c.idempotency_key) for c in hooks.CALLS[-2:]] == [
        ("again", 1, "again:custom"), ("again", 2, "again~2:custom")
    ]


async def test_each_step_run_is_a_span_tied_to_its_call(stack: Any, receiver: Receiver, otlp: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """With traces on, every try of every step is a span ``end_function {step}``
    (its try number, outcome and keys), found with its call's turns by ``session.id``."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
    receiver.script["crm"] = [503]
    steps = [hook("crm", receiver), {"name": "tag", "kind": "outcome", "when": {"end_reason": ["nobody_said_this"]}}]
    s = await stack([PLAIN], end_function={"steps": steps}, telemetry={"otlp_endpoint": otlp.url})
    await end_call(s.url, "span-1", talk_first=True)
    await s.pipeline.wait_call("span-1")
    await otlp.wait(lambda r: sum(sp.name.startswith("end_function ") for sp in r.spans) >= 3)
    spans = [sp for sp in otlp.spans if sp.name.startswith("end_function ")]  # the turn's own span aside
    got = sorted((sp.name, sp.attributes["callgate.step.attempt"], sp.attributes["callgate.step.outcome"], sp.status) for sp in spans)
    assert got == [
        ("end_function crm", 1, "retry", "ERROR"), ("end_function crm", 2, "done", "UNSET"), ("end_function tag", 1, "skipped", "UNSET"),
    ]
    crm = [sp for sp in spans if sp.name == "end_function crm"]
    assert {sp.attributes["session.id"] for sp in otlp.spans if sp.kind != "CLIENT"} == {"span-1"}  # the steps and the turn: one call
    assert {sp.attributes["callgate.step.idempotency_key"] for sp in crm} == {"span-1:crm"}
    assert [sp.attributes.get("http.response.status_code") for sp in sorted(crm, key=lambda x: x.start_ns)] == [503, 200]
    assert {(sp.kind, sp.parent_span_id, sp.attributes["callgate.call.key"], sp.attributes["callgate.step.kind"]) for sp in crm} == {
        ("INTERNAL", "", "span-1", "webhook")}
