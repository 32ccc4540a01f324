"""The aiohttp application: routes, the OpenAI-shaped error middleware, start and stop.

Routes: ``POST /v1/chat/completions``, ``GET /v1/models`` (and the same under
``/<profile>/``, see :mod:`proxy.profiles`), ``GET /healthz`` (liveness),
``GET /readyz`` (readiness, :mod:`.ready`),
``GET /v1/calls/{call_id}``, ``GET /v1/calls/{call_id}/events``,
``POST /v1/calls/{call_id}/end``, ``PATCH /v1/calls/{call_id}/state``,
``GET /openapi.json`` (:mod:`.openapi`), and the operations routes of :mod:`.admin`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from ..calls.registry import CallRegistry
from ..config import Config, safe_url
from ..endfn.effects import Effects
from ..endfn.pipeline import Pipeline
from ..errors import CallgateError, UpstreamStatus, openai_error_body
from ..profiles import resolve_profiles
from ..storage import OpenMode, open_store
from ..telemetry import Telemetry
from ..telemetry import build as build_telemetry
from . import admin, call_api, doors, relay
from .access import access_log
from .auth import Keys, authenticate
from .delivery import EventDelivery
from .openapi import openapi
from .scrape import METRICS_URL, count_requests, metrics, metrics_site
from .pool import UpstreamPool
from .ready import readyz
from .reload import Reloader, fingerprint
from .services import SERVICES, Services

__all__ = ["build_app", "running", "serve"]

log = logging.getLogger("callgate")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _upstream_status_response(e: UpstreamStatus) -> web.Response:
    """Relay the upstream's error body when it is already OpenAI-shaped JSON (else
    wrap it in that shape), with its status and its rate-limit headers (``e.headers``)."""
    try:
        body = json.loads(e.body)
        if isinstance(body, dict) and isinstance(body.get("error"), (dict, str)):
            return web.Response(body=e.body, status=e.status, content_type="application/json", headers=e.headers)
    except ValueError:
        pass
    text = e.body.decode("utf-8", "replace")[:500]
    message = f"upstream answered HTTP {e.status}" + (f": {text}" if text else "")
    return web.json_response(
        openai_error_body(message, type="upstream_error", code=f"upstream_http_{e.status}"), status=e.status, headers=e.headers
    )


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error a client sees is ``{"error": {"message", "type", "param", "code"}}``."""
    try:
        return await handler(request)
    except UpstreamStatus as e:
        return _upstream_status_response(e)
    except CallgateError as e:
        return web.json_response(e.to_body(), status=e.status)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        etype = "invalid_request_error" if e.status < 500 else "server_error"
        return web.json_response(
            openai_error_body(e.reason or str(e.status), type=etype, code=f"http_{e.status}"),
            status=e.status,
            headers={k: v for k, v in e.headers.items() if k.lower() == "allow"},
        )
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response(openai_error_body("internal error in callgate", code="internal_error"), status=500)


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz`` (no key): ``{"status": "ok", "calls": calls in memory,
    "upstreams": {name: {"state": "ok" | "cooling" | "probing", "cooling_s": s left, "in_flight": n}},
    "config": {"fingerprint": 16 hex digits, "loaded_at": Unix s}}`` (:mod:`.reload`)."""
    s = request.app[SERVICES]
    return web.json_response({"status": "ok", "calls": len(s.registry), "upstreams": s.pool.states(), "config": s.loaded.as_json()})


async def _drain(app: web.Application) -> None:
    """After the listener closed: replies in flight get ``server.drain_s`` (:mod:`.drain`)."""
    s = app[SERVICES]
    await s.drain.wait(s.config.server.drain_s)


async def _close_doors(app: web.Application) -> None:
    """After the drain: the front doors' sockets close (:meth:`.doors.Doors.close`)."""
    await app[doors.DOORS].close()


