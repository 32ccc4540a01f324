"""The upstream pool against scripted upstreams on 127.0.0.1, with the official openai
client as the runtime: fallback on each failure kind, Retry-After cooling, hedges
that win and lose, stalls continued, ejection and return, model mapping, usage and
cost, non-streamed fallback, and the happy path byte for byte."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from prometheus_client import REGISTRY

from proxy.config import parse_config
from proxy.endfn.conversation import Conversation
from proxy.server.app import running
from proxy.server.services import SERVICES

from .conftest import serve_app
from proxy.demo.scripted_upstream import Cut, ScriptedReply, ScriptedUpstream, Stall, stream_body

HANGUP = '<imsagent_hangup endword="Bye."/>'


class Pool:
    """callgate in front of scripted upstreams: ``url``, ``ups`` by name, ``app``."""

    def __init__(self, url: str, ups: dict[str, ScriptedUpstream], app: Any) -> None:
        self.url, self.ups, self.app = url, ups, app

    @property
    def services(self) -> Any:
        return self.app[SERVICES]

    def client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key="sk-test", max_retries=0)

    async def say(self, text: str = "hi", call_id: str = "c1", **kw: Any) -> str:
        """One streamed turn through the openai client; what the runtime heard."""
        async with self.client() as client:
            stream = await client.chat.completions.create(
                model=kw.pop("model", "gpt-4o"), messages=[{"role": "user", "content": text}], stream=True,
                extra_headers={"X-Call-Id": call_id}, **kw,
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def record(self, call_id: str = "c1") -> dict[str, Any]:
        async with aiohttp.ClientSession() as http, http.get(f"{self.url}/v1/calls/{call_id}") as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def raw(self, body: dict[str, Any], call_id: str = "c1") -> bytes:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.url}/v1/chat/completions", json=body, headers={"X-Call-Id": call_id}) as r:
                return await r.read()


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await pool({"a": [ScriptedReply...], "b": [...]}, routing={...}, entry={"a": {...}})``."""
    exits = contextlib.AsyncExitStack()

    async def start(scripts: dict[str, list[ScriptedReply]], routing: dict[str, Any] | None = None, entry: dict[str, dict[str, Any]] | None = None, **cfg: Any) -> Pool:
        ups, entries = {}, []
        for name, script in scripts.items():
            up = ScriptedUpstream(script, name=name)
            base = await exits.enter_async_context(serve_app(up.app()))
            ups[name] = up
            entries.append({"name": name, "base_url": f"{base}/v1", "timeout_s": 5, **(entry or {}).get(name, {})})
        data = {
            "upstreams": entries,
            "routing": routing or {},
            "storage": {"path": str(tmp_path / "cg.db")},
            "end_function": {"poll_s": 0.05, "after_hangup_s": 0, "sweep_s": 0.2},
            **cfg,
        }
        app, url = await exits.enter_async_context(running(parse_config(data), host="127.0.0.1", port=0))
        return Pool(url, ups, app)

    async with exits:
        yield start


async def say_profile(p: Pool, profile: str, call_id: str = "c1", text: str = "hi") -> str:
    """One streamed turn through ``/{profile}/v1`` with the openai client; what the runtime heard."""
    async with p.client() as c:
        stream = await c.with_options(base_url=f"{p.url}/{profile}/v1").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": text}], stream=True, extra_headers={"X-Call-Id": call_id},
        )
        return "".join([x.choices[0].delta.content or "" async for x in stream if x.choices])


def outcomes(record: dict[str, Any], turn: int = -1) -> list[tuple[str, str]]:
    return [(a["upstream"], a["outcome"]) for a in record["turns"][turn]["attempts"]]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def hangups(record: dict[str, Any]) -> int:
    return sum(1 for e in record["events"] if e["type"] == "hangup")


# -- fallback before speech ----------------------------------------------------------

HELLO = ScriptedReply(content=["Hello", " there."])
OVERLOADED = {"message": "overloaded", "code": 503}  # an error event mid-stream, as OpenRouter sends one
FAILURES = {
    "429": ScriptedReply(status=429),
    "500": ScriptedReply(status=500),
    "503": ScriptedReply(status=503),
    "408": ScriptedReply(status=408),
    "409": ScriptedReply(status=409),
    "not_sse": ScriptedReply(content=["Hello", " there."], whole=True),
    "ends_before_speaking": ScriptedReply(content=[], cut=Cut(after=0)),
    "error_before_speaking": ScriptedReply(error_event=OVERLOADED, done=False),
    "timeout": ScriptedReply(content=["Hello", " there."], head_delay_s=3),
}


