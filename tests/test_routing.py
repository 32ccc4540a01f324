"""The pool's sans-IO decisions (proxy/core/routing.py): the health table, what is
retried, attempt and continuation bodies, usage and cost."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core import routing
from proxy.core.routing import (
    Health,
    Price,
    Usage,
    UpstreamState,
    continuation_body,
    cost_usd,
    retry_after_s,
    retryable,
    usage_of,
    usage_totals,
)


def test_failures_in_a_row_eject_then_one_probe_brings_it_back() -> None:
    h = Health(["a"], eject_after=3, cooldown_s=30)
    assert h.failed("a", 0) is UpstreamState.OK
    h.succeeded("a")  # a success starts the count again
    assert [h.failed("a", t) for t in (1, 2, 3)] == [UpstreamState.OK, UpstreamState.OK, UpstreamState.COOLING]
    assert h.state("a", 13) == (UpstreamState.COOLING, 20)
    assert not h.available("a", 32.9)
    assert h.available("a", 33)
    h.begin("a", 33)
    assert h.state("a", 33)[0] is UpstreamState.PROBING and not h.available("a", 33)  # one request only
    h.end("a")
    h.succeeded("a")
    assert h.state("a", 34) == (UpstreamState.OK, 0.0)


def test_a_failed_probe_cools_again_at_once() -> None:
    h = Health(["a"], eject_after=3, cooldown_s=10)
    for t in (0, 0, 0):
        h.failed("a", t)
    h.begin("a", 10)
    assert h.failed("a", 10) is UpstreamState.COOLING
    assert h.state("a", 10) == (UpstreamState.COOLING, 10)


def test_retry_after_cools_for_that_long_even_below_eject_after() -> None:
    h = Health(["a"], eject_after=3, cooldown_s=30)
    assert h.failed("a", 100, retry_after_s=5) is UpstreamState.COOLING
    assert h.state("a", 101) == (UpstreamState.COOLING, 4)


def test_in_flight_counts() -> None:
    h = Health(["a"], eject_after=3, cooldown_s=30)
    h.begin("a", 0)
    h.begin("a", 0)
    h.end("a")
    assert h.in_flight("a") == 1


@pytest.mark.parametrize("status,moves", [(408, True), (409, True), (429, True), (500, True), (503, True), (529, True),
                                          (400, False), (401, False), (403, False), (404, False), (422, False)])
def test_what_moves_to_the_next_upstream(status: int, moves: bool) -> None:
    assert retryable(status) is moves


def test_retry_after_in_seconds_ms_or_a_date() -> None:
    assert retry_after_s({"Retry-After": "7"}, 0) == 7
    assert retry_after_s({"retry-after-ms": "1500", "Retry-After": "9"}, 0) == 1.5
    assert retry_after_s({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 1445412470) == 10
    assert retry_after_s({"Retry-After": "soon"}, 0) is None
    assert retry_after_s({}, 0) is None


RAW = b'{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}'


def attempt_body(raw: bytes, **kw: Any) -> tuple[bytes, Any, bool]:
    """The core's attempt_body with the body parsed here, as the relay parses it once."""
    return routing.attempt_body(raw, json.loads(raw), **kw)


def test_an_unmapped_stream_gets_include_usage_written_into_its_bytes() -> None:
    body, model, added = attempt_body(RAW, models={}, drop=frozenset(), include_usage=True)
    assert body == b'{"stream_options":{"include_usage":true},' + RAW[1:]
    assert (model, added) == ("gpt-4o", True)
    assert attempt_body(RAW, models={}, drop=frozenset(), include_usage=False) == (RAW, "gpt-4o", False)


def test_a_runtime_that_asked_for_usage_is_left_alone() -> None:
    raw = b'{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}'
    assert attempt_body(raw, models={}, drop=frozenset(), include_usage=True) == (raw, "m", False)


def test_models_are_mapped_and_star_catches_the_rest() -> None:
    body, model, _ = attempt_body(RAW, models={"gpt-4o": "dep-1"}, drop=frozenset(), include_usage=False)
    assert json.loads(body)["model"] == model == "dep-1"
    _, model, _ = attempt_body(RAW, models={"other": "x", "*": "fallback"}, drop=frozenset(), include_usage=False)
    assert model == "fallback"
    _, model, _ = attempt_body(RAW, models={"other": "x"}, drop=frozenset(), include_usage=False)
    assert model == "gpt-4o"


