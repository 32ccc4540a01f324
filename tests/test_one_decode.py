"""The relay decodes once (issue 27): one JSON decode per upstream event and one parse
of the request body per request, whatever the number of attempts (a hedge and a
continuation included); and an attempt adopted after the call hung up elsewhere does
not speak its refused hangup (its held events are inspected again, not decoded again)."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest

from proxy.calls.model import Call
from proxy.calls.registry import OneHangupPerCall
from proxy.config import parse_config
from proxy.core import json_codec
from proxy.core.commands import RejectedCommand
from proxy.core.inspector import InspectorSettings
from proxy.core.outputs import commands_of, encode
from proxy.core.sse import SSEDecoder
from proxy.server.relay.attempt import Attempt, DeferredPolicy

from proxy.demo.scripted_upstream import ScriptedReply, Stall
from .test_pool import pool  # noqa: F401  (the fixture)


def _sse(pieces: list[str]) -> bytes:
    return b"".join(
        b"data: " + json.dumps({"id": "c", "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}).encode() + b"\n\n"
        for p in pieces
    )


def test_a_winner_adopted_after_the_call_hung_up_does_not_speak_its_hangup() -> None:
    """Bug 6: a hedged attempt's hangup, allowed when found, refused at adoption (the
    call hung up meanwhile): its endword was spoken and a hangup event emitted."""
    entry = parse_config({"upstream": {"base_url": "http://127.0.0.1:1/v1"}}).pool[0]
    call = Call("c-6")
    real = OneHangupPerCall(call)
    a = Attempt(0, entry, b"", "m", False, time.perf_counter())
    a.policy = DeferredPolicy(real)
    a.inspector = a._inspector(InspectorSettings(), a.policy)
    decodes = []
    original = json_codec.loads

    def counting(data: Any) -> Any:
        decodes.append(data)
        return original(data)

    json_codec.loads = counting  # type: ignore[assignment]
    try:
        for ev in SSEDecoder().feed(_sse(["Thanks. ", '<imsagent_hangup endword="Bye."/>'])):
            a._hold(ev)
        assert real.refuse_hangup("text_command", True) is None  # another reply of the call hung up meanwhile
        held = a.take_held()
    finally:
        json_codec.loads = original  # type: ignore[assignment]
    assert b"Bye." not in encode(held) and b"Thanks. " in encode(held)
    [cmd] = commands_of(held)
    assert isinstance(cmd, RejectedCommand) and cmd.code == "duplicate_hangup"
    assert len(decodes) == 2  # inspected again from the decoded events


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Counter[bytes]:
    """Every JSON decode in the process, by its input: orjson's and the standard library's."""
    seen: Counter[bytes] = Counter()
    std = json.loads
    fast = json_codec.loads

    def key(data: Any) -> bytes:
        return data.encode() if isinstance(data, str) else bytes(data)

    def std_loads(data: Any, *a: Any, **kw: Any) -> Any:
        seen[key(data)] += 1
        return std(data, *a, **kw)

    def fast_loads(data: Any) -> Any:
        seen[key(data)] += 1
        return fast(data)

    monkeypatch.setattr(json, "loads", std_loads)
    monkeypatch.setattr(json_codec, "loads", fast_loads)
    return seen


async def test_one_decode_per_upstream_event_and_one_parse_of_the_body(pool: Any, decodes: Counter[bytes]) -> None:  # noqa: F811
    # a: silent past first_token_ms (the hedge b starts), then speaks first and stalls;
    # b: loses; the continuation tries b again (silent: hedged) and c continues.
    p = await pool({"a": [ScriptedReply(ttft_s=0.3, content=["Hello, I can ", "x"], stall=Stall(after=1), id="A")],
                    "b": [ScriptedReply(ttft_s=5, content=["Slow."], id="B1"), ScriptedReply(ttft_s=5, content=["Slow."], id="B2")],
                    "c": [ScriptedReply(content=["help you ", "today."], usage={"prompt_tokens": 5, "completion_tokens": 4}, id="C")]},
                   routing={"first_token_ms": 100, "stall_ms": 200, "max_attempts": 2})
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "system", "content": "Be brief. " * 200},
                                                            {"role": "user", "content": "hi"}]}
    raw = json.dumps(body).encode()
    decodes.clear()
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.post(f"{p.url}/v1/chat/completions", data=raw, headers={"X-Call-Id": "c1", "Content-Type": "application/json"}) as r:
            out = await r.read()
    seen = Counter(decodes)  # before this test decodes the answer itself
    said = "".join(ch["delta"].get("content") or "" for e in out.split(b"\n\n") if e.startswith(b"data: {")
                   for ch in json.loads(e[6:]).get("choices", []))
    assert said == "Hello, I can help you today.", out
    assert seen[raw] == 1, "the request body is parsed once, whatever the attempts"
    upstream_events = [k for k in seen if k.startswith(b"{\"id\"")]  # the chunks (the upstreams parse their requests too)
    assert len(upstream_events) >= 8 and all(seen[k] == 1 for k in upstream_events), {k[:60]: n for k, n in seen.items() if n > 1}
    record = await p.record()
    assert [(a["upstream"], a["outcome"]) for a in record["turns"][0]["attempts"]] == [
        ("a", "stalled"), ("b", "lost"), ("b", "lost"), ("c", "continued"),
    ]
