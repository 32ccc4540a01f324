"""The scripted upstream the tests, the demo and the benchmarks share
(proxy/demo/scripted_upstream.py, proxy/demo/behaviours.py), against a real aiohttp
client on 127.0.0.1: each behaviour written as data does what it says, and what it
served is counted exactly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from proxy.demo.behaviours import DONE, FOREVER, Cut, ScriptedReply, Stall, completion, stream_body
from proxy.demo.scripted_upstream import ScriptedUpstream, by_last_message, serve_app

HELLO = ScriptedReply(content=["Hel", "lo."])


def chat(said: str = "hi", stream: bool = True, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "stream": stream, "messages": [{"role": "user", "content": said}], **extra}


@pytest.fixture
async def up() -> AsyncIterator[Any]:
    """``await up(script, **kw)``: a served :class:`ScriptedUpstream`; ``.post(body)``
    returns (status, headers, body bytes); ``.url``."""
    async with contextlib.AsyncExitStack() as stack, aiohttp.ClientSession() as http:

        async def start(script: Any, **kw: Any) -> ScriptedUpstream:
            upstream = ScriptedUpstream(script, **kw)
            url = await stack.enter_async_context(serve_app(upstream.app()))

            async def post(body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
                async with http.post(f"{url}/v1/chat/completions", json=body, headers=headers) as r:
                    return r.status, r.headers, await r.read()

            upstream.post = post  # type: ignore[attr-defined]
            upstream.url, upstream.http = url, http  # type: ignore[attr-defined]
            return upstream

        yield start


def events(body: bytes) -> list[bytes]:
    return [e[len(b"data: "):] for e in body.split(b"\n\n") if e.startswith(b"data: ")]


async def test_replies_go_in_order_the_last_repeats_and_every_request_is_recorded(up: Any) -> None:
    u = await up([ScriptedReply(content=["one"]), ScriptedReply(content=["two"])])
    said = [await u.post(chat(f"turn {i}"), {"X-Call-Id": f"c{i}"}) for i in range(3)]
    assert [json.loads(events(b)[1])["choices"][0]["delta"]["content"] for _, _, b in said] == ["one", "two", "two"]
    assert [s.index for s in u.requests] == [0, 1, 2] and u.count == 3
    assert [s.body["messages"][-1]["content"] for s in u.requests] == ["turn 0", "turn 1", "turn 2"]
    assert u.requests[1].headers["x-call-id"] == "c1" and u.requests[1].path == "/v1/chat/completions"
    assert json.loads(u.requests[2].raw) == chat("turn 2")
    assert [(s.pieces, s.whole, s.gone) for s in u.served] == [(1, True, False)] * 3
    assert u.pieces_sent == 3


async def test_a_stream_is_the_encoded_reply_byte_for_byte_and_usage_only_when_asked(up: Any) -> None:
    reply = ScriptedReply(reasoning=["Think."], content=["Hi"], tool_calls=[{"index": 0, "id": "t1", "function": {"name": "f", "arguments": "{}"}}],
                          usage={"prompt_tokens": 3, "completion_tokens": 2}, finish_reason="tool_calls")
    u = await up([reply])
    _, headers, plain = await u.post(chat())
    _, _, with_usage = await u.post(chat(stream_options={"include_usage": True}))
    assert headers["Content-Type"] == "text/event-stream"
    assert plain == stream_body(reply) and with_usage == stream_body(reply, usage_asked=True)
    chunks = [json.loads(e) for e in events(plain)[:-1]]
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""}, {"reasoning_content": "Think."}, {"content": "Hi"},
        {"tool_calls": [{"index": 0, "id": "t1", "function": {"name": "f", "arguments": "{}"}}]}, {},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls" and events(plain)[-1] == b"[DONE]"
    assert json.loads(events(with_usage)[-2]) == {**{k: chunks[0][k] for k in ("id", "object", "created", "model")}, "choices": [],
                                                 "usage": {"prompt_tokens": 3, "completion_tokens": 2}}


async def test_a_request_not_streamed_or_a_whole_reply_gets_one_completion(up: Any) -> None:
    u = await up([ScriptedReply(content=["Who", "le."], usage={"total_tokens": 2}), ScriptedReply(content=["JSON."], whole=True)])
    status, headers, body = await u.post(chat(stream=False))
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == completion(ScriptedReply(content=["Who", "le."], usage={"total_tokens": 2}))
    assert json.loads(body)["choices"][0]["message"]["content"] == "Whole."
    _, _, body = await u.post(chat(stream=True))
    assert json.loads(body)["choices"][0]["message"]["content"] == "JSON."


async def test_an_error_status_with_its_headers_and_body(up: Any) -> None:
    u = await up([ScriptedReply(status=429, headers={"Retry-After": "7"}), ScriptedReply(status=502, raw=b"<html>bad</html>", content_type="text/html")],
                 name="a")
    status, headers, body = await u.post(chat())
    assert (status, headers["Retry-After"], json.loads(body)["error"]["message"]) == (429, "7", "a says 429")
    status, headers, body = await u.post(chat())
    assert (status, headers["Content-Type"], body) == (502, "text/html", b"<html>bad</html>")


async def test_raw_bytes_are_written_as_given_in_their_pieces(up: Any) -> None:
    data = stream_body(HELLO)
    u = await up([ScriptedReply(raw=data, split_at=[5, 40, 41, 9999])])
    assert (await u.post(chat()))[2] == data
    assert u.served[0].pieces == 4


@pytest.mark.parametrize(("cut", "expected"), [
    (Cut(after=1), stream_body(ScriptedReply(content=["Hel"], finish_reason=None, done=False))),
    (Cut(at_byte=200), stream_body(HELLO)[:200]),
])
async def test_a_cut_ends_the_body_early_and_cleanly(up: Any, cut: Cut, expected: bytes) -> None:
    u = await up([ScriptedReply(content=["Hel", "lo."], cut=cut)])
    status, _, body = await u.post(chat())
    assert status == 200 and body == expected and DONE not in body
    assert u.served[0].whole and not u.served[0].gone


async def test_a_cut_that_closes_the_connection_is_a_broken_transfer(up: Any) -> None:
    u = await up([ScriptedReply(content=["Hel", "lo."], cut=Cut(after=1, close=True))])
    got = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with u.http.post(f"{u.url}/v1/chat/completions", json=chat()) as r:
            async for data in r.content.iter_any():
                got += data
    assert got == stream_body(ScriptedReply(content=["Hel"], finish_reason=None, done=False))
    assert not await u.wait_gone(0)


async def test_a_stall_holds_the_pieces_after_it_until_released(up: Any) -> None:
    u = await up([ScriptedReply(content=["Hel", "lo."], stall=Stall(after=1))])
    async with u.http.post(f"{u.url}/v1/chat/completions", json=chat()) as r:
        got = b""
        while b"Hel" not in got:
            got += await r.content.readany()
        async with asyncio.timeout(5):
            while u.served[0].pieces < 1:  # counted when the stall begins
                await asyncio.sleep(0)
        assert u.served[0].pieces == 1 and not u.served[0].ended.is_set() and not r.content.is_eof()
        u.release()
        got += await r.read()
    assert got == stream_body(ScriptedReply(content=["Hel", "lo."]))


async def test_a_timed_stall_and_the_pacing(up: Any) -> None:
    reply = ScriptedReply(content=["a", "b", "c"], head_delay_s=0.05, ttft_s=0.05, interval_s=0.05, stall=Stall(after=2, seconds=0.1))
    u = await up([reply])
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert (await u.post(chat()))[2] == stream_body(reply)
    # head 0.05, first piece 0.05 later, the second 0.05 after it, the stall 0.1, the third at once
    assert loop.time() - began >= 0.245


async def test_a_client_that_leaves_is_counted_gone(up: Any) -> None:
    u = await up([ScriptedReply(content=["x"] * 1000, interval_s=0.01), HELLO])
    async with u.http.post(f"{u.url}/v1/chat/completions", json=chat()) as r:
        await r.content.readany()
    assert await u.wait_gone(0)
    assert 0 < u.served[0].pieces < 1000 and u.pieces_sent == u.served[0].pieces
    await u.post(chat())
    assert not await u.wait_gone(1)


async def test_a_wait_forever_before_the_head_ends_at_release(up: Any) -> None:
    u = await up([ScriptedReply(content=["x"], head_delay_s=FOREVER)])
    pending = asyncio.create_task(u.post(chat()))
    await u.wait_requests(1)
    assert not pending.done()
    u.release()
    assert (await pending)[0] == 200


async def test_by_last_message(up: Any) -> None:
    u = await up(by_last_message({"bye": ScriptedReply(content=["Bye."])}, HELLO))
    assert b'"Bye."' in (await u.post(chat("bye")))[2]
    assert (await u.post(chat("hello")))[2] == stream_body(HELLO)


async def test_stamps_carry_the_send_and_arrival_times(up: Any) -> None:
    u = await up([ScriptedReply(content=["word"] * 3, stamp=True)])
    stamps = [re.match(rb't(\d+)(?: r(\d+))? word$', json.loads(e)["choices"][0]["delta"]["content"].encode())
              for e in events((await u.post(chat()))[2])[1:4]]
    assert all(stamps) and stamps[0].group(2) and not stamps[1].group(2)  # type: ignore[union-attr]
    sent = [int(m.group(1)) for m in stamps]  # type: ignore[union-attr]
    assert int(stamps[0].group(2)) <= sent[0] <= sent[1] <= sent[2]  # type: ignore[union-attr]


async def test_strict_refuses_unknown_fields_as_openai_does(up: Any) -> None:
    u = await up([HELLO], strict=True)
    status, _, body = await u.post(chat(extendData={"x": 1}))
    assert status == 400 and json.loads(body)["error"]["message"] == "Unrecognized request argument supplied: extendData"


async def test_models_lists_or_answers_a_reply(up: Any) -> None:
    u = await up([HELLO], models=["a", "b"])
    async with u.http.get(f"{u.url}/v1/models") as r:
        assert [m["id"] for m in (await r.json())["data"]] == ["a", "b"]
    e = await up([HELLO], models=ScriptedReply(status=503, headers={"Retry-After": "1"}))
    async with e.http.get(f"{e.url}/v1/models") as r:
        assert r.status == 503 and r.headers["Retry-After"] == "1"