@pytest.mark.parametrize("kind", sorted(FAILURES))
async def test_a_failure_before_speech_moves_to_the_next_upstream(pool: Any, kind: str) -> None:
    p = await pool({"a": [FAILURES[kind]], "b": [ScriptedReply(content=["From ", "B."])]}, entry={"a": {"timeout_s": 0.3}})
    assert await p.say() == "From B."
    record = await p.record()
    assert outcomes(record) == [("a", "failed"), ("b", "won")]
    assert record["turns"][-1]["status"] == "ok"
    assert len(p.ups["b"].requests) == 1


async def test_an_unreachable_upstream_moves_to_the_next(tmp_path: Path) -> None:
    dead_port = _free_port()
    ups = ScriptedUpstream([ScriptedReply(content=["From B."])], name="b")
    async with serve_app(ups.app()) as base:
        data = {
            "upstreams": [{"name": "dead", "base_url": f"http://127.0.0.1:{dead_port}/v1"}, {"name": "b", "base_url": f"{base}/v1"}],
            "storage": {"path": str(tmp_path / "u.db")},
        }
        async with running(parse_config(data), host="127.0.0.1", port=0) as (app, url):
            q = Pool(url, {"b": ups}, app)
            assert await q.say() == "From B."
            assert outcomes(await q.record()) == [("dead", "failed"), ("b", "won")]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_the_requests_own_error_is_relayed_and_no_other_upstream_is_tried(pool: Any, status: int) -> None:
    p = await pool({"a": [ScriptedReply(status=status)], "b": [HELLO]})
    with pytest.raises(openai.APIStatusError) as e:
        await p.say()
    assert e.value.status_code == status
    assert "a says" in e.value.message
    assert p.ups["b"].requests == []


async def test_when_every_upstream_fails_the_last_error_is_relayed(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(status=503)], "b": [ScriptedReply(status=500)]})
    with pytest.raises(openai.InternalServerError) as e:
        await p.say()
    assert e.value.status_code == 500 and "b says 500" in e.value.message
    assert outcomes(await p.record()) == [("a", "failed"), ("b", "failed")]


async def test_max_attempts_bounds_the_upstreams_tried(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(status=503)], "b": [ScriptedReply(status=503)], "c": [HELLO]}, routing={"max_attempts": 2})
    with pytest.raises(openai.APIStatusError):
        await p.say()
    assert p.ups["c"].requests == []


async def test_a_429_with_retry_after_cools_that_upstream_for_that_long(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(status=429, headers={"Retry-After": "20"}), ScriptedReply(content=["A again."])], "b": [ScriptedReply(content=["From B."])]})
    now = [1000.0]
    p.services.pool.clock = lambda: now[0]
    assert await p.say(call_id="c1") == "From B."
    async with aiohttp.ClientSession() as http, http.get(f"{p.url}/healthz") as r:
        health = await r.json()
    assert health["upstreams"]["a"]["state"] == "cooling" and health["upstreams"]["a"]["cooling_s"] == 20
    assert health["upstreams"]["b"]["state"] == "ok"
    assert await p.say(call_id="c2") == "From B."  # a is skipped while it cools
    assert len(p.ups["a"].requests) == 1
    now[0] += 20
    assert await p.say(call_id="c3") == "A again."
    assert len(p.ups["a"].requests) == 2


async def test_an_upstream_failing_eject_after_times_is_ejected_then_tried_again(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(status=503), ScriptedReply(status=503), ScriptedReply(content=["A is back."])], "b": [ScriptedReply(content=["B."])]},
                   routing={"eject_after": 2, "cooldown_s": 30})
    now = [0.0]
    p.services.pool.clock = lambda: now[0]
    assert [await p.say(call_id=f"c{i}") for i in range(3)] == ["B.", "B.", "B."]
    assert len(p.ups["a"].requests) == 2  # the third went to b alone: a was cooling
    assert p.services.pool.states()["a"]["state"] == "cooling"
    now[0] += 30
    assert await p.say(call_id="c9") == "A is back."
    assert p.services.pool.states()["a"] == {"state": "ok", "cooling_s": 0.0, "in_flight": 0}


# -- hedging ------------------------------------------------------------------------


