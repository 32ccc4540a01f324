"""callgate's OpenAPI document (``proxy/server/openapi.json``, ``GET /openapi.json``)
against callgate itself.

* The file is valid OpenAPI 3.1, pretty-printed; ``GET /openapi.json`` serves it.
* Every route of :func:`~proxy.server.app.build_app` is documented with the scope its
  handler requires, and nothing else is.
* A property-based run (schemathesis, positive and negative data, fixed seeds) against
  a live callgate in front of a scripted upstream that always answers 200, its
  database seeded with a call whose end-function step and event delivery failed (the
  admin API's data: the document's examples name it). With no
  keys: the document's examples, the coverage phase's boundary values and at most
  ``MAX_EXAMPLES`` fuzzed cases per operation; with keys: the examples and as many
  other fuzzed cases, each also sent without the key (which must be refused). Each
  response: no 5xx, its status documented, its content type and body (JSON, or each
  Server-Sent Event of a stream) of the documented schema, its documented headers
  there; data the document calls invalid refused (but for the chat completion fields
  callgate leaves to the upstream); every error in OpenAI's error shape exactly.
* By hand: the event streams of a call and of the admin API (they stay open: not in
  the run), the scopes of the keys, the admin API on the seeded call (its retries,
  409 while a step runs), metrics, the operator page, and the bugs this work found.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any, Self

import hypothesis
import hypothesis.strategies as st
import jsonschema
import pytest
import requests
import schemathesis
from aiohttp import web
from openapi_spec_validator import validate as validate_openapi
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from schemathesis.specs.openapi import checks as openapi_checks

from proxy.config import parse_config
from proxy.demo.scripted_upstream import ScriptedReply, ScriptedUpstream
from proxy.server.app import build_app, running
from proxy.server.openapi import SPEC_PATH

from .conftest import Receiver, serve_app

DOC: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
MAX_EXAMPLES = 25  # fuzzed cases per operation and run; the examples and coverage phases add their own
KEY = "openapi-test-key-0123456789"
ALL_SCOPES = ["relay", "calls:read", "calls:write", "admin"]
BEARER = {"Authorization": f"Bearer {KEY}"}
EXAMPLE_CALL = DOC["components"]["parameters"]["CallId"]["examples"]["call"]["value"]
PLAIN = ScriptedReply(content=["Hello", ", how can I help?"])
HANGUP = ScriptedReply(content=["Goodbye. ", '<imsagent_hangup endword="Bye!"/>'])


def _validator(name: str) -> jsonschema.Draft202012Validator:
    """A validator for ``components.schemas[name]`` (its references resolved in the document)."""
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": DOC["components"]})


STRICT_ERROR = jsonschema.Draft202012Validator({**DOC["components"]["schemas"]["Error"], "properties": {"error": DOC["components"]["schemas"]["ErrorObject"]}})


# -- the document ---------------------------------------------------------------------

def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"].startswith("3.1.")
    validate_openapi(DOC)
    schemathesis.openapi.from_dict(DOC).validate()
    assert SPEC_PATH.read_text(encoding="utf-8") == json.dumps(DOC, indent=2, ensure_ascii=False) + "\n", "pretty-printed, 2 spaces"
    assert DOC["info"]["version"] == version("callgate")


def test_the_served_document_is_the_file(open_callgate: Live) -> None:
    r = open_callgate.request("GET", "/openapi.json")
    assert (r.status_code, r.headers["Content-Type"].split(";")[0]) == (200, "application/json")
    assert r.content == SPEC_PATH.read_bytes()


def _routes() -> dict[tuple[str, str], str | None]:
    """``(method, path template) -> the scope its handler requires`` of build_app, HEAD left out."""
    app = build_app(parse_config({"storage": {"path": "unused.db"}}))
    out = {}
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        out[(route.method.lower(), path)] = getattr(route.handler, "scope", None)
    return out


def _documented() -> dict[tuple[str, str], str | None]:
    """``(method, path) -> the scope its security requirement names`` (None: open)."""
    out = {}
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            scopes = {s for req in op.get("security", DOC.get("security", [])) for s in next(iter(req.values()), [])}
            assert len(scopes) <= 1, f"{method} {path}: one scope per operation, got {scopes}"
            out[(method, path)] = next(iter(scopes), None)
    return out


def test_every_route_is_documented_with_its_scope_and_nothing_else() -> None:
    routes, documented = _routes(), _documented()
    assert sorted(set(routes) - set(documented)) == [], "routes missing from proxy/server/openapi.json"
    assert sorted(set(documented) - set(routes)) == [], "documented operations that build_app does not register"
    assert routes == documented, "the scope in the document differs from the handler's @requires"


def test_secured_operations_take_either_scheme() -> None:
    for (method, path), scope in _documented().items():
        op = DOC["paths"][path][method]
        expected = [] if scope is None else [{"bearer": [scope]}, {"apiKey": [scope]}]
        assert op["security"] == expected, f"{method} {path}"


# -- a live callgate ------------------------------------------------------------------

class CallLayer(Receiver):
    """The call layer's webhook (``/events``) and a CRM (``/crm``, ``/after-crm``), down
    for the seeded call only (its events refused: 400; its step failing: 500)."""

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        body = await request.read()
        self.got.append({"path": path, "headers": dict(request.headers), "body": body})
        if path in self.hold:
            await self.hold[path].wait()
        sent = json.loads(body)
        seeded = sent.get("call_id" if path == "events" else "id") == EXAMPLE_CALL and sent.get("generation", 1) == 1
        status = {"events": 400, "crm": 500}.get(path, 200) if seeded else 200
        return web.json_response({"status": status}, status=status)


class Live:
    """A scripted upstream, a webhook receiver (:class:`CallLayer`) and callgate on
    127.0.0.1, in a thread with its own event loop: schemathesis calls it with blocking
    requests from the test's thread. The end function's steps ``crm`` (one try) and
    ``after-crm`` (after it) run for calls whose state says ``seeded`` (skipped for
    the others); every control event goes to the call layer."""

    def __init__(self, tmp: Path, reply: ScriptedReply = PLAIN, **cfg: Any) -> None:
        self.tmp, self.cfg = tmp, cfg
        self.url = ""
        self.upstream = ScriptedUpstream([reply])
        self.receiver = CallLayer()
        self.headers: dict[str, str] = BEARER if "auth" in cfg else {}
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="callgate-openapi", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        assert self.url, "callgate did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as e:  # noqa: BLE001 - handed to the test's thread
            self._error = e
            self._ready.set()
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with contextlib.AsyncExitStack() as exits:
            upstream_url = await exits.enter_async_context(serve_app(self.upstream.app()))
            hook = await exits.enter_async_context(serve_app(self.receiver.app()))
            seeded = {"state": {"seeded": True}}
            steps = [
                {"name": "crm", "kind": "webhook", "url": f"{hook}/crm", "retry": {"attempts": 1}, "when": seeded},
                {"name": "after-crm", "kind": "webhook", "url": f"{hook}/after-crm", "after": ["crm"], "when": seeded},
            ]
            data: dict[str, Any] = {
                "upstream": {"base_url": upstream_url + "/v1", "timeout_s": 5},
                "storage": {"path": str(self.tmp / "callgate.db")},
                "control": {"webhook": {"url": f"{hook}/events"}},
                "end_function": {"poll_s": 0.05, "after_hangup_s": 0, "sweep_s": 0.2, "steps": steps},
                **self.cfg,
            }
            _, self.url = await exits.enter_async_context(running(parse_config(data), host="127.0.0.1", port=0))
            self._ready.set()
            await self._stop.wait()

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw["headers"] = {**self.headers, **kw.get("headers", {})}
        return requests.request(method, self.url + path, timeout=10, **kw)

    def turn(self, call_id: str) -> None:
        """One chat completion of ``call_id``: the call is there, and active (a new
        generation when it had ended)."""
        for _ in range(2):  # past limits.max_turns_per_call: 429 and the call ends; then a new one
            r = self.request("POST", "/v1/chat/completions", headers={"X-Call-Id": call_id}, json={"messages": [{"role": "user", "content": "hi"}]})
            if r.status_code != 429:
                break
        assert r.status_code == 200, r.text

    def release(self, hold: asyncio.Event) -> None:
        """Set ``hold`` (a :attr:`Receiver.hold`) in callgate's event loop."""
        self._loop.call_soon_threadsafe(hold.set)

    def seed(self) -> None:
        """Data for the document's examples (and the admin API): ``call-42`` ended by the
        call layer (its first generation, record key ``call-42``, the first call to end),
        its step ``crm`` (job 1) failed, ``after-crm`` (job 2) blocked, the delivery of
        its ``call.ended`` failed."""
        self.turn(EXAMPLE_CALL)
        assert self.request("POST", f"/v1/calls/{EXAMPLE_CALL}/end", json={"reason": "caller_hung_up", "state": {"seeded": True}}).status_code == 200
        deadline = time.monotonic() + 10
        while True:
            dead = self.request("GET", "/v1/admin/dead-letters").json()
            if [(j["id"], j["status"]) for j in dead["jobs"]] == [(2, "blocked"), (1, "failed")] and len(dead["deliveries"]) == 1:
                break
            assert time.monotonic() < deadline, dead
            time.sleep(0.02)
        assert DOC["components"]["parameters"]["RecordKey"]["examples"]["call"]["value"] == EXAMPLE_CALL
        assert DOC["components"]["parameters"]["JobId"]["examples"]["step"]["value"] == 1