def build_app(config: Config) -> web.Application:
    """The application for ``config``; its services start with the app."""
    keys = Keys(config.auth)
    app = web.Application(
        middlewares=[access_log, count_requests, openai_errors, authenticate(keys)], client_max_size=config.server.max_body_bytes + 1
    )
    app.router.add_post("/v1/chat/completions", relay.chat_completions)
    app.router.add_get("/v1/models", relay.models)
    app.router.add_post("/{profile}/v1/chat/completions", relay.chat_completions)
    app.router.add_get("/{profile}/v1/models", relay.models)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/calls/{call_id}", call_api.get_call)
    app.router.add_get("/v1/calls/{call_id}/events", call_api.call_events)
    app.router.add_post("/v1/calls/{call_id}/end", call_api.end_call)
    app.router.add_patch("/v1/calls/{call_id}/state", call_api.patch_state)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/metrics", metrics)
    admin.add_routes(app)
    doors.add_routes(app)
    app.cleanup_ctx.append(lambda app: _lifecycle(app, config, keys))
    app.on_shutdown.append(_drain)
    app.on_shutdown.append(_close_doors)
    app.on_response_prepare.append(_on_prepare)
    return app


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    if SERVICES in request.app:
        await request.app[SERVICES].drain.on_prepare(request, response)


async def _lifecycle(app: web.Application, config: Config, keys: Keys) -> AsyncIterator[None]:
    ef = config.end_function
    st = config.storage
    # the SQLite lock, then pending migrations (before anything that would need closing)
    store = open_store(st.path, url=st.url, mode=OpenMode.SERVE, wal_max_bytes=st.wal_max_bytes, pool_size=st.pool_size,
                       group_commit_ms=st.group_commit_ms)
    await store.start()
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    # No cookie jar: a proxy must not carry one caller's cookies into another's requests.
    session = aiohttp.ClientSession(connector=connector, auto_decompress=True, cookie_jar=aiohttp.DummyCookieJar())
    registry = CallRegistry(
        store,
        idle_timeout_s=ef.idle_timeout_s,
        after_hangup_s=ef.after_hangup_s,
        sweep_s=ef.sweep_s,
        cache_calls=config.storage.cache_calls,
        limits=config.limits,
        retention_s=None if st.retention_days is None else st.retention_days * 86400,
        steps=[(s.name, s.kind, list(s.after)) for s in ef.steps],
        deliver=bool(config.control.webhook.url),
    )
    telemetry = build_telemetry(config.telemetry, config.log_mask.fields)  # NOOP, and no import, when off
    pipeline = Pipeline(store, ef, Effects(session), me=registry.instance, telemetry=telemetry)
    registry.on_end = pipeline.kick
    delivery = None
    if config.control.webhook.url:
        delivery = EventDelivery(config.control.webhook, session, store, me=registry.instance, lease_s=ef.lease_s, poll_s=ef.poll_s)
        registry.on_events = delivery.kick
    app[SERVICES] = Services(
        config=config,
        profiles=resolve_profiles(config),
        registry=registry,
        session=session,
        store=store,
        pipeline=pipeline,
        delivery=delivery,
        pool=UpstreamPool(config),
        keys=keys,
        loaded=fingerprint(config),
        telemetry=telemetry,
    )
    store.on_notify = _dispatcher(registry, pipeline, delivery)  # other instances' commits (PostgreSQL)
    await registry.start()
    # Everything made so far (modules, models, config) lives as long as the server:
    # out of the collector's sight, a full collection no longer walks it, which kept
    # the event loop for tens of milliseconds now and then.
    gc.freeze()
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(registry.run_sweeper()), loop.create_task(pipeline.run())]
    if delivery is not None:
        tasks.append(loop.create_task(delivery.run()))
    try:
        yield
    finally:
        tasks[0].cancel()
        await registry.drain(timeout=ef.shutdown_grace_s)
        await pipeline.stop(ef.shutdown_grace_s)
        if delivery is not None:
            await delivery.drain(timeout=ef.shutdown_grace_s)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await session.close()
        await store.close()
        await _stop_telemetry(telemetry)


async def _stop_telemetry(telemetry: Telemetry) -> None:
    """Export the spans left, in a thread: a collector that is gone holds the stop
    2 s at most (then the exporter gives up)."""
    if telemetry.enabled:
        await asyncio.to_thread(telemetry.shutdown, 2.0)


