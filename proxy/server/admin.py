"""Operations routes: the operator page at ``/ui/`` and the JSON API it reads.

The page (``/ui/``: ``index.html``, ``app.js``, ``style.css`` from ``ui/``) holds no
data and needs no key; it asks for one and keeps it in the tab's session storage,
sending it as ``Authorization: Bearer``. Every route under ``/v1/admin/`` needs the
``admin`` scope (401/403 in OpenAI's error shape otherwise):

* ``GET /v1/admin/calls``: the calls, newest first; filters ``status``,
  ``end_reason``, ``tag`` (an outcome tag), ``since``/``until`` (Unix seconds, or
  ``30m``/``2h``/``1d`` ago), ``limit`` (1-500, default 100).
* ``GET /v1/admin/calls/{key}``: the call record (turns, events, deliveries, steps,
  state, metadata) with ``outcome_tags``.
* ``POST /v1/admin/calls/{key}/sandbox``: the configured steps run against the
  call as ``callgate end-function test`` runs them: effects recorded, never sent.
* ``GET /v1/admin/dead-letters``: failed and blocked steps, failed deliveries.
* ``POST /v1/admin/jobs/{job_id}/retry``, ``POST /v1/admin/jobs/retry`` (every
  failed step), ``POST /v1/admin/deliveries/{event_id}/retry``,
  ``POST /v1/admin/deliveries/retry`` (every failed delivery): what ``callgate jobs
  retry`` / ``deliveries retry`` do, and the workers are woken at once.
* ``GET /v1/admin/stream``: Server-Sent Events, one ``change`` event whenever a
  call, a step or a delivery changed (read from the database every ``WATCH_S``,
  so other instances' changes count too; one at once on connecting); the page
  reloads what it shows on each.

Phone numbers and the ``log_mask.fields`` are masked in everything these routes
return, as in the logs (:mod:`proxy.logs`); ids are not.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from ..calls.outcome import add_tags, rule_tags
from ..config import Config
from ..core.ago import ago
from ..core.sse import encode_event
from ..endfn.sandbox import run_sandbox
from ..errors import JobNotFinished, NotFound, RequestError
from ..logs import mask, mask_text
from ..storage import DeliveryStatus, JobStatus, ops, views
from .auth import requires
from .bodies import error_response, json_response, query_value, whole_number
from .services import SERVICES

__all__ = ["WATCH_S", "add_routes"]

WATCH_S = 0.5  # how often the change stream reads the database (s)
SANDBOX_TIMEOUT_S = 60.0

_UI = Path(__file__).with_name("ui")
_ASSETS = {"": ("index.html", "text/html"), "app.js": ("app.js", "text/javascript"), "style.css": ("style.css", "text/css")}
_PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# Unix seconds as the OpenAPI document's pattern for since/until has them (float()
# alone also takes "nan", "inf" and "1_0").
_UNIX_S = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")
_IDS = frozenset({"id", "call_id", "call_key", "event_id", "request_id", "idempotency_key", "tool_call_id"})
_SECRET_HEADER = re.compile(r"authorization|signature|secret|token|api[-_]?key|password|cookie", re.IGNORECASE)


def add_routes(app: web.Application) -> None:
    """Register the operator page and its API on ``app``."""
    app.router.add_get("/ui", _to_page)
    app.router.add_get("/ui/", ui_page)
    app.router.add_get("/ui/{name}", ui_page)
    app.router.add_get("/v1/admin/calls", list_calls)
    app.router.add_get("/v1/admin/calls/{key}", get_call)
    app.router.add_post("/v1/admin/calls/{key}/sandbox", sandbox)
    app.router.add_get("/v1/admin/dead-letters", dead_letters)
    app.router.add_post("/v1/admin/jobs/retry", retry_failed_jobs)
    app.router.add_post("/v1/admin/jobs/{job_id}/retry", retry_job)
    app.router.add_post("/v1/admin/deliveries/retry", retry_failed_deliveries)
    app.router.add_post("/v1/admin/deliveries/{event_id}/retry", retry_delivery)
    app.router.add_get("/v1/admin/stream", stream)


# -- the page ----------------------------------------------------------------------------


async def _to_page(request: web.Request) -> web.Response:
    raise web.HTTPFound("ui/")  # relative: right behind a proxy's path prefix too


async def ui_page(request: web.Request) -> web.Response:
    """The page's files; no data in them, so no key."""
    asset = _ASSETS.get(request.match_info.get("name", ""))
    if asset is None:
        raise web.HTTPNotFound()
    body = await asyncio.to_thread((_UI / asset[0]).read_bytes)
    return web.Response(body=body, content_type=asset[1], charset="utf-8", headers=_PAGE_HEADERS)


# -- helpers -------------------------------------------------------------------------------