@pytest.fixture(scope="module")
def open_callgate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    # few turns per call: the run meets the 429 of a call past its limit too
    with Live(tmp_path_factory.mktemp("open"), limits={"max_turns_per_call": 10}) as live:
        live.seed()
        yield live


@pytest.fixture(scope="module")
def keyed_callgate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    keys = [{"name": "all", "key": KEY, "scopes": ALL_SCOPES}]
    # a key for each scope that has every other one (403 where that scope is needed)
    keys += [{"name": f"not-{i}", "key": f"{KEY}-not-{i}", "scopes": [s for s in ALL_SCOPES if s != scope]} for i, scope in enumerate(ALL_SCOPES)]
    with Live(tmp_path_factory.mktemp("keys"), auth={"keys": keys}) as live:
        live.seed()
        yield live


# -- the property-based run -------------------------------------------------------------

# `format: printable` (an end reason): what str.isprintable() holds for. The document says
# it in words too: a JSON Schema pattern has no Unicode categories to say it with.
schemathesis.openapi.format("printable", st.text(st.characters(exclude_categories=("C", "Z")) | st.just(" "), min_size=1))

STREAMS = ["/v1/calls/{call_id}/events", "/v1/admin/stream"]  # they stay open: by hand, below
# WebSocket upgrades: a plain GET is refused (400) by design; tests/test_front_doors.py speaks them
SOCKETS = ["/retell/v1/llm-websocket/{call_id}", "/conversation-relay/v1/ws"]