async def test_a_hedge_that_wins_closes_the_slow_upstream(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(content=["Slow A."], ttft_s=5)], "b": [ScriptedReply(content=["Fast ", "B."])]}, routing={"first_token_ms": 100})
    hedges = metric("callgate_hedges_total")
    assert await p.say() == "Fast B."
    assert await p.ups["a"].wait_gone(0)
    assert outcomes(await p.record()) == [("a", "lost"), ("b", "won")]
    assert metric("callgate_hedges_total") == hedges + 1


async def test_a_hedge_that_loses_is_cancelled_and_its_hangup_never_fires(pool: Any) -> None:
    # a is slow to its first token; b starts as the hedge, writes half a hangup (held
    # back: nothing speakable yet), then waits; a speaks first
    p = await pool({"a": [ScriptedReply(content=["From A."], ttft_s=0.4)], "b": [ScriptedReply(content=['<imsagent_hangup endword="Bye."', "/>"], stall=Stall(after=1))]},
                   routing={"first_token_ms": 100})
    assert await p.say() == "From A."
    assert await p.ups["b"].wait_gone(0)
    record = await p.record()
    assert outcomes(record) == [("a", "won"), ("b", "lost")]
    assert hangups(record) == 0 and record["status"] != "hung_up"


async def test_no_hedge_starts_when_the_first_upstream_speaks_in_time(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(content=["A."])], "b": [HELLO]}, routing={"first_token_ms": 2000})
    assert await p.say() == "A."
    assert p.ups["b"].requests == []


# -- stalls ---------------------------------------------------------------------------


async def test_a_stalled_reply_is_continued_after_exactly_what_was_heard(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(content=["Hello, I can ", "never said"], stall=Stall(after=1), id="chatcmpl-A")],
                    "b": [ScriptedReply(content=["help you ", "today."], id="chatcmpl-B")]},
                   routing={"stall_ms": 200})
    stalls = metric("callgate_stalls_total")
    body = await p.raw({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    events = [e[len(b"data: "):] for e in body.split(b"\n\n") if e.startswith(b"data: ")]
    assert events[-1] == b"[DONE]" and events.count(b"[DONE]") == 1
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["id"] for c in chunks} == {"chatcmpl-A"}
    deltas = [ch["delta"] for c in chunks for ch in c["choices"]]
    assert sum("role" in d for d in deltas) == 1
    assert "".join(d.get("content") or "" for d in deltas) == "Hello, I can help you today."
    assert sum(1 for c in chunks for ch in c["choices"] if ch["finish_reason"]) == 1
    sent = p.ups["b"].requests[0].body["messages"]
    assert sent[-2] == {"role": "assistant", "content": "Hello, I can "}
    assert sent[-1] == {"role": "user", "content": p.services.config.routing.continue_prompt}
    assert await p.ups["a"].wait_gone(0)
    record = await p.record()
    assert outcomes(record) == [("a", "stalled"), ("b", "continued")]
    assert record["turns"][-1]["spoken_text"] == "Hello, I can help you today."
    assert metric("callgate_stalls_total") == stalls + 1


async def test_the_openai_client_hears_one_reply_across_a_continuation(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(content=["One, ", "two, "], stall=Stall(after=2))], "b": [ScriptedReply(content=["three."])]}, routing={"stall_ms": 150})
    assert await p.say() == "One, two, three."


async def test_no_continuation_after_a_hangup_and_no_second_hangup(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(content=["Thanks. ", HANGUP, " more"], stall=Stall(after=2))], "b": [ScriptedReply(content=["Bye again. ", HANGUP])]},
                   routing={"stall_ms": 150})
    heard = await p.say()
    assert heard == "Thanks. Bye."
    assert p.ups["b"].requests == []
    record = await p.record()
    assert hangups(record) == 1


async def test_a_hangup_in_the_continuation_fires_once(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(content=["Let me ", "x"], stall=Stall(after=1))], "b": [ScriptedReply(content=["check. ", HANGUP])]}, routing={"stall_ms": 150})
    assert await p.say() == "Let me check. Bye."
    await asyncio.sleep(0)
    record = await p.record()
    assert hangups(record) == 1
    assert outcomes(record) == [("a", "stalled"), ("b", "continued")]


async def test_a_half_received_command_is_dropped_at_the_stall(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(content=["Okay. ", '<imsagent_hangup endw', "x"], stall=Stall(after=2))], "b": [ScriptedReply(content=["Anything else?"])]},
                   routing={"stall_ms": 150})
    assert await p.say() == "Okay. Anything else?"
    assert p.ups["b"].requests[0].body["messages"][-2]["content"] == "Okay. "
    assert hangups(await p.record()) == 0


