"""The objects one running callgate server shares between its handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from ..calls.registry import CallRegistry
from ..config import Config
from ..core.profile import Profile
from ..endfn.pipeline import Pipeline
from ..errors import NotFound
from ..storage import Store
from ..telemetry import NOOP, Telemetry
from .delivery import EventDelivery
from .auth import Keys
from .drain import Drain
from .pool import UpstreamPool

__all__ = ["SERVICES", "Services"]


@dataclass
class Services:
    """What the handlers share, one per app (``request.app[SERVICES]``)."""

    config: Config
    profiles: dict[str, Profile]  # by name; see proxy.profiles
    registry: CallRegistry
    session: aiohttp.ClientSession  # pooled, keep-alive; upstream and webhooks
    store: Store
    pipeline: Pipeline
    delivery: EventDelivery | None  # control events to control.webhook.url, when set
    pool: UpstreamPool  # the upstreams, their health
    keys: Keys  # the auth keys the middleware matches (replaced in place by a reload)
    loaded: Any  # proxy.server.reload.Loaded: the config's fingerprint and load time
    drain: Drain = field(default_factory=Drain)  # the replies in flight, for the drain on SIGTERM
    telemetry: Telemetry = NOOP  # spans: .turn(...) per turn, .step(...) per step run (proxy.telemetry.api)

    def snapshot(self) -> Services:
        """A shallow copy: a reply or a turn keeps the configuration it began with
        (a reload sets the fields of the app's services anew, not this copy's)."""
        new = object.__new__(Services)
        new.__dict__.update(self.__dict__)
        return new

    def profile(self, request: web.Request) -> Profile:
        """The profile of the request's path (``/<name>/v1/...``; ``/v1/...`` is the
        default); :class:`~proxy.errors.NotFound` for an unknown name."""
        name = request.match_info.get("profile") or self.config.default_profile
        profile = self.profiles.get(name)
        if profile is None:
            raise NotFound(f"no runtime profile {name!r}; known: {', '.join(sorted(self.profiles))}", code="profile_not_found")
        return profile


SERVICES: web.AppKey[Services] = web.AppKey("callgate_services", Services)