def _schema(seed: int, phases: list[str]) -> Any:
    schema = schemathesis.openapi.from_path(SPEC_PATH).exclude(path=STREAMS + SOCKETS)
    schema.config.generation.update(max_examples=MAX_EXAMPLES)
    schema.config.phases.update(phases=phases)
    schema.config.seed = seed  # the same cases every run
    return schema


# With no keys: the examples, the coverage phase's boundary values and fuzzing.
open_schema = _schema(1, ["examples", "coverage", "fuzzing"])
# With keys: the examples and other fuzzed cases, each also sent without the key.
keyed_schema = _schema(2, ["examples", "fuzzing"])

SETTINGS = hypothesis.settings(deadline=None, suppress_health_check=list(hypothesis.HealthCheck), database=None)


_SENT: set[str] = set()


def _call_and_validate(case: schemathesis.Case, live: Live, excluded: list[Any]) -> None:
    request = (live.url, case.operation.label, case.meta and case.meta.generation.mode, case.path_parameters, case.query, case.headers, case.body)
    if repr(request) in _SENT:
        return  # the same request again (an operation without parameters has few to send)
    _SENT.add(repr(request))
    if case.operation.path.endswith("/chat/completions"):
        excluded.append(openapi_checks.negative_data_rejection)  # fields besides messages are the upstream's to judge
    if (case.path_parameters or {}).get("call_id") == EXAMPLE_CALL:
        live.turn(EXAMPLE_CALL)  # active again, whatever an earlier case did to it
    response = case.call_and_validate(base_url=live.url, headers=live.headers, excluded_checks=excluded, timeout=10)
    if response.status_code >= 400:  # the upstream never fails here: every error is callgate's own
        STRICT_ERROR.validate(response.json())


