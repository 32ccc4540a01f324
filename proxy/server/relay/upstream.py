"""The upstream call: headers both ways, the URL, the timeout, and opening it.

The runtime's headers go upstream minus hop-by-hop ones (RFC 9110), then
``upstream.headers`` over them; with ``auth.keys`` set, or ``upstream.api_key`` set, the
runtime's ``Authorization`` and ``api-key`` never do; ``upstream.api_key`` (when set) goes
as ``Authorization: Bearer <key>`` or, with ``upstream.api_key_header: api-key``, as
``api-key: <key>``. The URL is ``upstream.base_url`` with the path appended before its
query string. Opening fails with :class:`~proxy.errors.UpstreamUnreachable` (502),
:class:`~proxy.errors.UpstreamTimeout` (504) or :class:`~proxy.errors.UpstreamStatus`
(its status, body and rate-limit headers relayed).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from ...config import UpstreamConfig
from ...config.sections import with_path
from ...errors import UpstreamStatus, UpstreamTimeout, UpstreamUnreachable
from ..services import Services

__all__ = ["downstream_headers", "error_headers", "open_upstream", "safe_url", "upstream_headers", "upstream_url"]

# Headers not copied between hops (RFC 9110 connection-specific ones, and those
# aiohttp sets itself); upstream.headers may not name them either.
_HOP = UpstreamConfig.HOP_BY_HOP
_CREDENTIALS = frozenset({"authorization", "api-key"})
# What an upstream error answer keeps on its way to the runtime (besides its status and body).
_KEPT_ON_ERROR = frozenset({"retry-after", "retry-after-ms"})


def upstream_headers(
    headers: Any,
    api_key: str,
    *,
    keep_auth: bool = True,
    key_header: str = "authorization",
    extra: Mapping[str, str] | None = None,
) -> CIMultiDict[str]:
    """The runtime's ``headers`` minus hop-by-hop ones, then ``extra``
    (``upstream.headers``) replacing any of the same name, then ``api_key`` (when set)
    as ``Authorization: Bearer <key>`` or, ``key_header`` ``"api-key"``, as
    ``api-key: <key>``. The runtime's ``Authorization`` and ``api-key`` never go
    upstream when ``api_key`` is set or ``keep_auth`` is false (callgate's own keys
    are in use)."""
    drop = _HOP if keep_auth and not api_key else _HOP | _CREDENTIALS
    out: CIMultiDict[str] = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in drop)
    for name, value in (extra or {}).items():
        out[name] = value
    if api_key and key_header == "api-key":
        out["api-key"] = api_key
    elif api_key:
        out["Authorization"] = f"Bearer {api_key}"
    return out


def downstream_headers(headers: Any) -> dict[str, str]:
    """The upstream's response headers minus hop-by-hop ones."""
    return {k: v for k, v in headers.items() if k.lower() not in _HOP}


def error_headers(headers: Any) -> dict[str, str]:
    """Of an upstream error answer's headers, those the runtime gets with it:
    ``Retry-After`` (s or an HTTP date), ``retry-after-ms`` and every ``x-ratelimit-*``."""
    return {k: v for k, v in headers.items() if k.lower() in _KEPT_ON_ERROR or k.lower().startswith("x-ratelimit-")}


@lru_cache(maxsize=64)
def upstream_url(base_url: str, path: str) -> URL:
    """``base_url`` with ``path`` (``"/chat/completions"``, ``"/models"``) appended to its
    path, before its query string (:func:`~proxy.config.sections.with_path`)."""
    return with_path(URL(base_url), path)


def safe_url(entry: UpstreamConfig, path: str = "/chat/completions") -> str:
    """The upstream's URL for the logs: no query string (it may hold a key), no user info."""
    return str(upstream_url(entry.base_url, path).with_query(None).with_user(None))


@lru_cache(maxsize=64)
def _timeout(t: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, sock_connect=t, sock_read=t)


async def open_upstream(
    s: Services, method: str, path: str, headers: Any, entry: UpstreamConfig | None = None, **kw: Any
) -> aiohttp.ClientResponse:
    """Send the request (the runtime's ``headers``, made fit for the upstream) to
    ``entry`` (default: the pool's first in ``routing.order``); the response once its
    head came. Raises as the module docstring says."""
    up = entry or s.config.primary
    sent = upstream_headers(
        headers, up.api_key, keep_auth=not s.config.auth.keys, key_header=up.api_key_header, extra=up.headers
    )
    if "data" in kw:
        sent["Content-Type"] = "application/json"
    try:
        resp = await s.session.request(method, upstream_url(up.base_url, path), timeout=_timeout(up.timeout_s), headers=sent, **kw)
    except TimeoutError:
        raise UpstreamTimeout(f"upstream sent nothing within {up.timeout_s} s") from None
    except aiohttp.ClientError as e:
        raise UpstreamUnreachable(f"upstream unreachable: {type(e).__name__}: {e}") from None
    if resp.status >= 400:
        try:
            body = await resp.read()
        except (aiohttp.ClientError, TimeoutError):
            body = b""
        finally:
            resp.release()
        raise UpstreamStatus(resp.status, body, resp.headers.get("Content-Type"), error_headers(resp.headers))
    return resp
