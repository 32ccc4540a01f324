"""The YAML config, as pydantic models with defaults, validated at start.

================  ============================================================
``sections``      server, upstream, call ids, commands, profiles, keys, limits,
                  control events, storage, log masking
``steps``         the end function and its steps
``pool``          the upstream pool (``upstreams:``) and ``routing:``
``front_doors``   the front doors (``front_doors:``): WebSocket platforms, OpenAI SIP
``telemetry``     OpenTelemetry traces over OTLP/HTTP (``telemetry:``)
================  ============================================================


Every key is documented in ``config.example.yaml``. String values may use
``${VAR}`` (the variable must be set) and ``${VAR:-default}``; ``$${`` is a literal
``${``. :func:`load_config` raises :class:`~proxy.errors.ConfigError` whose message
names the path of every bad field (``commands.output: Input should be ...``), every
refused removed key and every name that points nowhere, all in one error.
"""

from __future__ import annotations

import io
import logging
import os
from functools import cached_property
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from ..errors import ConfigError
from .front_doors import FrontDoorConfig, FrontDoorsConfig, OpenAISipConfig, SipPriceConfig
from .pool import PoolEntry, PriceConfig, RoutingConfig
from .sections import (
    BUILTIN_PROFILES,
    AuthConfig,
    CallIdSource,
    CommandsConfig,
    ControlConfig,
    ControlWebhookConfig,
    FunctionMapEntry,
    KeyConfig,
    LimitsConfig,
    LogMaskConfig,
    Model,
    ProfileConfig,
    Scope,
    ServerConfig,
    StorageConfig,
    UpstreamConfig,
    default_call_id,
    safe_url,
)
from .telemetry import TelemetryConfig
from .steps import (
    AnalyticsStep,
    EndFunctionConfig,
    LLMConfig,
    OutcomeStep,
    PythonStep,
    RetryConfig,
    SmsStep,
    Step,
    SummaryStep,
    WebhookStep,
    When,
)

__all__ = [
    "BUILTIN_PROFILES",
    "AuthConfig",
    "FrontDoorConfig",
    "FrontDoorsConfig",
    "OpenAISipConfig",
    "SipPriceConfig",
    "KeyConfig",
    "LimitsConfig",
    "Scope",
    "AnalyticsStep",
    "CallIdSource",
    "CommandsConfig",
    "Config",
    "ControlConfig",
    "ControlWebhookConfig",
    "EndFunctionConfig",
    "FunctionMapEntry",
    "LLMConfig",
    "LogMaskConfig",
    "OutcomeStep",
    "PoolEntry",
    "PriceConfig",
    "RoutingConfig",
    "ProfileConfig",
    "PythonStep",
    "RetryConfig",
    "ServerConfig",
    "SmsStep",
    "Step",
    "StorageConfig",
    "SummaryStep",
    "TelemetryConfig",
    "UpstreamConfig",
    "WebhookStep",
    "When",
    "interpolate",
    "load_config",
    "parse_config",
    "safe_url",
    "with_server",
]


class Config(Model):
    """The whole config file; every section has its defaults."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    upstream: UpstreamConfig = Field(default_factory=UpstreamConfig)
    upstreams: list[PoolEntry] = Field(default_factory=list, description="the pool; upstream: alone is a pool of one named default")
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    call_id: list[CallIdSource] = Field(default_factory=default_call_id)
    commands: CommandsConfig = Field(default_factory=CommandsConfig)
    default_profile: str = Field("openai", description="the profile of /v1/... (other profiles: /<name>/v1/...)")
    profiles: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")], ProfileConfig] = Field(default_factory=dict)
    control: ControlConfig = Field(default_factory=ControlConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    end_function: EndFunctionConfig = Field(default_factory=EndFunctionConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    log_mask: LogMaskConfig = Field(default_factory=LogMaskConfig)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object per line, key=value pairs as fields")
    log_access: bool = Field(True, description="one callgate.access line per request (route, status, ttft_ms, duration_ms, bytes, key name)")
    front_doors: FrontDoorsConfig = Field(default_factory=FrontDoorsConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)

    @model_validator(mode="after")
    def _names(self) -> Config:
        """Every name that points nowhere, all at once (one problem per line)."""
        problems = self._profile_problems() + self._pool_problems()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _profile_problems(self) -> list[str]:
        known = set(BUILTIN_PROFILES) | set(self.profiles)
        out = []
        if self.default_profile not in known:
            out.append(f"default_profile: {self.default_profile!r} is not a profile: {sorted(known)}")
        for name, p in self.profiles.items():
            if p.extends is not None and p.extends not in known:
                out.append(f"profiles.{name}.extends: {p.extends!r} is not a profile: {sorted(known)}")
        for door in ("retell", "conversation_relay", "openai_sip"):
            fd = getattr(self.front_doors, door)
            if fd.profile is not None and fd.profile not in known:
                out.append(f"front_doors.{door}.profile: {fd.profile!r} is not a profile: {sorted(known)}")
        return out

    def _pool_problems(self) -> list[str]:
        out = []
        if self.upstreams and "upstream" in self.model_fields_set:
            out.append("give upstream: (one upstream) or upstreams: (a pool), not both")
        names = [u.name for u in self.pool]
        if len(set(names)) != len(names):
            out.append(f"upstreams: names must be unique: {names}")
        for where, listed in [("routing.order", self.routing.order or [])] + [
            (f"profiles.{n}.upstreams", p.upstreams or []) for n, p in self.profiles.items()
        ]:
            unknown = [n for n in listed if n not in names]
            if unknown:
                out.append(f"{where}: {unknown} not in upstreams: {names}")
        return out

    @cached_property
    def pool(self) -> list[PoolEntry]:
        """The pool's entries in list order: ``upstreams:``, or ``upstream:`` as one entry named ``default``."""
        return self.upstreams or [PoolEntry(name="default", **self.upstream.model_dump())]

    @property
    def primary(self) -> PoolEntry:
        """The first upstream in ``routing.order`` (``GET /v1/models`` goes there)."""
        order = self.routing.order or [u.name for u in self.pool]
        return next(u for u in self.pool if u.name == order[0])