# callgate's webhook workers draw their retry jitter from `random` in callgate's thread;
# hypothesis, generating a case meanwhile, takes it for the strategy's own use.
JITTER = pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")


# (the one-value parametrize gives each operation's item its own node id under pytest 9)
@open_schema.parametrize()
@pytest.mark.parametrize("auth", ["no-keys"])
@JITTER
@SETTINGS
def test_open_callgate_answers_as_documented(case: schemathesis.Case, auth: str, open_callgate: Live) -> None:
    _call_and_validate(case, open_callgate, [openapi_checks.ignored_auth])  # no keys: every route is open


@keyed_schema.parametrize()
@pytest.mark.parametrize("auth", ["keys"])
@JITTER
@SETTINGS
def test_keyed_callgate_answers_as_documented(case: schemathesis.Case, auth: str, keyed_callgate: Live) -> None:
    _call_and_validate(case, keyed_callgate, [])


# -- by hand ----------------------------------------------------------------------------

def test_every_secured_operation_wants_a_key_with_its_scope(keyed_callgate: Live) -> None:
    live = keyed_callgate
    for (method, path), scope in sorted(_documented().items()):
        url = path
        for name, value in {"profile": "openai", "call_id": "no-such-call", "key": "no-such-call", "job_id": "1", "event_id": "evt_none", "name": "app.js"}.items():
            url = url.replace(f"{{{name}}}", value)
        body = {"messages": [{"role": "user", "content": "hi"}]} if method != "get" else None
        without = live.request(method, url, headers={"Authorization": ""}, json=body)
        if path == "/openai-sip/v1/webhook":  # no key: its own signature (401 invalid_signature), never a key's 401
            assert (without.status_code, without.json()["error"]["code"]) == (401, "invalid_signature")
            continue
        if scope is None:
            assert without.status_code == 200, f"{method} {path} is open"
            continue
        wrong = live.request(method, url, headers={"Authorization": "Bearer not-a-key-of-callgate"}, json=body)
        lacking = live.request(method, url, headers={"Authorization": f"Bearer {KEY}-not-{ALL_SCOPES.index(scope)}"}, json=body)
        assert (without.status_code, wrong.status_code, lacking.status_code) == (401, 401, 403), f"{method} {path}"
        for r in (without, wrong, lacking):
            STRICT_ERROR.validate(r.json())
    # the api-key header is the same key
    assert live.request("GET", "/v1/models", headers={"Authorization": "", "api-key": KEY}).status_code == 200


