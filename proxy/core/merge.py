"""JSON merge patch (RFC 7386), sans-IO."""

from __future__ import annotations

from typing import Any

__all__ = ["merge_patch"]


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply ``patch`` to ``target`` in place and return it: ``null`` removes a key,
    objects merge, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = value
    return target
