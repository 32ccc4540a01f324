"""The upstream call: headers both ways, the URL, the timeout, and opening it.

The runtime's headers go upstream minus hop-by-hop ones (RFC 9110); with
``auth.keys`` set its ``Authorization`` and ``api-key`` never do; ``upstream.api_key``
(when set) is the ``Authorization``. Opening fails with
:class:`~proxy.errors.UpstreamUnreachable` (502), :class:`~proxy.errors.UpstreamTimeout`
(504) or :class:`~proxy.errors.UpstreamStatus` (its status and body relayed).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from multidict import CIMultiDict

from ...errors import UpstreamStatus, UpstreamTimeout, UpstreamUnreachable
from ..services import Services

__all__ = ["abandon", "downstream_headers", "open_upstream", "upstream_headers"]

# Headers not copied between hops (RFC 9110 connection-specific ones, and those
# aiohttp sets itself).
_HOP = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "TE", "Trailer", "Upgrade",
        "Host", "Content-Length", "Content-Encoding", "Accept-Encoding",
    )
)


def upstream_headers(headers: Any, api_key: str, *, keep_auth: bool = True) -> CIMultiDict[str]:
    """The runtime's headers minus hop-by-hop ones; ``api_key`` (when set) as the
    ``Authorization``. ``keep_auth`` false (callgate's own keys are in use): the
    runtime's ``Authorization`` and ``api-key`` never go upstream."""
    drop = _HOP if keep_auth else _HOP | {"authorization", "api-key"}
    out: CIMultiDict[str] = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in drop)
    if api_key:
        out["Authorization"] = f"Bearer {api_key}"
    return out


def downstream_headers(headers: Any) -> dict[str, str]:
    """The upstream's response headers minus hop-by-hop ones."""
    return {k: v for k, v in headers.items() if k.lower() not in _HOP}


def _timeout(s: Services) -> aiohttp.ClientTimeout:
    t = s.config.upstream.timeout_s
    return aiohttp.ClientTimeout(total=None, sock_connect=t, sock_read=t)


def _url(s: Services, path: str) -> str:
    return s.config.upstream.base_url.rstrip("/") + path


async def open_upstream(s: Services, method: str, path: str, headers: Any, **kw: Any) -> aiohttp.ClientResponse:
    """Send the request (the runtime's ``headers``, made fit for the upstream); the
    response once its head came. Raises as the module docstring says."""
    sent = upstream_headers(headers, s.config.upstream.api_key, keep_auth=not s.config.auth.keys)
    if "data" in kw:
        sent["Content-Type"] = "application/json"
    try:
        resp = await s.session.request(method, _url(s, path), timeout=_timeout(s), headers=sent, **kw)
    except TimeoutError:
        raise UpstreamTimeout(f"upstream sent nothing within {s.config.upstream.timeout_s} s") from None
    except aiohttp.ClientError as e:
        raise UpstreamUnreachable(f"upstream unreachable: {type(e).__name__}: {e}") from None
    if resp.status >= 400:
        try:
            body = await resp.read()
        except (aiohttp.ClientError, TimeoutError):
            body = b""
        finally:
            resp.release()
        raise UpstreamStatus(resp.status, body, resp.headers.get("Content-Type"))
    return resp


def abandon(fut: asyncio.Future[aiohttp.ClientResponse]) -> None:
    """An upstream request nobody will read: cancelled, its answer (or error) let go."""
    fut.add_done_callback(_discard)
    fut.cancel()


def _discard(fut: asyncio.Future[aiohttp.ClientResponse]) -> None:
    if not fut.cancelled() and fut.exception() is None:
        fut.result().release()
