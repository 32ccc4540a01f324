"""Upstream URLs and keys as providers need them (issue 17, items 5 and 6): a base URL
with a query string (Azure classic's ``?api-version=``), ``upstream.api_key_header:
api-key``, ``upstream.headers``, the base URLs ``callgate check`` refuses, and an
upstream error answer's ``Retry-After``/``retry-after-ms``/``x-ratelimit-*`` kept on the
way to the runtime.

Against real aiohttp upstreams on 127.0.0.1 (an Azure-like one that answers only at
its deployment's path, with its query and key), with the official ``openai`` client as
the runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from proxy.cli import main
from proxy.config import parse_config
from proxy.demo.scripted_upstream import ScriptedReply, ScriptedUpstream
from proxy.errors import ConfigError
from proxy.server.relay.upstream import upstream_url

from .conftest import serve_app
from .test_proxy import PLAIN, client, raw_post, speak

DEPLOYMENT = "/openai/deployments/gpt-4o"
API_VERSION = "api-version=2024-10-21"
# callgate's own keys (at least 16 characters)
RUNTIME_KEY = "sk-cg-runtime-0123456789"
AUTH = {"keys": [{"name": "runtime", "key": RUNTIME_KEY, "scopes": ["relay"]}]}


class AzureClassic:
    """An upstream shaped like Azure OpenAI's classic deployment API: the scripted
    upstream's ``POST <DEPLOYMENT>/chat/completions`` and ``GET <DEPLOYMENT>/models``
    behind Azure's checks: ``?api-version=2024-10-21``, ``api-key: k`` and no
    ``Authorization`` (anything else: 404 or 401, as Azure does). ``seen``: every
    request's method, path, query and headers."""

    def __init__(self, reply: ScriptedReply = PLAIN) -> None:
        self.upstream = ScriptedUpstream([reply], models=["gpt-4o"])
        self.seen: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        @web.middleware
        async def azure(request: web.Request, handler: Any) -> web.StreamResponse:
            self.seen.append({"method": request.method, "path": request.path, "query": request.query_string, "headers": dict(request.headers)})
            if request.query_string != API_VERSION or request.match_info.http_exception is not None:
                return web.json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)
            if request.headers.get("api-key") != "k" or "Authorization" in request.headers:
                return web.json_response({"error": {"code": "401", "message": "Access denied due to invalid subscription key"}}, status=401)
            return await handler(request)  # type: ignore[no-any-return]

        app = web.Application(middlewares=[azure])
        app.add_routes(self.upstream.routes(DEPLOYMENT))
        return app


AZURE_KEY = {"api_key": "k", "api_key_header": "api-key"}


# -- the base URL's query string, the api-key header ----------------------------------

@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
async def test_azure_classic_url_and_api_key_header(stack: Any, stream: bool) -> None:
    azure = AzureClassic()
    async with serve_app(azure.app()) as up:
        s = await stack([], upstream_url=f"{up}{DEPLOYMENT}?{API_VERSION}", upstream=AZURE_KEY)
        # the runtime's own Authorization (the openai client's) and api-key do not override the configured key
        c = client(s.url, "call-azure").with_options(default_headers={"api-key": "runtime-api-key"})
        if stream:
            heard, _, finish = await speak(c)
        else:
            done = await c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            heard, finish = done.choices[0].message.content, done.choices[0].finish_reason
    assert (heard, finish) == ("Hello, how can I help?", "stop")
    [got] = azure.seen
    assert (got["method"], got["path"], got["query"]) == ("POST", f"{DEPLOYMENT}/chat/completions", API_VERSION)
    assert got["headers"]["api-key"] == "k"
    assert "authorization" not in {k.lower() for k in got["headers"]}
    assert (await s.record("call-azure"))["turns"][0]["status"] == "ok"


async def test_models_at_the_azure_path(stack: Any) -> None:
    azure = AzureClassic()
    async with serve_app(azure.app()) as up:
        s = await stack([], upstream_url=f"{up}{DEPLOYMENT}/?{API_VERSION}", upstream=AZURE_KEY)  # a trailing slash too
        models = await client(s.url).models.list()
        profile_models = await client(s.url + "/ims").models.list()
    assert [m.id for m in models.data] == [m.id for m in profile_models.data] == ["gpt-4o"]
    assert [(g["method"], g["path"], g["query"]) for g in azure.seen] == [("GET", f"{DEPLOYMENT}/models", API_VERSION)] * 2
    for got in azure.seen:
        assert got["headers"]["api-key"] == "k" and "authorization" not in {k.lower() for k in got["headers"]}