async def test_on_stall_error_sends_the_error_event(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(content=["Hello ", "x"], stall=Stall(after=1))], "b": [HELLO]}, routing={"stall_ms": 150, "on_stall": "error"})
    body = await p.raw({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert body.endswith(b"data: [DONE]\n\n") and b"upstream_stream_error" in body
    assert p.ups["b"].requests == []


async def test_a_stream_cut_mid_speech_is_continued(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(content=["Half a ", ""], cut=Cut(after=2))], "b": [ScriptedReply(content=["sentence."])]}, routing={"stall_ms": 500})
    assert await p.say() == "Half a sentence."
    assert outcomes(await p.record()) == [("a", "stalled"), ("b", "continued")]


# -- model mapping, usage and cost ----------------------------------------------------


async def test_models_are_mapped_per_upstream(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(status=503)], "b": [HELLO]},
                   entry={"a": {"models": {"gpt-4o": "my-azure-deployment"}}, "b": {"models": {"*": "mistral-large-latest"}}})
    await p.say(model="gpt-4o")
    assert p.ups["a"].requests[0].body["model"] == "my-azure-deployment"
    assert p.ups["b"].requests[0].body["model"] == "mistral-large-latest"
    assert [a["model"] for a in (await p.record())["turns"][0]["attempts"]] == ["my-azure-deployment", "mistral-large-latest"]


USAGE = {"prompt_tokens": 1000, "completion_tokens": 200, "prompt_tokens_details": {"cached_tokens": 400}}
PRICES = {"prices": {"gpt-4o": {"input_per_mtok": 2.5, "output_per_mtok": 10, "cached_input_per_mtok": 1.25}}}


async def test_usage_and_cost_are_in_the_record_the_conversation_and_the_metrics(pool: Any) -> None:
    p = await pool({"pa": [ScriptedReply(content=["Hello", " there."], usage=USAGE)]}, entry={"pa": PRICES})
    tokens, cost = metric("callgate_tokens_total", upstream="pa", kind="prompt"), metric("callgate_cost_usd_total", upstream="pa")
    async with p.client() as client:
        stream = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True,
                                                      extra_headers={"X-Call-Id": "c1"})
        chunks = [c async for c in stream]
    assert all(c.usage is None for c in chunks)  # callgate asked for it: the runtime does not get it
    assert p.ups["pa"].requests[0].body["stream_options"] == {"include_usage": True}
    record = await p.record()
    expected = (600 * 2.5 + 400 * 1.25 + 200 * 10) / 1e6
    attempt = record["turns"][0]["attempts"][0]
    assert attempt["usage"] == {"prompt_tokens": 1000, "completion_tokens": 200, "cached_tokens": 400}
    assert attempt["cost_usd"] == pytest.approx(expected)
    assert record["usage"] == attempt["usage"] and record["cost_usd"] == pytest.approx(expected)
    conv = Conversation.from_record(record)
    assert conv.usage == attempt["usage"] and conv.cost_usd == pytest.approx(expected)
    assert metric("callgate_tokens_total", upstream="pa", kind="prompt") == tokens + 1000
    assert metric("callgate_cost_usd_total", upstream="pa") == pytest.approx(cost + expected)


async def test_a_runtime_that_asked_for_usage_gets_the_chunk_as_sent(pool: Any) -> None:
    p = await pool({"pb": [ScriptedReply(content=["Hello", " there."], usage=USAGE)]})
    body = await p.raw({"model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": "hi"}]})
    assert b'"usage":{"prompt_tokens":1000' in body
    assert (await p.record())["cost_usd"] is None  # no price: unknown, never a made-up zero


async def test_a_cancelled_attempts_usage_is_unknown_not_zero(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(content=["Hello", " there."], ttft_s=5, usage=USAGE)], "b": [ScriptedReply(content=["Hello", " there."], usage=USAGE)]}, routing={"first_token_ms": 100})
    await p.say()
    attempts = (await p.record())["turns"][0]["attempts"]
    assert [a["usage"] for a in attempts] == [None, {"prompt_tokens": 1000, "completion_tokens": 200, "cached_tokens": 400}]


# -- non-streamed requests ------------------------------------------------------------


