"""A request's JSON body, checked (sans-IO): an object, nested at most
``max_depth`` deep, lone surrogates replaced.

A lone surrogate (``"\\ud800"``, an escape JSON's grammar allows but no character;
or its UTF-8-style bytes, which Python's parser lets through) becomes U+FFFD in the
parsed body: unreadable to the JSON encoder and the database, it lost the call's
record (the request answered 200, the call was never stored). The bytes relayed
upstream stay as they came.

Errors are :class:`BadBody` (``param``: where; ``code``: ``invalid_request`` or
``json_too_deep``): the server answers them 400 in OpenAI's error shape.
"""

from __future__ import annotations

import re
from typing import Any

from . import json_codec

__all__ = ["BadBody", "check_depth", "json_object", "scrub_surrogates"]

# What a raw body with a lone surrogate holds: a \\uD800-\\uDFFF escape, or the bytes
# ED A0-BF .. (each pattern searched only when its first byte is there at all).
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_ENCODED_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class BadBody(ValueError):
    """A body callgate will not take: ``param`` names where (``None``: the whole
    body), ``code`` is the OpenAI error code."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def json_object(raw: bytes, max_depth: int = 64) -> dict[str, Any]:
    """``raw`` as a JSON object nested at most ``max_depth`` deep; :class:`BadBody`
    otherwise, naming the path that goes too deep."""
    try:
        body = json_codec.loads(raw)  # orjson when installed (the standard library for what it refuses)
    except RecursionError:
        raise BadBody(f"request body is nested deeper than {max_depth}", code="json_too_deep") from None
    except ValueError as e:
        raise BadBody(f"request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadBody("request body must be a JSON object")
    too_deep = _too_deep(body, max_depth)
    if too_deep is not None:
        raise BadBody(f"request body is nested deeper than {max_depth} at {too_deep}", too_deep, "json_too_deep")
    return scrub_surrogates(raw, body)


def scrub_surrogates(raw: bytes, value: Any) -> Any:
    """``value`` (parsed from ``raw``) with each lone surrogate in its strings, keys
    too, replaced by U+FFFD; ``value`` itself when ``raw`` cannot hold one. Recursive:
    for a value whose depth was checked (or a verified sender's)."""
    return _scrubbed(value) if _may_hold_surrogates(raw) else value


def check_depth(value: Any, max_depth: int, where: str) -> None:
    """:class:`BadBody` when ``value`` (e.g. metadata parsed out of a JSON string
    field) is nested deeper than ``max_depth``; ``where`` names it."""
    too_deep = _too_deep(value, max_depth)
    if too_deep is not None:
        path = f"{where}.{too_deep}" if too_deep != "$" else where
        raise BadBody(f"{where} is nested deeper than {max_depth} at {path}", path, "json_too_deep")


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


_FAST_DEPTH = 200  # up to this max_depth, a recursive walk without paths decides first (far from Python's recursion limit)


def _deeper(value: Any, depth: int, max_depth: int) -> bool:
    """Whether a container in ``value`` (at ``depth``) is deeper than ``max_depth``."""
    if depth > max_depth:
        return True
    for v in value.values() if isinstance(value, dict) else value:
        if isinstance(v, (dict, list)) and _deeper(v, depth + 1, max_depth):
            return True
    return False


def _too_deep(value: Any, max_depth: int) -> str | None:
    """The path of the first value deeper than ``max_depth``, or ``None`` (iterative:
    no recursion however deep the value; a quick walk without paths first, when
    ``max_depth`` is small enough for it)."""
    if max_depth <= _FAST_DEPTH and isinstance(value, (dict, list)) and not _deeper(value, 1, max_depth):
        return None
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
