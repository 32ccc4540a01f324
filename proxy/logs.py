"""Logging: set-up, and masking of phone numbers and other configured fields.

``+4915112345567`` is logged as ``+49151****567`` (first 6 characters, last 3). A
:class:`MaskingFilter` on a handler rewrites every record that passes through it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

__all__ = ["MaskingFilter", "install", "mask", "mask_text", "setup"]

_PHONE = re.compile(r"(?<![\w.:+-])\+?\d{7,15}(?![\w.:-])")


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


def setup(level: str, fields: Iterable[str] = (), phone_numbers: bool = True) -> None:
    """Log lines to stderr at ``level`` (``debug``, ``info``, ...), masked."""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    install(fields, phone_numbers)