def _events(live: Live, call_id: str, **headers: str) -> list[dict[str, Any]]:
    """The call's event stream, validated by schemathesis as the run validates the
    rest (it closes after ``call.ended``); the events' JSON."""
    op = open_schema_full["/v1/calls/{call_id}/events"]["GET"]
    case = op.Case(path_parameters={"call_id": call_id}, headers=headers)
    response = case.call_and_validate(base_url=live.url, headers=live.headers, excluded_checks=[openapi_checks.ignored_auth], timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"][0].startswith("text/event-stream")
    events = []
    for block in response.text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if fields:
            event = json.loads(fields["data"])
            _validator("ControlEvent").validate(event)
            assert (fields["event"], fields["id"]) == (event["type"], str(event["seq"]))
            events.append(event)
    return events


open_schema_full = schemathesis.openapi.from_path(SPEC_PATH)


def test_the_event_stream_of_a_call_is_as_documented(tmp_path: Path) -> None:
    with Live(tmp_path, reply=HANGUP) as live:
        live.turn("call-to-hang-up")
        for _ in range(100):  # the hangup ends the call once its reply is over
            if live.request("GET", "/v1/calls/call-to-hang-up").json()["status"] == "ended":
                break
            threading.Event().wait(0.05)
        events = _events(live, "call-to-hang-up")
        assert [e["type"] for e in events] == ["hangup", "call.ended"]
        assert [e["seq"] for e in _events(live, "call-to-hang-up", **{"Last-Event-ID": "1"})] == [2]
        # Unicode digits are not a seq (int("²") failed: a 500)
        assert len(_events(live, "call-to-hang-up", **{"Last-Event-ID": "²"})) == 2
        # the whole record, with its events, is a CallRecord
        record = live.request("GET", "/v1/calls/call-to-hang-up")
        _validator("CallRecord").validate(record.json())


def test_what_the_run_found_stays_fixed(open_callgate: Live) -> None:
    live = open_callgate
    live.turn("call-found")
    # "state": false was taken as no state; the document says an object (or null)
    for state in (False, 0, "", []):
        r = live.request("POST", "/v1/calls/call-found/end", json={"reason": "done", "state": state})
        assert r.status_code == 400, (state, r.status_code)
        STRICT_ERROR.validate(r.json())
    assert live.request("POST", "/v1/calls/call-found/end", json={"reason": "done", "state": None}).status_code == 200


def test_what_reading_for_the_document_found_stays_fixed(open_callgate: Live) -> None:
    live = open_callgate
    live.turn("call-read")
    # ?generation= with a Unicode digit, or too many digits for int(), was a 500
    for generation in ("²", "١", "9" * 5000):
        r = live.request("GET", "/v1/calls/call-read", params={"generation": generation})
        assert r.status_code == 400, (generation[:10], r.status_code)
        STRICT_ERROR.validate(r.json())
    # "01" is generation 1 (it was looked up as "call-read~1", never a key: 404)
    assert live.request("GET", "/v1/calls/call-read", params={"generation": "01"}).status_code == 200
    # a content part whose text is not a string was a 500
    chat = {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}, {"type": "text", "text": "hi"}]}]}
    r = live.request("POST", "/v1/chat/completions", headers={"X-Call-Id": "call-parts"}, json=chat)
    assert r.status_code == 200, r.text
    assert live.request("GET", "/v1/calls/call-parts").json()["turns"][0]["user_text"] == "hi"


