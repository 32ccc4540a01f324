"""GET /metrics: the Prometheus exposition, behind the admin scope or on metrics_port.

Counters are process-wide, so each test reads them before and after what it does
and checks the exact differences."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from openai import AsyncOpenAI
from prometheus_client.parser import text_string_to_metric_families

from proxy.demo.scripted_upstream import ScriptedReply
from proxy.server.scrape import METRICS_URL

from .conftest import Receiver, serve_app

HANGUP = ScriptedReply(content=["Thanks. ", '<imsagent_hangup endword="Bye!"/>'])
BAD_TRANSFER = ScriptedReply(content=["One moment. ", '<imsagent_transfer_call callee="$(id)" msg="x"/>', "Still here."])
KEYS = {
    "keys": [
        {"name": "ops", "key": "ops-secret-0123456789", "scopes": ["admin"]},
        {"name": "rt", "key": "rt-secret-0123456789", "scopes": ["relay", "calls:write"]},
    ]
}
ADMIN = {"Authorization": "Bearer ops-secret-0123456789"}


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in an exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


async def talk(url: str, call_id: str, key: str) -> str:
    client = AsyncOpenAI(base_url=f"{url}/v1", api_key=key, default_headers={"X-Call-Id": call_id}, max_retries=0)
    stream = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
    heard = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    await client.close()
    return heard


async def scrape(url: str, headers: dict[str, str] | None = None) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics", headers=headers or {}) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("text/plain; version=")
        return await r.text()


@pytest.fixture
async def receiver() -> Any:
    r = Receiver([500] * 100)  # every step fails
    async with serve_app(r.app()) as url:
        r.url = url  # type: ignore[attr-defined]
        yield r


async def test_metrics_need_the_admin_scope(stack: Any) -> None:
    s = await stack([], auth=KEYS)
    async with aiohttp.ClientSession() as http:
        for headers, status in (({}, 401), ({"Authorization": "Bearer rt-secret-0123456789"}, 403), (ADMIN, 200)):
            async with http.get(f"{s.url}/metrics", headers=headers) as r:
                assert r.status == status
                if status != 200:
                    assert (await r.json())["error"]["code"] in ("invalid_api_key", "insufficient_permissions")


async def test_a_call_counted_end_to_end(stack: Any, receiver: Receiver) -> None:
    step = {"name": "crm", "kind": "webhook", "url": f"{receiver.url}/crm", "retry": {"attempts": 2, "backoff_s": 0.01}}
    s = await stack([BAD_TRANSFER, HANGUP], auth=KEYS, end_function={"steps": [step]})
    before = await scrape(s.url, ADMIN)

    heard = [await talk(s.url, "m-1", "rt-secret-0123456789") for _ in range(2)]
    assert heard == ["One moment. Still here.", "Thanks. Bye!"]
    [job] = await s.pipeline.wait_call("m-1")
    assert job.status == "failed"
    after = await scrape(s.url, ADMIN)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    route = "/v1/chat/completions"
    assert delta("callgate_requests_total", route=route, profile="openai", status="200") == 2
    assert delta("callgate_requests_total", route="/metrics", profile="", status="200") == 1  # the first scrape
    hangup = {"function": "hangup", "source": "text_command"}
    assert delta("callgate_commands_total", **hangup, outcome="accepted", reason="") == 1
    transfer = {"function": "transfer", "source": "text_command"}
    assert delta("callgate_commands_total", **transfer, outcome="rejected", reason="bad_callee") == 1
    assert delta("callgate_control_events_total", type="hangup") == 1
    assert delta("callgate_control_events_total", type="command.rejected") == 1
    assert delta("callgate_control_events_total", type="call.ended") == 1
    assert delta("callgate_calls_ended_total", reason="agent_hangup") == 1
    assert delta("callgate_step_tries_total", step="crm", outcome="retry") == 1
    assert delta("callgate_step_tries_total", step="crm", outcome="failed") == 1
    assert delta("callgate_upstream_ttfb_seconds_count", profile="openai") == 2
    assert delta("callgate_added_ttfb_seconds_count", profile="openai") == 2
    # each reply: a role chunk, its content chunks (3, then 2), a finish_reason chunk, [DONE]
    assert delta("callgate_chunks_relayed_total", profile="openai") == (1 + 3 + 2) + (1 + 2 + 2)
    assert delta("callgate_storage_write_seconds_count", engine="sqlite") > 0
    # read from the database at the scrape
    assert sample(after, "callgate_dead_letters", kind="step") == 1
    assert sample(after, "callgate_dead_letters", kind="delivery") == 0
    assert sample(after, "callgate_calls_active") == 0


async def test_upstream_errors_by_kind(stack: Any) -> None:
    s = await stack([], upstream_url="http://127.0.0.1:9/v1")  # nothing listens on port 9
    before = await scrape(s.url)
    async with aiohttp.ClientSession() as http:
        payload = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(f"{s.url}/v1/chat/completions", json=payload) as r:
            assert r.status == 502
    after = await scrape(s.url)
    kind = sample(after, "callgate_upstream_errors_total", kind="unreachable") - sample(before, "callgate_upstream_errors_total", kind="unreachable")
    assert kind == 1
    status = {"route": "/v1/chat/completions", "profile": "openai", "status": "502"}
    assert sample(after, "callgate_requests_total", **status) - sample(before, "callgate_requests_total", **status) == 1


async def test_metrics_port_serves_without_a_key(stack: Any) -> None:
    s = await stack([], auth=KEYS, server={"metrics_port": 0})
    text = await scrape(s.app[METRICS_URL])
    assert "callgate_requests_total" in text and "callgate_dead_letters" in text
    async with aiohttp.ClientSession() as http, http.get(f"{s.app[METRICS_URL]}/v1/models") as r:
        assert r.status == 404  # only /metrics there
