"""``GET /metrics``: Prometheus text format (``prometheus-client``).

On the main port the route needs the ``admin`` scope; ``server.metrics_port`` serves
it again without a key, for a scraper on a private network. Counters and histograms
come from :mod:`proxy.metrics` (summed over ``--workers`` by the multiprocess
collector when ``PROMETHEUS_MULTIPROC_DIR`` is set); the gauges that describe the
database are read from it at each scrape:

* ``callgate_calls_active``: calls not ended (every instance's);
* ``callgate_dead_letters{kind="step"|"delivery"}``: end-function steps and
  control-event deliveries that failed for good (``callgate jobs|deliveries retry``);
* ``callgate_backlog{kind="step"|"delivery"}``: the ones waiting or under way.

Also here: :func:`count_requests`, the middleware behind ``callgate_requests_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from ..metrics import REQUESTS, labelled
from ..storage import ops
from .auth import requires
from .services import SERVICES, Services

__all__ = ["METRICS_URL", "count_requests", "labels", "metrics", "metrics_site"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

METRICS_URL: web.AppKey[str] = web.AppKey("callgate_metrics_url", str)
"""On the main app: the base URL of the ``server.metrics_port`` site, when it runs."""


def labels(request: web.Request) -> tuple[str, str]:
    """The route template and the runtime profile (configured names only)."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    if "/v1/chat/completions" not in route and "/v1/models" not in route:
        return route, ""
    s = request.app[SERVICES]
    name = request.match_info.get("profile") or s.config.default_profile
    return route, name if name in s.profiles else "unknown"


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``callgate_requests_total{route, profile, status}``; 499: the client went away."""
    status = 499
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        route, profile = labels(request)
        labelled(REQUESTS, route, profile, str(status)).inc()


class _Database:
    """The gauges read from the database at this scrape."""

    def __init__(self, values: dict[str, int]) -> None:
        self.values = values

    def collect(self) -> list[GaugeMetricFamily]:
        v = self.values
        active = GaugeMetricFamily("callgate_calls_active", "Calls not ended, from the database (every instance's)")
        active.add_metric([], v["calls_active"])
        dead = GaugeMetricFamily("callgate_dead_letters", "Steps and control-event deliveries failed for good", labels=["kind"])
        dead.add_metric(["step"], v["steps_failed"])
        dead.add_metric(["delivery"], v["deliveries_failed"])
        backlog = GaugeMetricFamily("callgate_backlog", "Steps and deliveries waiting or under way", labels=["kind"])
        backlog.add_metric(["step"], v["steps_pending"])
        backlog.add_metric(["delivery"], v["deliveries_pending"])
        return [active, dead, backlog]


async def _exposition(s: Services) -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        counters = await asyncio.to_thread(generate_latest, registry)  # reads every worker's files
    else:
        counters = generate_latest(REGISTRY)
    database = CollectorRegistry(auto_describe=False)
    database.register(_Database(await s.store.read(ops.gauges)))
    return counters + generate_latest(database)


@requires("admin")
async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics`` on the main port (``admin``)."""
    return _response(await _exposition(request.app[SERVICES]))


def _response(body: bytes) -> web.Response:
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


@contextlib.asynccontextmanager
async def metrics_site(main: web.Application, host: str, port: int) -> AsyncIterator[str]:
    """``GET /metrics`` without a key on ``host:port`` (``server.metrics_port``),
    for the services of ``main``; yields its base URL. ``SO_REUSEPORT``: every
    worker binds it, any one answers for all."""

    async def scrape(request: web.Request) -> web.Response:
        return _response(await _exposition(main[SERVICES]))

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=True)
    await site.start()
    h, p = runner.addresses[0][:2]
    try:
        yield f"http://{h}:{p}"
    finally:
        await runner.cleanup()