def test_stream_options_null_is_replaced_not_doubled() -> None:
    # bug 10: "stream_options": null got a second key in front and the later null won
    raw = b'{"model":"m","stream":true,"stream_options":null,"messages":[]}'
    body, _, added = attempt_body(raw, models={}, drop=frozenset(), include_usage=True)
    assert added and body.count(b"stream_options") == 1
    assert json.loads(body)["stream_options"] == {"include_usage": True}


def test_a_non_stream_gets_no_stream_options() -> None:
    raw = b'{"model":"m","messages":[]}'
    assert attempt_body(raw, models={}, drop=frozenset(), include_usage=True) == (raw, "m", False)


def test_the_continuation_request_ends_with_the_heard_text_and_the_prompt() -> None:
    raw, parsed = continuation_body(json.loads(RAW), "Hello, I ", "Continue.")
    out = json.loads(raw)
    assert out == parsed
    assert out["messages"][-2:] == [{"role": "assistant", "content": "Hello, I "}, {"role": "user", "content": "Continue."}]
    assert out["messages"][0] == {"role": "user", "content": "hi"}


def test_usage_of_reads_openais_shape_only() -> None:
    assert usage_of({"usage": {"prompt_tokens": 10, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 4}}}) == Usage(10, 3, 4)
    assert usage_of({"usage": {"prompt_tokens": 10, "completion_tokens": 3}}) == Usage(10, 3, 0)
    assert usage_of({"usage": None}) is None
    assert usage_of({"usage": {"input_tokens": 1}}) is None
    assert usage_of([]) is None


def test_cost_counts_cached_tokens_at_their_price() -> None:
    price = Price(2.5, 10, 1.25)
    assert cost_usd(Usage(1_000_000, 0, 0), price) == 2.5
    assert cost_usd(Usage(1000, 200, 400), price) == pytest.approx((600 * 2.5 + 400 * 1.25 + 200 * 10) / 1e6)
    assert cost_usd(Usage(1000, 0, 400), Price(2.5, 10)) == pytest.approx(1000 * 2.5 / 1e6)
    assert cost_usd(None, price) is None and cost_usd(Usage(1, 1), None) is None


def test_totals_are_unknown_until_something_is_known() -> None:
    assert usage_totals([{"usage": None, "cost_usd": None}]) == (None, None)
    u = {"prompt_tokens": 1, "completion_tokens": 2, "cached_tokens": 0}
    assert usage_totals([{"usage": u, "cost_usd": 0.5}, {"usage": u, "cost_usd": None}]) == (
        {"prompt_tokens": 2, "completion_tokens": 4, "cached_tokens": 0}, 0.5)


@given(st.lists(st.sampled_from(["fail", "ok", "retry_after"]), max_size=40))
def test_any_history_leaves_one_known_state(events: list[str]) -> None:
    h = Health(["a"], eject_after=2, cooldown_s=5)
    now = 0.0
    for e in events:
        now += 1
        if h.available("a", now):
            h.begin("a", now)
        if e == "ok":
            h.succeeded("a")
        else:
            h.failed("a", now, 3 if e == "retry_after" else None)
        h.end("a")
        state, left = h.state("a", now)
        assert state in UpstreamState and 0 <= left <= 5


def test_a_continuations_chunks_carry_the_first_id_and_no_role() -> None:
    from proxy.core.outputs import Forward, Rewrite, Speech, continued, encode, finish
    from proxy.core.sse import SSEDecoder

    def chunk(cid: str, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        obj = {"id": cid, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    events = SSEDecoder().feed(chunk("B", {"role": "assistant", "content": ""}) + chunk("B", {"content": "more"}) + chunk("B", {}, "stop") + b"data: [DONE]\n\n")
    items = [Forward(e, json.loads(e.data) if e.data and e.data != "[DONE]" else None) for e in events] + [Speech("more")]
    out = continued(items, "A")
    assert out[-1] == Speech("more") and all(type(o) in (Rewrite, Forward, Speech) for o in out)
    data = encode(out)
    sent = [json.loads(e[6:]) for e in data.split(b"\n\n") if e.startswith(b"data: {")]
    assert [(e["id"], e["choices"][0]["delta"], e["choices"][0]["finish_reason"]) for e in sent] == [("A", {"content": "more"}, None), ("A", {}, "stop")]
    assert data.endswith(b"data: [DONE]\n\n")
    obj = json.loads(encode([finish("A")])[6:])
    assert obj["id"] == "A" and obj["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