async def test_a_non_streamed_request_falls_back(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(status=503)], "b": [ScriptedReply(content=["Whole from B."])]})
    async with p.client() as client:
        out = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], extra_headers={"X-Call-Id": "c1"})
    assert out.choices[0].message.content == "Whole from B."
    assert outcomes(await p.record()) == [("a", "failed"), ("b", "won")]


async def test_a_non_streamed_request_is_hedged(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(content=["Slow."], ttft_s=5)], "b": [ScriptedReply(content=["Quick."])]}, routing={"first_token_ms": 100})
    async with p.client() as client:
        out = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], extra_headers={"X-Call-Id": "c1"})
    assert out.choices[0].message.content == "Quick."
    assert await p.ups["a"].wait_gone(0)


# -- the happy path and limits --------------------------------------------------------


async def test_chunks_without_commands_leave_byte_for_byte(pool: Any) -> None:
    plain = ScriptedReply(content=["Plain ", "words, ", "no commands."])
    p = await pool({"a": [plain], "b": [HELLO]}, routing={"first_token_ms": 1000, "stall_ms": 1000})
    body = await p.raw({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert body == stream_body(plain)  # role chunk, three pieces, finish, [DONE]: as the upstream wrote them


async def test_a_full_pool_answers_503(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(content=["x"], stall=Stall(after=0))]}, entry={"a": {"max_concurrent": 1}})
    first = asyncio.create_task(p.say(call_id="c1"))
    await p.ups["a"].wait_requests(1)
    with pytest.raises(openai.APIStatusError) as e:
        await p.say(call_id="c2")
    assert e.value.status_code == 503 and e.value.code == "upstreams_busy"
    p.ups["a"].release()
    assert await first == "x"


async def test_a_profile_routes_to_its_own_upstreams(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(content=["A."])], "b": [ScriptedReply(content=["B."])]}, profiles={"vip": {"upstreams": ["b"]}})
    async with p.client() as c:
        c2 = c.with_options(base_url=f"{p.url}/vip/v1")
        stream = await c2.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
        assert "".join([x.choices[0].delta.content or "" async for x in stream if x.choices]) == "B."
    assert p.ups["a"].requests == []


async def test_a_hedges_own_4xx_does_not_end_a_race_the_first_upstream_can_still_win(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(content=["From A."], ttft_s=0.3)], "b": [ScriptedReply(status=401)]}, routing={"first_token_ms": 100})
    assert await p.say() == "From A."
    assert outcomes(await p.record()) == [("a", "won"), ("b", "failed")]


async def test_a_hedge_that_fails_starts_the_next_upstream_at_once(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(content=["Hello", " there."], ttft_s=5)], "b": [ScriptedReply(status=503)], "c": [ScriptedReply(content=["From C."])]}, routing={"first_token_ms": 1000})
    assert await p.say() == "From C."
    a, b, c = (await p.record())["turns"][0]["attempts"]
    assert c["started_ms"] - b["started_ms"] < 500  # not another first_token_ms later
    assert [a["outcome"], b["outcome"], c["outcome"]] == ["lost", "failed", "won"]


