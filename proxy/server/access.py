"""The access log and each request's log context.

:func:`access_log` is the outermost middleware: it gives the request a ``request_id``
(its turn's id on the relay) in the log context (:func:`proxy.logs.context`), so every
line logged while serving it carries it (and the ``call_id`` once known), and, with
``log_access`` (default true), writes one line per request to the ``callgate.access``
logger at info: ``method path status=… route=… profile=… ttft_ms=… duration_ms=…
bytes=… key=…`` (the key's name, never its secret) and ``upstream=…`` (the winning
upstream) when the pool has more than one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from .. import logs
from ..core.ids import new_id
from .auth import key_of
from .scrape import labels
from .services import SERVICES

__all__ = ["access_log"]

log = logging.getLogger("callgate.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """See the module docstring."""
    ctx = logs.context()
    ctx["request_id"] = new_id("req_")
    if "call_id" in request.match_info:  # the call API's routes
        ctx["call_id"] = request.match_info["call_id"]
    started = time.perf_counter()
    status, size = 499, 0
    try:
        response = await handler(request)
        status, size = response.status, response.body_length
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        if request.app[SERVICES].config.log_access and log.isEnabledFor(logging.INFO):  # no line built for nobody
            _line(request, ctx, status, size, round((time.perf_counter() - started) * 1000, 3))


def _line(request: web.Request, ctx: dict[str, object], status: int, size: int, duration_ms: float) -> None:
    s = request.app[SERVICES]
    route, profile = labels(request)
    key = key_of(request)
    parts = [f"{request.method} {request.path} status={status} route={route}"]
    if profile:
        parts.append(f"profile={profile}")
    ttft = ctx.pop("ttft_ms", None)
    upstream = ctx.pop("upstream", None)
    if ttft is not None:
        parts.append(f"ttft_ms={ttft}")
    parts.append(f"duration_ms={duration_ms} bytes={size}")
    parts.append(f"key={key.name if key else '-'}")
    if upstream is not None and len(s.pool.entries) > 1:
        parts.append(f"upstream={upstream}")
    log.info(" ".join(parts))