# -- loading ---------------------------------------------------------------------

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# What `callgate serve` uses with no --config: the documented defaults, upstream
# taken from the environment as in config.example.yaml.
DEFAULT_YAML = """
upstream:
  base_url: "${UPSTREAM_BASE_URL:-https://api.openai.com/v1}"
  api_key: "${UPSTREAM_API_KEY:-}"
"""


def interpolate(value: Any, env: Mapping[str, str] | None = None, path: str = "") -> Any:
    """Replace ``${VAR}``/``${VAR:-default}`` in every string of a loaded YAML tree.

    Raises :class:`ConfigError` naming the path of every ``${VAR}`` without default
    that is unset, all at once.
    """
    missing: list[str] = []
    out = _interpolate(value, os.environ if env is None else env, path, missing)
    if missing:
        raise ConfigError("\n".join(missing) if len(missing) == 1 else "unset environment variables:\n  " + "\n  ".join(missing))
    return out


def _interpolate(value: Any, env: Mapping[str, str], path: str, missing: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, env, f"{path}.{k}" if path else str(k), missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, f"{path}[{i}]", missing) for i, v in enumerate(value)]
    vars_: Mapping[str, str] = env
    if not isinstance(value, str) or "$" not in value:
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        if name in vars_:
            return vars_[name]
        if default is not None:
            return default
        missing.append(f"{path or '<root>'}: environment variable {name} is not set (write ${{{name}:-default}})")
        return ""

    return _VAR.sub(sub, value)


_STEP_KINDS = ("webhook", "python", "summary", "outcome", "sms", "analytics")

# Removed keys: dotted path -> (what replaced it, refused yet). A removed key is accepted
# with a warning for one minor version, then refused with the same message (these two
# warned in 0.4.x and are refused from 0.5.0).
REMOVED_KEYS: dict[str, tuple[str, bool]] = {
    "control.webhook.attempts": (
        "replaced by control.webhook.max_age_s: a delivery is retried while the event is fresh (default 120 s)", True
    ),
    "end_function.record_ttl_s": (
        "no longer needed: an ended call leaves memory at once; storage.retention_days deletes old ones", True
    ),
}
log = logging.getLogger("callgate.config")


def _removed_keys(data: dict[str, Any], source: str) -> list[str]:
    """Take the removed keys out of ``data``: each still accepted with a warning naming
    what replaced it; each refused one's message returned (all of them, not the first)."""
    refused_messages = []
    for dotted, (replacement, refused) in REMOVED_KEYS.items():
        *parents, name = dotted.split(".")
        node: Any = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or name not in node:
            continue
        del node[name]
        if refused:
            refused_messages.append(f"{dotted} was removed: {replacement}")
        else:
            log.warning("%s: %s was removed: %s (accepted for this minor version, refused from the next)", source, dotted, replacement)
    return refused_messages


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _STEP_KINDS and out.endswith("]"):
            continue  # the discriminator tag pydantic adds for steps
        else:
            out += f".{part}" if out else str(part)
    return out


def _problems(e: ValidationError) -> list[str]:
    """Each error as ``path: message``; a validator's message of several lines is one
    problem per line."""
    out = []
    for err in e.errors():
        where = _loc(err["loc"]) or "<root>"
        message = err["msg"].removeprefix("Value error, ")
        out += [f"{where}: {line}" if where != "<root>" else line for line in message.split("\n")]
    return out


def parse_config(data: Any, source: str = "config", env: dict[str, str] | None = None) -> Config:
    """Validate a loaded YAML tree. Raises :class:`ConfigError` listing every problem
    at once: each refused removed key (what replaced it) and each bad field
    (``path: message``)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, not {type(data).__name__}")
    data = interpolate(data, env)
    problems = _removed_keys(data, source)
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        problems += _problems(e)
    if len(problems) == 1 and " was removed: " in problems[0]:
        raise ConfigError(f"{source}: {problems[0]}")
    if problems:
        raise ConfigError(f"{source}: invalid config\n  " + "\n  ".join(problems))
    return config


def load_config(path: str | Path | None, env: dict[str, str] | None = None) -> Config:
    """Read and validate a YAML config file; ``None`` gives the defaults.

    Raises :class:`ConfigError` (unreadable file, YAML syntax, bad fields).
    """
    if path is None:
        return parse_config(yaml.safe_load(DEFAULT_YAML), "defaults", env)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    stream = io.StringIO(text)
    stream.name = str(path)  # YAML errors name the file, not <unicode string>
    try:
        data = yaml.safe_load(stream)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return parse_config(data, str(path), env)


def with_server(config: Config, source: str, **values: Any) -> Config:
    """``config`` with these ``server:`` keys replaced (the CLI's ``--host``, ``--port``,
    ``--workers``; a ``None`` value keeps the file's), validated by the same model as
    the file. Raises :class:`ConfigError` on one line naming each bad field
    (``command line: server.port: Input should be ...``)."""
    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        return config
    try:
        server = ServerConfig.model_validate({**config.server.model_dump(), **given})
    except ValidationError as e:
        raise ConfigError(f"{source}: " + "; ".join(f"server.{_loc(err['loc'])}: {err['msg']}" for err in e.errors())) from None
    return config.model_copy(update={"server": server})
