"""The objects one running callgate server shares between its handlers."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from aiohttp import web

from ..calls.registry import CallRegistry
from ..config import Config
from ..core.function_map import FunctionMap
from ..core.inspector import InspectorSettings
from ..endfn.pipeline import Pipeline
from ..storage import Storage

__all__ = ["SERVICES", "Services"]


@dataclass
class Services:
    config: Config
    settings: InspectorSettings
    function_map: FunctionMap
    registry: CallRegistry
    session: aiohttp.ClientSession  # pooled, keep-alive; upstream and webhooks
    storage: Storage
    pipeline: Pipeline
    call_id_sources: tuple[tuple[str, str], ...]  # ("header" | "body", name), from config.call_id


SERVICES: web.AppKey[Services] = web.AppKey("callgate_services", Services)
