"""Operations routes (``admin`` scope): the operator page at ``/ui/`` and the JSON
API it reads (``/v1/admin/...``). Filled in by the operations issue."""

from __future__ import annotations

from aiohttp import web

__all__ = ["add_routes"]


def add_routes(app: web.Application) -> None:
    """Register the operator page and its API on ``app``."""
