"""What a request brings, checked: bodies read with a size limit, parsed as JSON
objects (:mod:`proxy.core.json_body`); call ids; whole numbers in paths, queries and
headers. And what the JSON routes answer (:func:`json_response`,
:func:`error_response`).

Errors are :class:`~proxy.errors.RequestError` (400, ``param`` naming where) and
:class:`~proxy.errors.BodyTooLarge` (413), rendered in OpenAI's error shape by the
app's middleware.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from ..core.call_id import InvalidCallId
from ..core.json_body import BadBody, json_object
from ..errors import BodyTooLarge, RequestError, openai_error_body

__all__ = [
    "body_checked", "checked", "error_response", "json_response", "query_value", "read_body", "read_json_object",
    "whole_number",
]

T = TypeVar("T")


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


def body_checked(read: Callable[[], T]) -> T:
    """``read()``, its :class:`~proxy.core.json_body.BadBody` as a
    :class:`RequestError` (400) with the same message, ``param`` and ``code``."""
    try:
        return read()
    except BadBody as e:
        raise RequestError(str(e), param=e.param, code=e.code) from None


def checked(resolve: Callable[[], str | None]) -> str | None:
    """A call id from ``resolve()``, or :class:`RequestError` (400) naming its source
    when callgate will not take it (:func:`~proxy.core.call_id.check_call_id`)."""
    try:
        return resolve()
    except InvalidCallId as e:
        raise RequestError(str(e), param=e.source, code="invalid_call_id") from None


async def read_json_object(
    request: web.Request, limit: int, max_depth: int = 64, *, empty: dict[str, Any] | None = None
) -> dict[str, Any]:
    """:func:`read_body` then :func:`~proxy.core.json_body.json_object`; an empty body
    gives ``empty`` when it is given (an error otherwise)."""
    raw = await read_body(request, limit)
    if empty is not None and not raw.strip():
        return empty
    return body_checked(lambda: json_object(raw, max_depth))


def query_value(request: web.Request, name: str) -> str | None:
    """The query parameter ``name`` (``None`` when absent), or :class:`RequestError`
    (400, ``code: "repeated_parameter"``) when it is given more than once: every
    query parameter callgate reads takes one value, and taking the first of several
    would answer a question the client did not ask."""
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise RequestError(f"{name!r} is given {len(values)} times; it takes one value", param=name, code="repeated_parameter")
    return values[0] if values else None


def whole_number(text: str, most_digits: int = 18) -> int | None:
    """``text`` as a whole number when it is 1 to ``most_digits`` ASCII digits, else
    ``None`` (``str.isdigit`` alone admits ``²`` and other digits ``int`` refuses, and
    ``int`` of thousands of digits raises)."""
    return int(text) if 0 < len(text) <= most_digits and text.isascii() and text.isdigit() else None


def json_response(data: Any, status: int = 200) -> web.Response:
    """``data`` as JSON (UTF-8, not ASCII-escaped; anything else as its ``str``)."""
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False, default=str))


def error_response(message: str, code: str, status: int) -> web.Response:
    """An ``invalid_request_error`` in OpenAI's error shape."""
    return json_response(openai_error_body(message, type="invalid_request_error", code=code), status)