def test_a_lone_surrogate_no_longer_loses_the_call(open_callgate: Live) -> None:
    """A lone surrogate (``\\ud800``; JSON's grammar allows the escape) could not be
    stored: the request answered 200 but the call was never written (404 after),
    and ``POST /end`` with one was a 500. callgate's copy now holds U+FFFD; the
    upstream still gets the bytes as they came."""
    live = open_callgate
    json_headers = {"X-Call-Id": "call-lone", "Content-Type": "application/json"}
    body = b'{"messages":[{"role":"user","content":"caf\\ud83d"}],"extendData":{"note":"\\udc00","\\ud800":1}}'
    assert live.request("POST", "/v1/chat/completions", headers=json_headers, data=body).status_code == 200
    assert live.upstream.requests[-1].body["messages"][0]["content"] == "caf\ud83d"  # relayed as it came
    record = live.request("GET", "/v1/calls/call-lone")
    assert record.status_code == 200, record.text
    assert record.json()["turns"][0]["user_text"] == "caf\ufffd"
    assert record.json()["metadata"]["note"] == "\ufffd"
    # the same as raw bytes (ED A0 80: Python's JSON parser lets them through too)
    r = live.request("PATCH", "/v1/calls/call-lone/state", headers=json_headers, data=b'{"k": "\xed\xa0\x80"}')
    assert (r.status_code, r.json()["state"]) == (200, {"k": "\ufffd"})
    r = live.request("POST", "/v1/calls/call-lone/end", headers=json_headers, data=b'{"reason": "\\ud800"}')
    assert (r.status_code, r.json()["end_reason"]) == (200, "\ufffd")


# -- the operations routes, by hand --------------------------------------------------------


def _validated(live: Live, method: str, path: str, query: dict[str, str] | None = None, **path_parameters: Any) -> Any:
    """One request, validated by schemathesis as the run validates each (its status
    documented, content type, headers, body schema); the response."""
    case = open_schema_full[path][method].Case(path_parameters=path_parameters or None, query=query)
    response = case.call_and_validate(base_url=live.url, headers=live.headers, excluded_checks=[openapi_checks.ignored_auth], timeout=10)
    if response.status_code >= 400:
        STRICT_ERROR.validate(response.json())
    return response


def _settled(live: Live) -> dict[str, Any]:
    """The seeded call's admin record once nothing of it is under way (the run retried
    its step and delivery, and they fail again): step ``crm`` failed, ``after-crm``
    blocked, the delivery of ``call.ended`` failed."""
    deadline = time.monotonic() + 10
    while True:
        record = _validated(live, "GET", "/v1/admin/calls/{key}", key=EXAMPLE_CALL).json()
        steps = [(j["id"], j["step"], j["status"]) for j in record["end_function"]["steps"]]
        deliveries = [(d["type"], d["status"]) for d in record["control_deliveries"]]
        if steps == [(1, "crm", "failed"), (2, "after-crm", "blocked")] and deliveries == [("call.ended", "failed")]:
            return record
        assert time.monotonic() < deadline, (steps, deliveries)
        time.sleep(0.02)


