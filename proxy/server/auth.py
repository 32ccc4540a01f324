"""API keys with scopes: who may do what.

``auth.keys`` lists ``{name, key, scopes, calls_of}``. Every route says the scope it
needs (:func:`requires`): ``relay`` (``/…/chat/completions``, ``/…/models``),
``calls:read`` (a call's record and events), ``calls:write`` (``/end``, ``/state``),
``admin`` (operations and pages). A key comes as ``Authorization: Bearer <key>`` or
``api-key: <key>`` (the header Azure-style clients send), or on the front doors'
routes as the ``key`` query parameter (:func:`key_in_query`); it is compared with every
configured key in constant time (``hmac.compare_digest``) and never logged. No key
or an unknown one is 401; a key without the route's scope is 403 (OpenAI's error
shape, by the app's middleware). ``/healthz``, ``/readyz`` and ``/openapi.json`` need no key.

With no keys configured every route is open, which ``callgate serve`` allows only
on a loopback address (see :func:`check_exposure`).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from ..config import AuthConfig, KeyConfig
from ..errors import Forbidden, Unauthorized

__all__ = ["KEY", "Keys", "authenticate", "check_exposure", "key_in_query", "key_of", "requires", "visible"]

log = logging.getLogger("callgate.auth")

H = TypeVar("H", bound=Callable[..., Awaitable[web.StreamResponse]])

KEY = web.RequestKey("callgate_key", object)  # request[KEY]: the KeyConfig of the request, or None (no auth)


def requires(scope: str) -> Callable[[H], H]:
    """Mark a handler with the scope its route needs."""

    def mark(handler: H) -> H:
        handler.scope = scope  # type: ignore[attr-defined]
        return handler

    return mark


def key_in_query(handler: H) -> H:
    """Mark a handler whose key may also come as the ``key`` query parameter (the
    WebSocket platforms can only be given a URL). The access log never writes the query."""
    handler.key_in_query = True  # type: ignore[attr-defined]
    return handler


class Keys:
    """The configured keys; :meth:`match` finds the one a secret is."""

    def __init__(self, cfg: AuthConfig) -> None:
        self.replace(cfg)

    def replace(self, cfg: AuthConfig) -> None:
        """Match ``cfg``'s keys from now on (a reload); a request under way keeps its key."""
        keys = list(cfg.keys)
        self._secrets = [(secret.encode(), k) for k in keys for secret in k.secrets]
        self.keys = keys

    def __bool__(self) -> bool:
        return bool(self.keys)

    def match(self, secret: str) -> KeyConfig | None:
        """The key whose secret this is, comparing with every key in constant time."""
        given = secret.encode("utf-8", "surrogateescape")
        found = None
        for expected, key in self._secrets:
            if hmac.compare_digest(given, expected):
                found = key
        return found


def _presented(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if getattr(request.match_info.handler, "key_in_query", False) and "key" in request.query:
        return request.query["key"] or None
    return request.headers.get("api-key") or None


def authenticate(keys: Keys) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The middleware: the route's scope, the request's key."""

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        scope = getattr(request.match_info.handler, "scope", None)
        request[KEY] = None
        if scope is None or not keys:
            return await handler(request)
        secret = _presented(request)
        key = keys.match(secret) if secret else None
        if key is None:
            raise Unauthorized("no valid API key: send Authorization: Bearer <key> (or api-key: <key>)")
        if scope not in key.scopes:
            raise Forbidden(f"key {key.name!r} has no {scope!r} scope")
        request[KEY] = key
        return await handler(request)

    return middleware


def key_of(request: web.Request) -> KeyConfig | None:
    """The request's key (``None`` when callgate runs without keys)."""
    found = request.get(KEY)
    return found if isinstance(found, KeyConfig) else None


def visible(key: KeyConfig | None, owner: str | None) -> bool:
    """Whether ``key`` may see a call made by key ``owner`` (``calls_of``)."""
    return key is None or key.calls_of is None or owner in key.calls_of


def check_exposure(host: str, cfg: AuthConfig) -> str | None:
    """Why serving on ``host`` with ``cfg`` is refused, or ``None``. With no keys only a
    loopback address is allowed, unless ``auth.allow_unauthenticated`` (logged)."""
    if cfg.keys or _loopback(host):
        return None
    if cfg.allow_unauthenticated:
        log.warning("serving on %s with no API keys: anyone who reaches it can use the upstream key and read every call", host)
        return None
    return (
        f"refusing to serve on {host} with no API keys: anyone who reaches it could spend the upstream key "
        "and read every call. Add one under auth.keys, e.g.\n"
        "  auth:\n    keys:\n      - {name: runtime, key: \"${CALLGATE_KEY}\", scopes: [relay]}\n"
        "      - {name: call-layer, key: \"${CALL_LAYER_KEY}\", scopes: [calls:read, calls:write]}\n"
        "or set auth.allow_unauthenticated: true on a private network"
    )


def _loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

