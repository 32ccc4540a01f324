"""What a request brings, checked: bodies read with a size limit, parsed as JSON
objects no deeper than ``server.max_json_depth``; call ids; whole numbers in paths,
queries and headers. And what the JSON routes answer (:func:`json_response`,
:func:`error_response`).

A lone surrogate (``"\\ud800"``, an escape JSON's grammar allows but no character;
or its UTF-8-style bytes, which Python's parser lets through) becomes U+FFFD in the
parsed body: unreadable to the JSON encoder and the database, it lost the call's
record (the request answered 200, the call was never stored). The bytes relayed
upstream stay as they came.

Errors are :class:`~proxy.errors.RequestError` (400, ``param`` naming where) and
:class:`~proxy.errors.BodyTooLarge` (413), rendered in OpenAI's error shape by the
app's middleware.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..core.call_id import InvalidCallId
from ..errors import BodyTooLarge, RequestError, openai_error_body

__all__ = [
    "check_depth", "checked", "error_response", "json_object", "json_response", "read_body", "read_json_object",
    "whole_number",
]

# What a raw body with a lone surrogate holds: a \\uD800-\\uDFFF escape, or the bytes
# ED A0-BF .. (each pattern searched only when its first byte is there at all).
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_ENCODED_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")
_SURROGATE = re.compile("[\ud800-\udfff]")


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


def json_object(raw: bytes, max_depth: int = 64) -> dict[str, Any]:
    """A request body that must be a JSON object nested at most ``max_depth`` deep
    (:class:`RequestError`, 400, otherwise, naming the path that goes too deep)."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise RequestError(f"request body is nested deeper than {max_depth}", code="json_too_deep") from None
    except ValueError as e:
        raise RequestError(f"request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    too_deep = _too_deep(body, max_depth)
    if too_deep is not None:
        raise RequestError(f"request body is nested deeper than {max_depth} at {too_deep}", param=too_deep, code="json_too_deep")
    if _may_hold_surrogates(raw):
        body = _scrubbed(body)
    return body


def _may_hold_surrogates(raw: bytes) -> bool:
    """Whether ``raw`` may hold a lone surrogate (a pair's escapes match too)."""
    escaped = b"\\" in raw and _ESCAPED_SURROGATE.search(raw) is not None
    return escaped or (b"\xed" in raw and _ENCODED_SURROGATE.search(raw) is not None)


def _scrubbed(value: Any) -> Any:
    """``value`` with each lone surrogate in its strings (keys too) replaced by U+FFFD
    (recursive: called on a value no deeper than ``max_depth``)."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_scrubbed(k): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    return value


def _too_deep(value: Any, max_depth: int) -> str | None:
    """The path of the first value deeper than ``max_depth``, or ``None`` (iterative:
    no recursion however deep the value)."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        if depth > max_depth:
            return path or "$"
        if isinstance(item, dict):
            stack += [(v, depth + 1, f"{path}.{k}" if path else str(k)) for k, v in item.items() if isinstance(v, (dict, list))]
        elif isinstance(item, list):
            stack += [(v, depth + 1, f"{path}[{i}]") for i, v in enumerate(item) if isinstance(v, (dict, list))]
    return None


def check_depth(value: Any, max_depth: int, where: str) -> None:
    """:class:`RequestError` (400) when ``value`` (e.g. metadata parsed out of a JSON
    string field) is nested deeper than ``max_depth``; ``where`` names it."""
    too_deep = _too_deep(value, max_depth)
    if too_deep is not None:
        path = f"{where}.{too_deep}" if too_deep != "$" else where
        raise RequestError(f"{where} is nested deeper than {max_depth} at {path}", param=path, code="json_too_deep")


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
    """:func:`read_body` then :func:`json_object`; an empty body gives ``empty``
    when it is given (an error otherwise)."""
    raw = await read_body(request, limit)
    if empty is not None and not raw.strip():
        return empty
    return json_object(raw, max_depth)


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
