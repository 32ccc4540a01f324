"""SIGHUP: the config file read again and put in place without dropping a stream.

:func:`reload` validates the file first: an invalid one changes nothing (the old
config keeps serving; the error is logged). A valid one replaces, for the next
request, the keys (a secret removed from a key is refused from now on), the
profiles (FunctionMaps, prompts, output rules), the commands settings, the limits,
the upstreams and routing (a fresh pool: health starts over), the end function's
steps and the webhook's settings. A reply in flight keeps what it began with: the
relay works on a copy of :class:`~.services.Services` taken when the request
arrived. What a running server cannot change (``server``, ``storage``, the log
settings, whether ``control.webhook.url`` is set, the end function's timings)
stays as it was, with a warning naming each such section that differs.

The config's fingerprint (the first 16 hex digits of the SHA-256 of its validated
form) and when it was loaded are on ``GET /healthz``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

from ..config import Config, ConfigError, load_config
from ..profiles import resolve_profiles
from .pool import UpstreamPool
from .services import Services

__all__ = ["Loaded", "fingerprint", "reload"]

log = logging.getLogger("callgate")

# sections a running server keeps: what it listens on and stores in, its logs and traces
_RESTART_ONLY = ("server", "storage", "log_level", "log_format", "log_mask", "telemetry")
_END_TIMINGS = ("idle_timeout_s", "after_hangup_s", "sweep_s", "lease_s", "poll_s", "shutdown_grace_s")


@dataclass(frozen=True)
class Loaded:
    """Which config serves: ``fingerprint`` (16 hex digits), ``loaded_at`` (Unix s)."""

    fingerprint: str
    loaded_at: float

    def as_json(self) -> dict[str, object]:
        """``{"fingerprint": str, "loaded_at": Unix s}`` for ``/healthz``."""
        return {"fingerprint": self.fingerprint, "loaded_at": round(self.loaded_at, 3)}


def fingerprint(config: Config) -> Loaded:
    """The fingerprint of ``config``, loaded now."""
    digest = hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]
    return Loaded(digest, time.time())


def _kept(old: Config, new: Config) -> tuple[Config, list[str]]:
    """``new`` with what a running server keeps from ``old``; the names of those that differed."""
    differ = [name for name in _RESTART_ONLY if getattr(old, name) != getattr(new, name)]
    if bool(old.control.webhook.url) != bool(new.control.webhook.url):
        differ.append("control.webhook.url")
        new = new.model_copy(update={"control": new.control.model_copy(update={"webhook": old.control.webhook})})
    ef_old, ef_new = old.end_function, new.end_function
    timings = {name: getattr(ef_old, name) for name in _END_TIMINGS if getattr(ef_old, name) != getattr(ef_new, name)}
    if timings:
        differ += [f"end_function.{name}" for name in timings]
        new = new.model_copy(update={"end_function": ef_new.model_copy(update=timings)})
    return new.model_copy(update={name: getattr(old, name) for name in _RESTART_ONLY}), differ


def reload(s: Services, path: str | None) -> bool:
    """Read ``path`` again and put it in place (see the module docstring); whether it was."""
    try:
        fresh = load_config(path)
        resolve_profiles(fresh)  # a profile that cannot be built refuses the file too
    except (ConfigError, ValueError) as e:
        log.error("reload refused, the running config stays: %s", " ".join(str(e).split()))  # one line
        return False
    new, differ = _kept(s.config, fresh)
    _apply(s, new)
    s.loaded = fingerprint(new)
    log.info("config reloaded from %s: fingerprint %s", path or "the defaults", s.loaded.fingerprint)
    if differ:
        log.warning("reload: %s changed but takes a restart; kept as running", ", ".join(differ))
    return True


def _apply(s: Services, new: Config) -> None:
    """The new config's pieces, each replaced whole (a reader sees the old or the new)."""
    s.keys.replace(new.auth)
    s.profiles = resolve_profiles(new)
    s.pool = UpstreamPool(new)
    limits = s.registry.limits  # shared by the registry's parts: changed in place
    for name in type(limits).model_fields:
        setattr(limits, name, getattr(new.limits, name))
    steps: list[tuple[str, str, list[str]]] = [(step.name, str(step.kind), list(step.after)) for step in new.end_function.steps]
    s.registry.ending.steps = steps
    s.pipeline.configure(new.end_function)
    if s.delivery is not None and new.control.webhook.url:
        s.delivery.cfg, s.delivery.url = new.control.webhook, new.control.webhook.url
    s.config = new