def test_the_admin_api_shows_the_dead_letters_and_retries_them(keyed_callgate: Live) -> None:
    live = keyed_callgate
    record = _settled(live)
    assert (record["id"], record["generation"], record["end_reason"], record["end_function"]["status"]) == (EXAMPLE_CALL, 1, "caller_hung_up", "failed")
    crm = record["end_function"]["steps"][0]
    assert (crm["attempts"], crm["last_error"], crm["response_code"]) == (1, "HTTP 500", 500)
    delivery = record["control_deliveries"][0]
    assert (delivery["last_error"], delivery["response_code"]) == ("refused: HTTP 400", 400)
    assert record["delivery_failures"] == [delivery]
    assert record["outcome_tags"] == ["user_hangup"]

    # the list, filtered
    calls = _validated(live, "GET", "/v1/admin/calls", query={"end_reason": "caller_hung_up", "since": "1h", "tag": "user_hangup", "status": "ended"}).json()["calls"]
    assert {(c["status"], c["end_reason"], "user_hangup" in c["outcome_tags"]) for c in calls} == {("ended", "caller_hung_up", True)}
    assert [(c["end_function"], c["jobs"]) for c in calls if c["key"] == EXAMPLE_CALL] == [("failed", {"failed": 1, "blocked": 1})]
    assert calls[-1]["id"] == EXAMPLE_CALL  # the oldest (the run's POST /end made more)
    assert _validated(live, "GET", "/v1/admin/calls", query={"end_reason": "caller_hung_up", "until": "1h"}).json() == {"calls": []}
    assert _validated(live, "GET", "/v1/admin/calls", query={"limit": "501"}).json()["error"]["param"] == "limit"
    assert _validated(live, "GET", "/v1/admin/calls", query={"since": "soon"}).json()["error"]["code"] == "invalid_time"
    twice = live.request("GET", "/v1/admin/calls?tag=user_hangup&tag=completed")  # one value each, never the first of several
    assert (twice.status_code, twice.json()["error"]["code"], twice.json()["error"]["param"]) == (400, "repeated_parameter", "tag")

    # the dead letters: the seeded call's (the steps are skipped for every other call,
    # and the call layer takes every other call's events)
    dead = _validated(live, "GET", "/v1/admin/dead-letters").json()
    assert (dead["jobs"], dead["deliveries"]) == (record["end_function"]["steps"][::-1], [delivery])
    assert dead["delivery_counts"]["failed"] == 1 and dead["delivery_counts"]["done"] > 1

    # the sandbox runs both steps on the recorded call: the CRM "answers", as nothing is sent
    report = _validated(live, "POST", "/v1/admin/calls/{key}/sandbox", key=EXAMPLE_CALL).json()
    assert [(s["step"], s["status"], [e["effect"] for e in s["effects"]]) for s in report["steps"]] == [("crm", "done", ["POST"]), ("after-crm", "done", ["POST"])]
    assert report["steps"][0]["effects"][0]["headers"]["Idempotency-Key"] == f"{EXAMPLE_CALL}:crm"
    assert _validated(live, "POST", "/v1/admin/calls/{key}/sandbox", key="no-such-call").status_code == 404

    # a retried step goes back with the one blocked behind it; while its try is under
    # way (the CRM holds it) it is not finished, so not retried again (409)
    hold = asyncio.Event()
    tries = len(live.receiver.on("crm"))
    live.receiver.hold["crm"] = hold
    try:
        assert _validated(live, "POST", "/v1/admin/jobs/{job_id}/retry", job_id=1).json() == {"retried": 2}
        deadline = time.monotonic() + 10
        while len(live.receiver.on("crm")) == tries:
            assert time.monotonic() < deadline, "the step was not tried again"
            time.sleep(0.01)
        r = _validated(live, "POST", "/v1/admin/jobs/{job_id}/retry", job_id=1)
        assert (r.status_code, r.json()["error"]["code"]) == (409, "job_not_finished")
    finally:
        del live.receiver.hold["crm"]
        live.release(hold)
    _settled(live)  # the CRM is still down
    r = _validated(live, "POST", "/v1/admin/jobs/{job_id}/retry", job_id=999_999)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "job_not_found")

    # a failed delivery is resent (and refused again)
    r = _validated(live, "POST", "/v1/admin/deliveries/{event_id}/retry", event_id=delivery["event_id"])
    assert r.json() == {"retried": 1}
    _settled(live)
    r = _validated(live, "POST", "/v1/admin/deliveries/{event_id}/retry", event_id="evt_none")
    assert (r.status_code, r.json()["error"]["code"]) == (404, "delivery_not_found")
    assert _validated(live, "GET", "/v1/admin/calls/{key}", key="no-such-call").json()["error"]["code"] == "call_not_found"


