"""JSON for the hot path: orjson when installed, the standard library otherwise.

``loads(str | bytes) -> Any`` raises ``ValueError`` on bad input (both libraries);
``dumps(obj) -> bytes`` is compact UTF-8 (no ASCII escaping, no spaces), the same
bytes from either library for the values a chat completion chunk holds; values JSON
has no type for are written as ``str(value)``.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dumps", "loads", "std_dumps", "std_loads"]

try:
    import orjson
except ImportError:  # pragma: no cover - exercised by tests through the fallbacks below
    orjson = None  # type: ignore[assignment]


def std_loads(data: str | bytes) -> Any:
    """``json.loads``: the standard library's reading, used when orjson is absent."""
    return json.loads(data)


def std_dumps(obj: Any) -> bytes:
    """Compact JSON as UTF-8. A lone surrogate (``"\\ud83d"`` in the upstream's JSON)
    cannot be UTF-8: it goes out as the same ``\\ud83d`` escape it came in as."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8", "backslashreplace")


if orjson is not None:
    _orjson_loads = orjson.loads
    _orjson_dumps = orjson.dumps

    def loads(data: str | bytes) -> Any:
        try:
            return _orjson_loads(data)
        except ValueError:  # NaN, Infinity and other liberties the standard library accepts
            return json.loads(data)

    def dumps(obj: Any) -> bytes:
        try:
            return _orjson_dumps(obj, default=str)
        except TypeError:  # e.g. integers past 64 bits: the standard library copes
            return std_dumps(obj)

else:  # pragma: no cover
    loads, dumps = std_loads, std_dumps
