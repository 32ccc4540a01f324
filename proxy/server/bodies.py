"""Request bodies: read with a size limit, parsed as JSON objects.

Errors are :class:`~proxy.errors.RequestError` (400) and
:class:`~proxy.errors.BodyTooLarge` (413), rendered in OpenAI's error shape by the
app's middleware.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..errors import BodyTooLarge, RequestError

__all__ = ["json_object", "read_body", "read_json_object"]


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, or :class:`BodyTooLarge` past ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(f"request body is {request.content_length} bytes; the limit is {limit}")
    parts: list[bytes] = []
    size = 0
    async for piece in request.content.iter_any():
        size += len(piece)
        if size > limit:
            raise BodyTooLarge(f"request body is over the limit of {limit} bytes")
        parts.append(piece)
    return b"".join(parts)


def json_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object (:class:`RequestError`, 400, otherwise)."""
    try:
        body = json.loads(raw)
    except ValueError as e:
        raise RequestError(f"request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    return body


async def read_json_object(request: web.Request, limit: int, *, empty: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`read_body` then :func:`json_object`; an empty body gives ``empty``
    when it is given (an error otherwise)."""
    raw = await read_body(request, limit)
    if empty is not None and not raw.strip():
        return empty
    return json_object(raw)
