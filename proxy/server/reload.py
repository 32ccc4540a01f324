"""SIGHUP: the config file read again and put in place without dropping a stream.

:func:`reload` validates the file first: an invalid one changes nothing (the old
config keeps serving; the error is logged). A valid one replaces, for the next
request, the keys (a secret removed from a key is refused from now on), the
profiles (FunctionMaps, prompts, output rules), the commands settings, the limits,
the upstreams and routing (a new pool; an upstream kept under its name and
``base_url`` keeps its health and requests in flight), the end function's
steps and the webhook's settings. A reply in flight keeps what it began with: the
relay works on a copy of :class:`~.services.Services` taken when the request
arrived. What a running server cannot change (``server``, ``storage``, the log
settings, whether ``control.webhook.url`` is set, the end function's timings)
stays as it was, with a warning naming each such section that differs.

The file is read and validated (YAML, prompt files, profiles) in a worker thread,
never on the event loop, and put in place on the loop; :class:`Reloader`, SIGHUP's
handler, runs one reload at a time, in the order the signals came. A ``python``
step's module whose file changed is imported again at its next try
(:func:`proxy.endfn.steps.python.forget`).

The config's fingerprint (the first 16 hex digits of the SHA-256 of its validated
form) and when it was loaded are on ``GET /healthz``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass

from ..config import Config, ConfigError, load_config
from ..endfn.steps import python as python_step
from ..profiles import Profile, resolve_profiles
from .pool import UpstreamPool
from .services import Services

__all__ = ["Loaded", "Reloader", "fingerprint", "reload"]

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


@dataclass(frozen=True)
class _Read:
    """A file read and validated: the config to put in place, the sections kept as
    running that differed, its profiles, its fingerprint."""

    config: Config
    differ: list[str]
    profiles: dict[str, Profile]
    loaded: Loaded


def _read(old: Config, path: str | None) -> _Read:
    """Blocking (YAML, prompt files, validation): run in a worker thread. Raises
    :class:`ConfigError` or ``ValueError`` (a profile that cannot be built refuses the file too)."""
    new, differ = _kept(old, load_config(path))
    return _Read(new, differ, resolve_profiles(new), fingerprint(new))


async def reload(s: Services, path: str | None) -> bool:
    """Read ``path`` again in a worker thread and put it in place on the loop (see the
    module docstring); whether it was. Call one at a time (:class:`Reloader`)."""
    try:
        read = await asyncio.to_thread(_read, s.config, path)
    except (ConfigError, ValueError) as e:
        log.error("reload refused, the running config stays: %s", " ".join(str(e).split()))  # one line
        return False
    _apply(s, read.config, read.profiles)
    s.loaded = read.loaded
    log.info("config reloaded from %s: fingerprint %s", path or "the defaults", s.loaded.fingerprint)
    if read.differ:
        log.warning("reload: %s changed but takes a restart; kept as running", ", ".join(read.differ))
    return True


class Reloader:
    """SIGHUP's handler (``loop.add_signal_handler(SIGHUP, Reloader(s, path))``): each
    signal starts :func:`reload` as a task; one runs at a time, in the order the signals came."""

    def __init__(self, s: Services, path: str | None) -> None:
        self.s, self.path = s, path
        self.tasks: set[asyncio.Task[bool]] = set()  # under way (held: a task nobody holds may be collected)
        self._lock = asyncio.Lock()

    def __call__(self) -> None:
        task = asyncio.get_running_loop().create_task(self.run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self) -> bool:
        """One reload, after the ones before it; whether it was put in place (an
        unexpected error is logged, and the running config stays)."""
        async with self._lock:
            try:
                return await reload(self.s, self.path)
            except Exception:
                log.exception("reload failed, the running config stays")
                return False


def _apply(s: Services, new: Config, profiles: dict[str, Profile]) -> None:
    """The new config's pieces, each replaced whole (a reader sees the old or the new)."""
    s.keys.replace(new.auth)
    s.profiles = profiles
    s.pool = UpstreamPool(new, previous=s.pool)  # in flight and health go on for the upstreams kept
    limits = s.registry.limits  # shared by the registry's parts: changed in place
    for name in type(limits).model_fields:
        setattr(limits, name, getattr(new.limits, name))
    steps: list[tuple[str, str, list[str]]] = [(step.name, str(step.kind), list(step.after)) for step in new.end_function.steps]
    s.registry.ending.steps = steps
    s.pipeline.configure(new.end_function)
    python_step.forget()
    if s.delivery is not None and new.control.webhook.url:
        s.delivery.cfg, s.delivery.url = new.control.webhook, new.control.webhook.url
    s.config = new
