"""The example config, every key with its default and what it does: shipped in the
wheel as ``proxy/config.example.yaml`` (pyproject's ``force-include``), read from the
source tree's ``config.example.yaml`` in a checkout."""

from __future__ import annotations

from pathlib import Path

__all__ = ["example_text"]

_PACKAGE = Path(__file__).resolve().parents[1]


def example_text() -> str:
    """The example config's text. Raises ``FileNotFoundError`` when neither copy exists."""
    for path in (_PACKAGE / "config.example.yaml", _PACKAGE.parent / "config.example.yaml"):
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise FileNotFoundError("config.example.yaml is not in this installation")