async def test_a_stream_cut_after_its_head_counts_against_its_upstreams_health(pool: Any) -> None:
    p = await pool({"a": [ScriptedReply(content=["Half "], cut=Cut(after=1))]}, routing={"eject_after": 1})
    body = await p.raw({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert b"upstream_incomplete" in body
    assert p.services.pool.states()["a"]["state"] == "cooling"


async def test_a_reload_carries_each_kept_upstreams_requests_in_flight_and_health(pool: Any, tmp_path: Path) -> None:
    """Issue 27, bug 11: a reload began a new pool at zero requests in flight (each
    ``max_concurrent`` briefly doubled) and with its health forgotten. An upstream kept
    under its name and ``base_url`` keeps both: a request released after the reload is
    counted down once, never below zero; one whose ``base_url`` changed is another
    server and starts over."""
    from proxy.server.reload import reload

    p = await pool({"a": [ScriptedReply(content=["x"], stall=Stall(after=0)), ScriptedReply(content=["y"])], "c": [ScriptedReply(status=503)]},
                   routing={"eject_after": 1}, entry={"a": {"max_concurrent": 1}})
    first = asyncio.create_task(p.say(call_id="c1"))
    await p.ups["a"].wait_requests(1)
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    await p.raw(body, call_id="c2")  # a is full: c is tried, fails and cools
    assert {n: (v["state"], v["in_flight"]) for n, v in p.services.pool.states().items()} == {"a": ("ok", 1), "c": ("cooling", 0)}

    def config(c_url: str) -> Path:
        a = p.services.config.pool[0]
        data = {"upstreams": [{"name": "a", "base_url": a.base_url, "timeout_s": 5, "max_concurrent": 1},
                              {"name": "c", "base_url": c_url, "timeout_s": 5}],
                "routing": {"eject_after": 1}, "storage": {"path": str(tmp_path / "cg.db")}}
        (tmp_path / "c.yaml").write_text(json.dumps(data))
        return tmp_path / "c.yaml"

    old = p.services.pool
    assert await reload(p.services, str(config(old.entries["c"].base_url)))
    assert p.services.pool is not old
    assert {n: (v["state"], v["in_flight"]) for n, v in p.services.pool.states().items()} == {"a": ("ok", 1), "c": ("cooling", 0)}
    await p.raw(body, call_id="c3")
    assert len(p.ups["a"].requests) == 1  # still full after the reload: not asked a second time
    p.ups["a"].release()
    assert await first == "x"  # released under the old pool, counted down in the new
    assert p.services.pool.states()["a"]["in_flight"] == 0
    assert await p.say(call_id="c4") == "y"
    assert p.services.pool.states()["a"]["in_flight"] == 0
    # c now points elsewhere: another server, whose health starts over
    assert await reload(p.services, str(config(old.entries["a"].base_url)))
    assert p.services.pool.states()["c"]["state"] == "ok"


# -- the reply machine's bugs (issue 27) ------------------------------------------------


async def test_on_stall_error_detects_the_stall_and_does_not_wait_for_the_upstream(pool: Any) -> None:
    """Bug 4: ``on_stall: error`` turned stall detection off; the runtime waited for the
    stalled upstream's own timeout (60 s here) instead of the error event at stall_ms."""
    p = await pool({"a": [ScriptedReply(content=["Hello ", "x"], stall=Stall(after=1))]}, routing={"stall_ms": 150, "on_stall": "error"},
                   entry={"a": {"timeout_s": 60}})
    stalled = metric("callgate_upstream_errors_total", kind="stalled")
    body = await asyncio.wait_for(p.raw({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}), 30)
    assert body.endswith(b"data: [DONE]\n\n") and b"upstream_stream_error" in body
    turn = (await p.record())["turns"][-1]
    assert turn["status"] == "upstream_error" and "went silent for 150" in turn["error"]
    assert metric("callgate_upstream_errors_total", kind="stalled") == stalled + 1
    p.ups["a"].release()


TRANSFER_CMD = '<imsagent_transfer_call callee="+15551234567" msg="Please hold."/>'


async def test_a_reply_is_continued_after_a_transfer_and_the_transfer_is_never_emitted_again(pool: Any) -> None:
    """Bug 5: a transfer stopped continuations (the runtime heard "…Please hold" and a
    clean finish); only a hangup ends them. The continuation's own transfer is a second
    one: rejected, not emitted."""
    p = await pool({"a": [ScriptedReply(content=["One moment. ", TRANSFER_CMD, " more"], stall=Stall(after=2))],
                    "b": [ScriptedReply(content=["I am connecting you. ", TRANSFER_CMD])]},
                   routing={"stall_ms": 150})
    heard = await p.say()
    assert heard.startswith("One moment. Please hold.I am connecting you.")
    assert len(p.ups["b"].requests) == 1
    record = await p.record()
    assert [e["type"] for e in record["events"]].count("transfer") == 1
    assert outcomes(record) == [("a", "stalled"), ("b", "continued")]
    p.ups["a"].release()


async def test_an_attempt_held_past_max_held_bytes_is_adopted_as_it_is(pool: Any) -> None:
    """Bug 12: a hedged attempt kept its whole pre-speech output (a reasoning model's
    thinking) until it spoke; past limits.max_held_bytes it is adopted instead."""
    thinking = ["<think>" + "x" * 600] + ["y" * 600] * 4 + ["</think>", "Finally."]
    p = await pool({"a": [ScriptedReply(content=thinking, interval_s=0.05)], "b": [ScriptedReply(ttft_s=5, content=["Slow B."])]},
                   routing={"first_token_ms": 5000}, limits={"max_held_bytes": 2048})
    hits = metric("callgate_limit_hits_total", limit="max_held_bytes")
    assert (await p.say()).endswith("Finally.")
    assert metric("callgate_limit_hits_total", limit="max_held_bytes") == hits + 1
