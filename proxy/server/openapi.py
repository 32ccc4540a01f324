"""``GET /openapi.json``: the OpenAPI 3.1 document of callgate's own HTTP API,
kept in the repository as ``proxy/server/openapi.json`` (public: it holds no data)."""

from __future__ import annotations

import functools
from pathlib import Path

from aiohttp import web

__all__ = ["SPEC_PATH", "openapi", "spec_bytes"]

SPEC_PATH = Path(__file__).with_name("openapi.json")


@functools.cache
def spec_bytes() -> bytes:
    """The document as stored (bytes, JSON)."""
    return SPEC_PATH.read_bytes()


async def openapi(request: web.Request) -> web.Response:
    """``GET /openapi.json`` (no key): the document as stored."""
    return web.Response(body=spec_bytes(), content_type="application/json")
