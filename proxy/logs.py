"""Logging: set-up, and masking of phone numbers and other configured fields.

``+4915112345567`` is logged as ``+49151****567`` (first 6 characters, last 3). A
:class:`MaskingFilter` on a handler rewrites every record that passes through it.

``log_format: json`` writes one JSON object per line (:class:`JsonFormatter`):
``{"time", "level", "logger", "message", ...}`` plus every ``key=value`` pair of the
message as a field of its own (``call_id``, ``step``, ``error``...), after masking.

While a request is served, :data:`CONTEXT` holds its ``request_id`` and ``call_id``
(:func:`context`, :func:`bind`): every line logged meanwhile carries them, as
``key=value`` pairs after a text line or as fields of a JSON one.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

__all__ = ["CONTEXT", "JsonFormatter", "MaskingFilter", "TextFormatter", "bind", "context", "install", "mask", "mask_text", "setup"]

CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("callgate_log_context", default=None)
"""The request being served: ``request_id``, ``call_id``, ... (one dict per request,
shared by the tasks it starts); every line logged meanwhile carries them."""


def context() -> dict[str, Any]:
    """Start a request's context (a fresh dict, returned)."""
    ctx: dict[str, Any] = {}
    CONTEXT.set(ctx)
    return ctx


def bind(**fields: Any) -> None:
    """Add ``fields`` (``None`` values skipped) to the current request's context, if any."""
    ctx = CONTEXT.get()
    if ctx is not None:
        ctx.update((k, v) for k, v in fields.items() if v is not None)


def _context_pairs(message: str) -> list[tuple[str, Any]]:
    ctx = CONTEXT.get()
    return [(k, v) for k, v in ctx.items() if f"{k}=" not in message] if ctx else []


class TextFormatter(logging.Formatter):
    """The text line, then the request's context as ``key=value`` pairs (those the
    message does not already hold)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of text."""
        line = super().format(record)
        pairs = _context_pairs(record.getMessage())
        return line + "".join(f" {k}={v}" for k, v in pairs) if pairs else line

_PHONE = re.compile(r"(?<![\w.:+-])\+?\d{7,15}(?![\w:-]|\.\d)")  # a sentence's full stop may follow


def mask(value: str) -> str:
    """``+4915112345567`` -> ``+49151****567``; short values keep less."""
    if len(value) >= 10:
        return value[:6] + "****" + value[-3:]
    if len(value) >= 5:
        return value[:2] + "****" + value[-2:]
    return "****"


def mask_text(text: str, fields: Iterable[str] = (), phone_numbers: bool = True) -> str:
    """Mask ``field=value`` pairs (also ``"field": "value"``) and phone-number-like
    digit runs in ``text``."""
    for name in fields:
        text = re.sub(
            rf"(\b{re.escape(name)}[\"']?\s*[=:]\s*[\"']?)([^\s,\"'&}}]+)",
            lambda m: m.group(1) + mask(m.group(2)),
            text,
        )
    if phone_numbers:
        text = _PHONE.sub(lambda m: mask(m.group(0)), text)
    return text


class MaskingFilter(logging.Filter):
    """A handler filter that masks every log line (message and exception text)."""

    def __init__(self, fields: Iterable[str] = (), phone_numbers: bool = True) -> None:
        super().__init__()
        self.fields = tuple(fields)
        self.phone_numbers = phone_numbers

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record's message in place; never drops a record."""
        message = record.getMessage()
        masked = mask_text(message, self.fields, self.phone_numbers)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def install(fields: Iterable[str], phone_numbers: bool = True) -> MaskingFilter:
    """Put a :class:`MaskingFilter` on every handler of the root logger."""
    flt = MaskingFilter(fields, phone_numbers)
    for handler in logging.getLogger().handlers:
        handler.addFilter(flt)
    return flt


_PAIR = re.compile(r"\b([a-z_][a-z0-9_]*)=(\S+)")
_RESERVED = {"time", "level", "logger", "message", "exception"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (ISO 8601 UTC, ms), ``level``, ``logger``,
    ``message``, ``exception`` (when there is one), and the message's ``key=value``
    pairs as fields (numbers as numbers)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (see the class docstring)."""
        message = record.getMessage()
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        for key, value in _PAIR.findall(message):
            if key not in _RESERVED:
                out.setdefault(key, _value(value))
        for key, value in _context_pairs(message):
            out.setdefault(key, value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def _value(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text.rstrip("s")) if text[:1].isdigit() else text
    except ValueError:
        return text


def setup(level: str, fields: Iterable[str] = (), phone_numbers: bool = True, fmt: str = "text") -> None:
    """Log lines to stderr at ``level`` (``debug``, ``info``, ...), masked; ``fmt``:
    ``text`` (one line of text) or ``json`` (:class:`JsonFormatter`)."""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    install(fields, phone_numbers)
