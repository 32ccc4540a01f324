"""``GET /readyz``: whether this instance should get new calls (readiness), apart from
``GET /healthz`` (liveness: the process answers).

Ready (200, ``{"status": "ready"}``) when the database answers
(:meth:`~proxy.storage.Store.ping`, within :data:`PING_TIMEOUT_S`) and, for each
runtime profile, at least one upstream of its pool is not cooling. Otherwise 503 in
OpenAI's error shape (:class:`~proxy.errors.NotReady`), the message naming every
reason and ``code`` the first: ``shutting_down`` (SIGTERM: the drain has begun),
``storage_unavailable``, ``upstreams_cooling``. A load balancer or Kubernetes then
sends calls elsewhere, and back once the cooldown is over or the database is back,
without restarting anything (docs/operations.md).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..errors import NotReady, StoreUnavailable
from .services import SERVICES, Services

__all__ = ["PING_TIMEOUT_S", "not_ready", "readyz"]

PING_TIMEOUT_S = 2.0


async def not_ready(s: Services) -> list[tuple[str, str]]:
    """Every reason ``s`` is not ready, as ``(code, message)``; empty when ready."""
    reasons: list[tuple[str, str]] = []
    if s.drain.closing:
        reasons.append(("shutting_down", "callgate is shutting down: send new calls elsewhere"))
    try:
        async with asyncio.timeout(PING_TIMEOUT_S):
            await s.store.ping()
    except StoreUnavailable as e:
        reasons.append(("storage_unavailable", str(e)))
    except TimeoutError:
        reasons.append(("storage_unavailable", f"the database did not answer within {PING_TIMEOUT_S} s ({s.store.path})"))
    states = s.pool.states()
    pools: dict[tuple[str, ...], list[str]] = {}
    for name, profile in sorted(s.profiles.items()):
        pools.setdefault(tuple(s.pool.names_for(profile.upstreams)), []).append(name)
    for names, profiles in pools.items():
        if names and all(states[n]["state"] == "cooling" for n in names):
            left = ", ".join(f"{n} ({states[n]['cooling_s']} s left)" for n in names)
            reasons.append(("upstreams_cooling", f"every upstream of profile {', '.join(profiles)} is cooling: {left}"))
    return reasons


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz`` (no key): 200 ``{"status": "ready"}``, or
    :class:`~proxy.errors.NotReady` (503) naming every reason (see the module docstring)."""
    reasons = await not_ready(request.app[SERVICES])
    if reasons:
        raise NotReady("not ready: " + "; ".join(message for _, message in reasons), code=reasons[0][0])
    return web.json_response({"status": "ready"}, headers={"Cache-Control": "no-store"})
