"""Durations as operators type them: ``45s``, ``30m``, ``2h``, ``1d`` (the CLI's
``--since``/``--before``, the operator page's ``since``/``until``)."""

from __future__ import annotations

import re

__all__ = ["ago"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def ago(text: str, now: float) -> float | None:
    """``now`` (Unix s) minus the duration ``text`` names, or ``None`` when ``text``
    is not one."""
    m = _DURATION.match(text.strip())
    return now - float(m.group(1)) * _UNIT_S[m.group(2)] if m else None