@pytest.mark.parametrize(
    ("base", "path", "url"),
    [
        ("https://x.openai.azure.com/openai/deployments/gpt-4o?api-version=2024-10-21", "/chat/completions",
         "https://x.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"),
        ("https://x.openai.azure.com/openai/deployments/gpt-4o/?api-version=2024-10-21", "/models",
         "https://x.openai.azure.com/openai/deployments/gpt-4o/models?api-version=2024-10-21"),
        ("https://api.openai.com/v1", "/chat/completions", "https://api.openai.com/v1/chat/completions"),
        ("https://api.openai.com/v1/", "/models", "https://api.openai.com/v1/models"),
        ("http://127.0.0.1:8000", "/chat/completions", "http://127.0.0.1:8000/chat/completions"),
        ("http://h/a%20b/v1?x=1&y=%2B+z", "/models", "http://h/a%20b/v1/models?x=1&y=%2B+z"),
    ],
)
def test_the_path_goes_before_the_query_string(base: str, path: str, url: str) -> None:
    assert str(upstream_url(base, path)) == url


# -- whose credentials go upstream ------------------------------------------------------

async def test_with_auth_keys_the_runtime_credentials_never_go_upstream(stack: Any) -> None:
    azure = AzureClassic()
    async with serve_app(azure.app()) as up:
        s = await stack([], upstream_url=f"{up}{DEPLOYMENT}?{API_VERSION}", upstream=AZURE_KEY, auth=AUTH)
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
        for key_header in ({"Authorization": f"Bearer {RUNTIME_KEY}"}, {"api-key": RUNTIME_KEY}):
            status, got = await raw_post(s.url, "/v1/chat/completions", body, {**key_header, "Content-Type": "application/json"})
            assert status == 200, got
        # callgate's key as Authorization and another api-key besides
        both = {"Authorization": f"Bearer {RUNTIME_KEY}", "api-key": "runtime-api-key", "Content-Type": "application/json"}
        status, got = await raw_post(s.url, "/v1/chat/completions", body, both)
        assert status == 200, got
    assert len(azure.seen) == 3
    for got in azure.seen:
        assert got["headers"]["api-key"] == "k" and "authorization" not in {k.lower() for k in got["headers"]}
        assert all(RUNTIME_KEY not in v and v != "runtime-api-key" for v in got["headers"].values())


async def test_with_auth_keys_and_no_upstream_key_no_credentials_go_upstream(stack: Any) -> None:
    s = await stack([PLAIN], upstream={"api_key_header": "api-key"}, auth=AUTH)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    for key_header in ({"Authorization": f"Bearer {RUNTIME_KEY}"}, {"api-key": RUNTIME_KEY}):
        status, _ = await raw_post(s.url, "/v1/chat/completions", body, {**key_header, "Content-Type": "application/json"})
        assert status == 200
    for got in s.upstream.requests:
        assert {k.lower() for k in got.headers} & {"authorization", "api-key"} == set()


async def test_an_upstream_key_replaces_both_runtime_credentials(stack: Any) -> None:
    s = await stack([PLAIN], upstream={"api_key": "sk-upstream"})
    c = client(s.url).with_options(default_headers={"api-key": "runtime-api-key"})
    await speak(c)
    got = s.upstream.requests[0].headers
    assert got["Authorization"] == "Bearer sk-upstream"
    assert "api-key" not in {k.lower() for k in got}


# -- upstream.headers -------------------------------------------------------------------

async def test_extra_headers_arrive_on_every_request(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLGATE_TEST_ORG", "org-42")
    extra = {"OpenAI-Organization": "${CALLGATE_TEST_ORG}", "X-Team": "configured", "Authorization": "Bearer from-headers"}
    seen: list[Any] = []  # each request's headers, case-insensitive

    @web.middleware
    async def record(req: web.Request, handler: Any) -> web.StreamResponse:
        seen.append(req.headers.copy())
        return await handler(req)

    upstream = ScriptedUpstream([PLAIN])
    app = upstream.app()
    app.middlewares.append(record)
    async with serve_app(app) as up:
        s = await stack([], upstream_url=f"{up}/v1", upstream={"api_key": "sk-upstream", "headers": extra})
        c = client(s.url).with_options(default_headers={"X-Team": "runtime", "X-Kept": "yes"})
        await speak(c)
        await c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        await c.models.list()
    assert len(seen) == 3
    for got in seen:
        assert got["OpenAI-Organization"] == "org-42"
        assert got["X-Team"] == "configured"  # the configured value replaces the runtime's
        assert got["X-Kept"] == "yes"
        assert got["Authorization"] == "Bearer sk-upstream"  # api_key wins over upstream.headers


# -- config errors name the field path ------------------------------------------------

@pytest.mark.parametrize(
    ("upstream", "message"),
    [
        ({"base_url": "api.openai.com/v1"}, r"upstream\.base_url: .*not an absolute http:// or https:// URL.*write 'https://api\.openai\.com/v1'"),
        ({"base_url": "ftp://llm.local/v1"}, r"upstream\.base_url: .*write 'https://llm\.local/v1'"),
        ({"base_url": "https:///v1"}, r"upstream\.base_url: .*with a host"),
        ({"base_url": "https://api.openai.com/v1/chat/completions"},
         r"upstream\.base_url: .*ends in /chat/completions, which callgate appends itself: write 'https://api\.openai\.com/v1'"),
        ({"base_url": f"https://x.openai.azure.com{DEPLOYMENT}/chat/completions/?{API_VERSION}"},
         rf"upstream\.base_url: .*write 'https://x\.openai\.azure\.com{DEPLOYMENT}\?{API_VERSION}'"),
        ({"base_url": "http://[::1/v1"}, r"upstream\.base_url: .*is not a URL"),
        ({"api_key_header": "x-api-key"}, r"upstream\.api_key_header: Input should be 'authorization' or 'api-key'"),
        ({"headers": {"Connection": "close"}}, r"upstream\.headers: .*'Connection' is a hop-by-hop header"),
        ({"headers": {"transfer-encoding": "chunked"}}, r"upstream\.headers: .*'transfer-encoding' is a hop-by-hop header"),
        ({"headers": {"Host": "evil.example"}}, r"upstream\.headers: .*'Host' is a hop-by-hop header"),
        ({"headers": {"X Bad": "v"}}, r"upstream\.headers: .*'X Bad' is not a header name"),
        ({"headers": {"X-Split": "a\r\nX-Injected: b"}}, r"upstream\.headers: .*'X-Split': a header value may not contain CR, LF or NUL"),
    ],
)
def test_config_errors_name_the_field_path(upstream: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"upstream": upstream}, env={})