def _dispatcher(registry: CallRegistry, pipeline: Pipeline, delivery: EventDelivery | None) -> Callable[[str], None]:
    """What a notification from the database wakes: ``events:<call>`` its followers,
    ``ended:<call>`` the cache, ``jobs`` the end function, ``deliveries`` the webhook."""

    def on_notify(payload: str) -> None:
        kind, _, key = payload.partition(":")
        if kind == "events":
            registry.wake(key)
        elif kind == "ended":
            registry.ended_elsewhere(key)
        elif kind == "reset":
            registry.reset_cache()
        elif kind == "jobs":
            pipeline.kick()
        elif kind == "deliveries" and delivery is not None:
            delivery.kick()

    return on_notify


@contextlib.asynccontextmanager
async def running(
    config: Config, host: str | None = None, port: int | None = None, *, sock: socket.socket | None = None
) -> AsyncIterator[tuple[web.Application, str]]:
    """Run callgate in this event loop; yields ``(app, base_url)`` (port 0 picks a free
    one; ``sock``: accept on this listening socket instead, as ``--workers`` do)."""
    app = build_app(config)
    srv = config.server
    async with contextlib.AsyncExitStack() as extra:
        if srv.metrics_port is not None:  # before the app is frozen: it records the URL
            app[METRICS_URL] = await extra.enter_async_context(metrics_site(app, srv.metrics_host, srv.metrics_port))
        # handler_cancellation: a runtime that hangs up cancels its upstream request.
        # shutdown_timeout: in-flight replies get a few seconds to finish on stop.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=5)
        await runner.setup()
        site: web.BaseSite
        if sock is not None:
            site = web.SockSite(runner, sock, backlog=srv.backlog)
        else:
            site = web.TCPSite(runner, host or srv.host, srv.port if port is None else port, backlog=srv.backlog)
        await site.start()
        app[SERVICES].drain.runner = runner
        h, p = runner.addresses[0][:2]
        try:
            yield app, f"http://{h}:{p}"
        finally:
            await runner.cleanup()


async def serve(config: Config, *, socket_fd: int | None = None, config_path: str | None = None) -> None:
    """Run until SIGINT/SIGTERM; SIGHUP reloads ``config_path`` (:mod:`.reload`)
    (``socket_fd``: one of ``--workers``, on the parent's socket). Otherwise it takes the listening socket of a server running on the same
    host and port, or binds it (:mod:`.handoff`), and offers it to the next one."""
    import signal
    import sys

    from . import handoff

    # The database's threads hand the interpreter back to the event loop within 1 ms
    # (Python's default is 5): with PostgreSQL's pool the added TTFT p99 at 25 calls
    # went from 8.5 ms to 3 ms (tests/bench/capacity.py).
    sys.setswitchinterval(0.001)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(NotImplementedError):  # until the server runs, a SIGHUP has nothing to reload
        loop.add_signal_handler(signal.SIGHUP, log.warning, "SIGHUP while starting: nothing to reload yet")
    srv = config.server
    if socket_fd is not None:
        sock, taken = socket.socket(fileno=socket_fd), False
    else:
        socks, taken = await asyncio.to_thread(handoff.listen, srv.host, srv.port, srv.backlog)
        sock = socks[0]
    async with running(config, sock=sock) as (app, url):
        upstreams = ", ".join(safe_url(u) for u in config.pool)  # a user, password or query may hold a key
        log.info("callgate listening on %s, upstream %s%s", url, upstreams, " (the running server's socket, taken over)" if taken else "")
        offer = None if socket_fd is not None else handoff.Offer([sock], srv.host).start()
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, Reloader(app[SERVICES], config_path))
        if socket_fd is not None:
            from .workers import tell_ready

            tell_ready()
        await stop.wait()
        log.info("shutting down")
        if offer is not None:
            offer.close()  # the next server may take the name now
        await app[SERVICES].drain.quiesce(srv.drain_s, linger=offer is not None and offer.handed)