def masker(config: Config) -> Callable[[Any], Any]:
    """A function that masks phone numbers and the ``log_mask.fields`` in any JSON-ready
    value, as the logs do (ids stay as they are)."""
    fields = tuple(config.log_mask.fields)
    named = frozenset(fields)
    phones = config.log_mask.phone_numbers

    def walk(value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if key in _IDS or value is None or isinstance(value, bool):
            return value
        if key in named and value != "":
            return mask(str(value))
        return mask_text(value, fields, phones) if isinstance(value, str) else value

    return walk


def _tags(record: dict[str, Any], outputs: list[Any]) -> list[str]:
    """An ended call's outcome tags: the rules, then what its steps produced (as the
    end function's ``conv.outcome_tags``)."""
    if record.get("status") != "ended":
        return []
    tags = rule_tags(record)
    for out in outputs:
        if isinstance(out, dict) and isinstance(out.get("tags"), list):
            add_tags(tags, (str(t) for t in out["tags"]))
    return tags


def _overall(jobs: dict[str, int]) -> str | None:
    """The end function's status from its steps' counts (as in a call record)."""
    for status in ("running", "pending"):
        if jobs.get(status):
            return status
    if jobs.get("failed") or jobs.get("blocked"):
        return "failed"
    return "done" if jobs else None


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    """A row of the calls list from a row of :func:`proxy.storage.views.calls_page`."""
    lite = {**row, "transcript": [{"role": "user", "text": "-"}] if row["spoke"] else []}
    meta = row["metadata"]
    keep = ("id", "key", "call_id", "generation", "status", "started_at", "ended_at", "last_activity", "end_reason", "end_source", "turns", "jobs")
    return {
        **{k: row[k] for k in keep},
        "caller_number": meta.get("caller_number"),
        "callee_number": meta.get("callee_number"),
        "outcome_tags": _tags(lite, row["outputs"]),
        "end_function": _overall(row["jobs"]),
    }


def _when(text: str | None, now: float, name: str) -> float | None:
    """``since``/``until`` (``name``): Unix seconds, or ``30m``/``2h``/``1d``/``45s`` ago."""
    if not text:
        return None
    since = ago(text, now)
    if since is not None:
        return since
    if _UNIX_S.fullmatch(text) is None:
        raise RequestError(f"{name} {text[:40]!r} is not a time: Unix seconds, or 30m, 2h, 1d ago", param=name, code="invalid_time")
    value = float(text)  # the pattern admits what float() reads; one past the range is that end of it
    return max(-sys.float_info.max, min(sys.float_info.max, value))



def _limit(text: str | None) -> int:
    if not text:
        return 100
    n = whole_number(text, 3)
    if n is None or not 1 <= n <= 500:
        raise RequestError("'limit' must be a whole number from 1 to 500", param="limit")
    return n


def _key(request: web.Request) -> str:
    key = request.match_info["key"]
    if len(key) > 200:
        raise NotFound("no such call", code="call_not_found")
    return key


# -- calls -----------------------------------------------------------------------------------


@requires("admin")
async def list_calls(request: web.Request) -> web.Response:
    """``GET /v1/admin/calls``: the newest calls first, filtered by ``status``,
    ``end_reason``, ``tag``, ``since``/``until``, ``limit``; 400 for a bad or repeated parameter."""
    s = request.app[SERVICES]
    q = functools.partial(query_value, request)
    now = time.time()
    limit = _limit(q("limit"))
    tag = q("tag") or None
    rows = await s.store.read(
        views.calls_page,
        since=_when(q("since"), now, "since"),
        until=_when(q("until"), now, "until"),
        status=q("status") or None,
        end_reason=q("end_reason") or None,
        limit=limit if tag is None else 2000,  # tags are not in the database: look further
    )
    calls = [c for c in map(_summary, rows) if tag is None or tag in c["outcome_tags"]][:limit]
    return json_response({"calls": masker(s.config)(calls)})


@requires("admin")
async def get_call(request: web.Request) -> web.Response:
    """``GET /v1/admin/calls/{key}``: one call record by its record key, with outcome tags; 404 if none."""
    s = request.app[SERVICES]
    key = _key(request)
    record = await s.registry.record(key, exact=True)
    if record is None:
        return error_response(f"no call {key!r}", "call_not_found", 404)
    outputs = [j["output"] for j in (record.get("end_function") or {}).get("steps", [])]
    record["outcome_tags"] = _tags(record, outputs)
    return json_response(masker(s.config)(record))


def _redacted(headers: dict[str, str]) -> dict[str, str]:
    return {k: "[redacted]" if _SECRET_HEADER.search(k) else v for k, v in headers.items()}


@requires("admin")
async def sandbox(request: web.Request) -> web.Response:
    """``callgate end-function test`` on a stored call, with the server's config."""
    s = request.app[SERVICES]
    key = _key(request)
    record = await s.registry.record(key, exact=True)
    if record is None:
        return error_response(f"no call {key!r}", "call_not_found", 404)
    try:
        report = await run_sandbox(s.config, record, timeout_s=SANDBOX_TIMEOUT_S)
    except TimeoutError:
        return error_response(f"the steps did not finish within {SANDBOX_TIMEOUT_S:g} s", "sandbox_timeout", 504)
    for step in report["steps"]:
        for effect in step["effects"]:
            if isinstance(effect.get("headers"), dict):
                effect["headers"] = _redacted(effect["headers"])
    return json_response(masker(s.config)(report))


# -- dead letters and retries ---------------------------------------------------------------------


@requires("admin")
async def dead_letters(request: web.Request) -> web.Response:
    """``GET /v1/admin/dead-letters``: failed and blocked steps, failed deliveries, delivery counts by status."""
    s = request.app[SERVICES]
    failed = await s.store.read(ops.list_jobs, status=JobStatus.FAILED)
    blocked = await s.store.read(ops.list_jobs, status=JobStatus.BLOCKED)
    deliveries = await s.store.read(ops.list_deliveries, status=DeliveryStatus.FAILED)
    body = {
        "jobs": [j.to_json() for j in sorted(failed + blocked, key=lambda j: -j.id)],
        "deliveries": [d.to_json() for d in deliveries],
        "delivery_counts": await s.store.read(ops.count_deliveries),
    }
    return json_response(masker(s.config)(body))


async def _retry(request: web.Request, kind: str, ids: list[Any] | None) -> int:
    """Failed steps (``kind`` ``jobs``; the ones blocked behind them too) or failed
    deliveries back to pending, as ``callgate jobs|deliveries retry`` do, and their
    worker woken at once; how many. ``ids`` ``None``: every failed one."""
    s = request.app[SERVICES]
    op, worker = (ops.retry_jobs, s.pipeline) if kind == "jobs" else (ops.retry_deliveries, s.delivery)
    n = await s.store.write(op, ids, time.time())
    if n and worker is not None:
        worker.kick()
    return int(n)


@requires("admin")
async def retry_job(request: web.Request) -> web.Response:
    """One finished step back to pending (the steps blocked behind it too)."""
    raw = request.match_info["job_id"]
    job_id = whole_number(raw, 18)
    if job_id is None:
        return error_response(f"no job {raw[:40]!r}", "job_not_found", 404)
    n = await _retry(request, "jobs", [job_id])
    if n == 0:
        job = await request.app[SERVICES].store.read(ops.job, job_id)
        if job is None:
            return error_response(f"no job {raw!r}", "job_not_found", 404)
        raise JobNotFinished(f"job {job_id} is {job.status}: only a finished step can be retried")
    return json_response({"retried": n})


@requires("admin")
async def retry_failed_jobs(request: web.Request) -> web.Response:
    """Every failed step (and those blocked behind them) back to pending."""
    return json_response({"retried": await _retry(request, "jobs", None)})


@requires("admin")
async def retry_delivery(request: web.Request) -> web.Response:
    """``POST /v1/admin/deliveries/{event_id}/retry``: that failed delivery back to pending; 404 if none."""
    event_id = request.match_info["event_id"]
    n = await _retry(request, "deliveries", [event_id])
    if n == 0:
        return error_response(f"no failed delivery of event {event_id!r}", "delivery_not_found", 404)
    return json_response({"retried": n})


@requires("admin")
async def retry_failed_deliveries(request: web.Request) -> web.Response:
    """``POST /v1/admin/deliveries/retry``: every failed delivery back to pending."""
    return json_response({"retried": await _retry(request, "deliveries", None)})


# -- live ----------------------------------------------------------------------------------------------


@requires("admin")
async def stream(request: web.Request) -> web.StreamResponse:
    """``event: change`` (``data: {"n": ...}``) whenever the database's
    :func:`~proxy.storage.views.fingerprint` changed; ``: keep-alive`` when idle."""
    s = request.app[SERVICES]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    keepalive_s = s.config.control.sse_keepalive_s
    last: Any = None
    n, quiet = 0, 0.0
    try:
        while True:
            mark = await s.store.read(views.fingerprint)
            if mark != last:
                last, n, quiet = mark, n + 1, 0.0
                await response.write(encode_event(json.dumps({"n": n}), event="change", id=str(n)))
            elif quiet >= keepalive_s:
                quiet = 0.0
                await response.write(b": keep-alive\n\n")
            await asyncio.sleep(WATCH_S)
            quiet += WATCH_S
    except ConnectionError:
        pass  # the page left
    return response