def test_good_upstream_configs_load() -> None:
    cfg = parse_config({"upstream": {"base_url": f"https://x.openai.azure.com{DEPLOYMENT}?{API_VERSION}", **AZURE_KEY}}, env={})
    assert (cfg.upstream.api_key_header, cfg.upstream.headers) == ("api-key", {})
    assert parse_config({}, env={}).upstream.api_key_header == "authorization"
    for url in ("http://127.0.0.1:11434/v1", "https://generativelanguage.googleapis.com/v1beta/openai/", "http://vllm:8000"):
        assert parse_config({"upstream": {"base_url": url}}, env={}).upstream.base_url == url


@pytest.mark.parametrize(
    ("url", "fix"),
    [("https://api.openai.com/v1/chat/completions", "write 'https://api.openai.com/v1'"),
     ("api.openai.com/v1", "write 'https://api.openai.com/v1'")],
)
def test_check_refuses_a_bad_base_url(tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, fix: str) -> None:
    path = tmp_path / "callgate.yaml"
    path.write_text(f"upstream:\n  base_url: {url}\n")
    assert main(["check", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "upstream.base_url: " in captured.err and fix in captured.err
    path.write_text(f"upstream:\n  base_url: https://x.openai.azure.com{DEPLOYMENT}?{API_VERSION}\n  api_key_header: api-key\n")
    assert main(["check", "--config", str(path)]) == 0
    assert f"upstream https://x.openai.azure.com{DEPLOYMENT}?{API_VERSION}" in capsys.readouterr().out


# -- an upstream error answer keeps its rate-limit headers --------------------------------

RATE_LIMITED = {"error": {"message": "Rate limit reached", "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
RATE_HEADERS = {
    "Retry-After": "7", "retry-after-ms": "7000", "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-limit-requests": "60", "x-ratelimit-reset-requests": "7s",
}
NOT_KEPT = {"X-Request-Id": "req-1", "Set-Cookie": "s=1", "openai-processing-ms": "3"}


def rate_limited_upstream(status: int = 429, body: bytes = json.dumps(RATE_LIMITED).encode(), content_type: str = "application/json") -> web.Application:
    """Chat completions and models both answer ``status`` with ``body`` and the rate-limit headers."""
    reply = ScriptedReply(status=status, raw=body, content_type=content_type, headers={**RATE_HEADERS, **NOT_KEPT})
    return ScriptedUpstream([reply], models=reply).app()


def assert_kept(headers: Any) -> None:
    for name, value in RATE_HEADERS.items():
        assert headers.get(name) == value, name
    for name in NOT_KEPT:
        assert name not in headers, name


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
async def test_upstream_429_keeps_retry_after_and_ratelimit_headers(stack: Any, stream: bool) -> None:
    async with serve_app(rate_limited_upstream()) as up:
        s = await stack([], upstream_url=f"{up}/v1")
        with pytest.raises(openai.RateLimitError) as e:
            await client(s.url).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=stream)
        async with aiohttp.ClientSession() as session:
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
            async with session.post(f"{s.url}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}) as r:
                raw_status, raw_headers, raw_body = r.status, r.headers, await r.read()
    assert e.value.status_code == 429 and e.value.body == RATE_LIMITED["error"]
    assert_kept(e.value.response.headers)
    assert raw_status == 429 and json.loads(raw_body) == RATE_LIMITED
    assert_kept(raw_headers)


async def test_a_wrapped_error_and_models_keep_them_too(stack: Any) -> None:
    async with serve_app(rate_limited_upstream(503, b"<html>overloaded</html>", "text/html")) as up:
        s = await stack([], upstream_url=f"{up}/v1")
        with pytest.raises(openai.InternalServerError) as e:
            await client(s.url).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.InternalServerError) as m:
            await client(s.url).models.list()
    for err in (e.value, m.value):
        assert err.status_code == 503 and err.body["code"] == "upstream_http_503" and "overloaded" in err.body["message"]
        assert_kept(err.response.headers)