def test_the_change_stream_is_as_documented(keyed_callgate: Live) -> None:
    """``GET /v1/admin/stream`` never ends (not in the run): its first events, read by hand."""
    live = keyed_callgate
    op = DOC["paths"]["/v1/admin/stream"]["get"]["responses"]["200"]
    event_schema = DOC["components"]["schemas"]["ChangeStreamEvent"]
    with live.request("GET", "/v1/admin/stream", stream=True) as r:
        assert r.status_code == 200
        assert r.headers["Content-Type"].split(";")[0] in op["content"]
        assert r.headers["Cache-Control"] == "no-cache"
        lines = r.iter_lines(chunk_size=1, decode_unicode=True)

        def event() -> dict[str, Any]:
            fields: dict[str, str] = {}
            for line in lines:
                if not line:
                    if fields:
                        break
                    continue
                if not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value
            _validator("ChangeStreamEvent").validate(fields)
            data = json.loads(fields["data"])
            jsonschema.validate(data, event_schema["properties"]["data"]["contentSchema"])
            assert fields["id"] == str(data["n"])
            return data

        assert event() == {"n": 1}  # at once on connecting
        live.turn("call-watched")  # a change
        assert event() == {"n": 2}


def test_metrics_are_the_prometheus_text_format(keyed_callgate: Live) -> None:
    live = keyed_callgate
    _settled(live)
    r = _validated(live, "GET", "/metrics")
    assert r.headers["content-type"] == [CONTENT_TYPE_LATEST]
    assert f"`Content-Type: {CONTENT_TYPE_LATEST}`" in DOC["paths"]["/metrics"]["get"]["responses"]["200"]["description"]
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    dead = {s.labels["kind"]: s.value for s in families["callgate_dead_letters"].samples}
    assert dead["step"] >= 1 and dead["delivery"] >= 1  # the seeded call's, at least
    assert any(s.labels["route"] == "/v1/admin/dead-letters" for s in families["callgate_requests"].samples)


def test_the_operator_page_is_served_as_documented(open_callgate: Live) -> None:
    live = open_callgate
    r = _validated(live, "GET", "/ui")
    assert (r.status_code, r.headers["location"]) == (302, ["ui/"])
    for path, name, media in (("/ui/", None, "text/html"), ("/ui/{name}", "app.js", "text/javascript"), ("/ui/{name}", "style.css", "text/css")):
        r = _validated(live, "GET", path, **({"name": name} if name else {}))
        assert (r.status_code, r.headers["content-type"][0].split(";")[0]) == (200, media)
    for name in ("index.html", "..%2Fadmin.py"):
        r = live.request("GET", f"/ui/{name}")
        assert r.status_code == 404
        STRICT_ERROR.validate(r.json())


# Bugs reading proxy/server/admin.py for the document found (not fixed here: the
# run's cases did not reach them). Each test fails until its bug is fixed.


def test_a_job_id_of_other_digits_is_not_found(open_callgate: Live) -> None:
    r = open_callgate.request("POST", "/v1/admin/jobs/%C2%B2/retry")  # ²
    assert r.status_code == 404, r.text


def test_a_limit_int_cannot_read_is_refused(open_callgate: Live) -> None:
    for limit in ("²", "9" * 5000):
        r = open_callgate.request("GET", "/v1/admin/calls", params={"limit": limit})
        assert r.status_code == 400, (limit[:10], r.text)
        assert r.json()["error"]["param"] == "limit"
    for name in ("since", "until"):
        r = open_callgate.request("GET", "/v1/admin/calls", params={name: "yesterday"})
        assert (r.status_code, r.json()["error"]["param"]) == (400, name)


def test_since_and_until_take_every_number_the_document_admits() -> None:
    """Found by the schemathesis run: a number past a float's range (``159e38171``)
    matches the documented pattern, so it is that end of the range, not a 400; what
    the pattern refuses (``nan``, ``inf``, ``1_0``) is refused."""
    import re

    from proxy.errors import RequestError
    from proxy.server.admin import _when

    pattern = DOC["paths"]["/v1/admin/calls"]["get"]["parameters"][3]["schema"]["pattern"]
    for text in (" \x0b\t 159e38171\r", "-1e999", "12.5", ".5", "1767225600"):
        assert re.search(pattern, text) and _when(text, 0, "since") is not None
    for text in ("nan", "inf", "1_0", "12x"):
        assert not re.search(pattern, text)
        with pytest.raises(RequestError):
            _when(text, 0, "since")
