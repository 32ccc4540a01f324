"""The YAML config, as pydantic models with defaults, validated at start.

Every key is documented in ``config.example.yaml``. String values may use
``${VAR}`` (the variable must be set) and ``${VAR:-default}``; ``$${`` is a literal
``${``. :func:`load_config` raises :class:`~proxy.errors.ConfigError` whose message
names the path of every bad field (``commands.output: Input should be ...``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from .core.function_map import FunctionSpec
from .core.inspector import InspectorSettings
from .errors import ConfigError

__all__ = [
    "BUILTIN_PROFILES",
    "AuthConfig",
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
    "ProfileConfig",
    "PythonStep",
    "RetryConfig",
    "ServerConfig",
    "SmsStep",
    "Step",
    "StorageConfig",
    "SummaryStep",
    "UpstreamConfig",
    "WebhookStep",
    "When",
    "interpolate",
    "load_config",
    "parse_config",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ServerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0, description="largest request body accepted (bytes)")
    max_state_bytes: int = Field(64 * 1024, gt=0, description="largest PATCH /state or POST /end body (bytes)")
    max_json_depth: int = Field(64, ge=4, le=512, description="deepest nesting of a JSON body")
    backlog: int = Field(4096, ge=1, description="listen queue for connections not yet accepted")
    workers: int = Field(1, ge=1, le=64, description="server processes on one port (SO_REUSEPORT); > 1 needs storage.url")
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="also serve GET /metrics here, without a key (a scraper on a private network)"
    )
    metrics_host: str = Field("127.0.0.1", description="the address metrics_port binds to")


class UpstreamConfig(_Model):
    base_url: str = "https://api.openai.com/v1"
    api_key: str = Field("", repr=False, description="replaces the client's Authorization when set")
    timeout_s: float = Field(60.0, gt=0, description="connect and between-reads timeout (s)")
    drop_fields: list[str] = Field(
        default_factory=list, description="top-level body fields never sent upstream, for every profile (kept as metadata)"
    )


class CallIdSource(_Model):
    """Exactly one of ``header`` (a request header name) or ``body`` (a dotted path
    into the JSON body, e.g. ``extendData.instanceId``)."""

    header: str | None = None
    body: str | None = None

    @model_validator(mode="after")
    def _one(self) -> CallIdSource:
        if (self.header is None) == (self.body is None):
            raise ValueError("give exactly one of 'header' or 'body'")
        return self


    def pair(self) -> tuple[str, str]:
        """``("header" | "body", name)``."""
        return ("header", self.header) if self.header else ("body", self.body or "")


def _default_call_id() -> list[CallIdSource]:
    return [CallIdSource(header="X-Call-Id")]


# The runtime profiles callgate knows (proxy.profiles holds what they are).
BUILTIN_PROFILES = ("openai", "ims", "vapi", "elevenlabs", "livekit", "pipecat")

_PATH = r"^[A-Za-z_$][\w$-]*(\.[A-Za-z_$][\w$-]*)*$"


class FunctionMapEntry(_Model):
    """IMS ``LlmConfig.FunctionMap`` entry; ``Function``/``MatchFunction`` or snake_case.

    ``arguments``: where each command field (``endword``, ``caller``, ``callee``,
    ``msg``, ``err_msg``) lives in the tool call's arguments, a dotted path or a list
    of them tried in order (``{callee: destination.number}``); absent: the arguments
    are the fields as written. ``defaults``: arguments added when callgate writes this
    tool call (a required ``reason``, say).
    """

    function: Literal["hangup", "transfer"] = Field(
        validation_alias=AliasChoices("Function", "function"), serialization_alias="Function"
    )
    match_function: str = Field(
        min_length=1,
        validation_alias=AliasChoices("MatchFunction", "match_function", "matchFunction"),
        serialization_alias="MatchFunction",
    )
    arguments: dict[str, Annotated[str, Field(pattern=_PATH)] | list[Annotated[str, Field(pattern=_PATH)]]] | None = None
    defaults: dict[str, Any] = Field(default_factory=dict)

    def spec(self) -> FunctionSpec:
        args = None
        if self.arguments is not None:
            args = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in self.arguments.items()}
        return FunctionSpec(self.function, self.match_function, args, dict(self.defaults))


def _default_function_map() -> list[FunctionMapEntry]:
    return [
        FunctionMapEntry(function="hangup", match_function="hangup"),
        FunctionMapEntry(function="transfer", match_function="transfer_call"),
    ]


class CommandsConfig(_Model):
    hangup_tag: str = Field("imsagent_hangup", pattern=r"^[A-Za-z_][\w.-]*$")
    transfer_tag: str = Field("imsagent_transfer_call", pattern=r"^[A-Za-z_][\w.-]*$")
    function_map: list[FunctionMapEntry] = Field(default_factory=_default_function_map)
    output: Literal["strip", "passthrough", "tool_calls", "text"] = "strip"
    speak_closing: bool = True
    max_command_chars: int = Field(1024, ge=64, description="most chars held back as a possible command (a transfer tag needs room)")
    transfer_allow: list[str] = Field(default_factory=list)
    inject_prompt: bool = False
    prompt_language: Literal["en", "zh"] = "en"
    inject_tools: bool = False

    def inspector_settings(self) -> InspectorSettings:
        """The inspector settings of the default profile."""
        return InspectorSettings(
            hangup_tag=self.hangup_tag,
            transfer_tag=self.transfer_tag,
            function_map=tuple(e.spec() for e in self.function_map),
            output=self.output,
            speak_closing=self.speak_closing,
            max_command_chars=self.max_command_chars,
            transfer_allow=tuple(self.transfer_allow),
        )


class ProfileConfig(_Model):
    """A runtime profile, or overrides of a built-in one: every key given replaces
    the built-in value (see :mod:`proxy.profiles`)."""

    extends: str | None = Field(None, description="a new profile starts from this one (default: the default profile)")
    call_id: list[CallIdSource] | None = Field(None, description="call-id sources after the top-level call_id")
    drop_fields: list[str] | None = Field(None, description="top-level body fields that never go upstream")
    merge_metadata: list[str] | None = Field(None, description="body objects whose keys are merged into the metadata")
    json_fields: list[str] | None = Field(None, description="metadata keys whose JSON-string value is parsed")
    metadata: dict[str, list[CallIdSource]] | None = Field(None, description="normalized metadata key -> sources")
    function_map: list[FunctionMapEntry] | None = None
    output: Literal["strip", "passthrough", "tool_calls", "text"] | None = None
    speak_closing: bool | None = None


Scope = Literal["relay", "calls:read", "calls:write", "admin"]


class KeyConfig(_Model):
    """An API key: ``relay`` (chat completions, models), ``calls:read`` (call records,
    events), ``calls:write`` (end, state), ``admin`` (operations, metrics, the page)."""

    name: str = Field(pattern=r"^[\w.-]{1,64}$", description="the key's name: owner of the calls it makes, shown in logs")
    key: str = Field(min_length=16, repr=False, description="the secret, e.g. ${IMS_KEY}; at least 16 characters")
    scopes: list[Scope] = Field(min_length=1)
    calls_of: list[str] | None = Field(None, description="calls:* scopes: only the calls made by these key names")


class AuthConfig(_Model):
    keys: list[KeyConfig] = Field(default_factory=list)
    allow_unauthenticated: bool = Field(False, description="serve on a non-loopback address with no keys (logged)")

    @model_validator(mode="after")
    def _unique(self) -> AuthConfig:
        names = [k.name for k in self.keys]
        if len(set(names)) != len(names):
            raise ValueError("key names must be unique")
        if len({k.key for k in self.keys}) != len(self.keys):
            raise ValueError("two keys have the same secret")
        return self


class LimitsConfig(_Model):
    """Bounds on what one reply and one call can cause."""

    max_turns_per_call: int = Field(500, ge=1, description="past this the call is ended (limits_exceeded), the request 429")
    max_events_per_call: int = Field(200, ge=2, description="past this the call is ended (limits_exceeded)")
    rejected_events_per_reply: int = Field(3, ge=1, description="more rejected commands in one reply go on one counted event")
    spoken_rejections_per_reply: int = Field(1, ge=0, description="err_msg of at most this many rejected commands per reply is spoken")


class ControlWebhookConfig(_Model):
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(5.0, gt=0)
    backoff_s: float = Field(0.5, ge=0, description="wait before the 2nd try; doubles after each, with jitter")
    max_backoff_s: float = Field(10.0, ge=0, description="the longest wait between tries (s)")
    max_age_s: float = Field(
        120.0, gt=0, description="an event is retried while younger than this; then it is a dead letter (failed) (s)"
    )


class ControlConfig(_Model):
    webhook: ControlWebhookConfig = Field(default_factory=ControlWebhookConfig)
    sse_keepalive_s: float = Field(15.0, gt=0, description="comment line sent to idle event subscribers (s)")


class RetryConfig(_Model):
    attempts: int = Field(3, ge=1, description="tries in all, the first included")
    backoff_s: float = Field(1.0, ge=0, description="wait before the 2nd try; doubles after each, with jitter")
    max_backoff_s: float = Field(60.0, ge=0)


class When(_Model):
    """A declarative condition; every clause given must hold. No code is evaluated."""

    end_reason: list[str] | None = Field(None, description="end_reason is one of these")
    not_end_reason: list[str] | None = None
    outcome_tags_any: list[str] | None = Field(None, description="at least one of these outcome tags")
    outcome_tags_all: list[str] | None = None
    outcome_tags_none: list[str] | None = None
    state: dict[str, Any] | None = Field(None, description="state keys (dotted paths) equal to these values")
    state_set: list[str] | None = Field(None, description="state keys (dotted paths) present and truthy")


class _Step(_Model):
    name: str = Field(min_length=1, pattern=r"^[\w.-]+$")
    after: list[str] = Field(default_factory=list, description="steps that must finish first")
    timeout_s: float = Field(30.0, gt=0)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    when: When | None = None


class LLMConfig(_Model):
    """An OpenAI-compatible API the step calls through the official openai client."""

    base_url: str = "https://api.openai.com/v1"
    api_key: str = Field("", repr=False)
    model: str = "gpt-4o-mini"
    timeout_s: float = Field(20.0, gt=0)


class WebhookStep(_Step):
    kind: Literal["webhook"]
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    secret: str | None = Field(None, repr=False, description="Standard Webhooks secret (whsec_...): sign each POST")
    fields: list[str] | None = Field(None, description="send only these top-level fields of the call record")
    timeout_s: float = Field(10.0, gt=0)


class PythonStep(_Step):
    kind: Literal["python"]
    function: str = Field(pattern=r"^[\w.]+:[\w.]+$", description="module:function")


class SummaryStep(_Step):
    kind: Literal["summary"]
    llm: LLMConfig = Field(default_factory=LLMConfig)


class OutcomeStep(_Step):
    kind: Literal["outcome"]
    tags: list[str] = Field(default_factory=list, description="tags added to every call")


class SmsStep(_Step):
    kind: Literal["sms"]
    url: str
    preset: Literal["generic", "twilio"] = "generic"
    to: str = Field("{metadata.caller_number}", description="recipient; {dotted.path} into the call context")
    sender: str = Field("", alias="from", description="sender id or number")
    template: str = "Thank you for your call. Reference: {call_id}."
    llm: LLMConfig | None = Field(None, description="when set, the message is written by this LLM in the call's tone")
    username: str = Field("", description="basic auth user (Twilio: account SID)")
    password: str = Field("", repr=False, description="basic auth password (Twilio: auth token)")
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(10.0, gt=0)


class AnalyticsStep(_Step):
    kind: Literal["analytics"]
    url: str | None = Field(None, description="POST the transaction record here")
    path: str | None = Field(None, description="or append it to this JSONL file")
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _target(self) -> AnalyticsStep:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of 'url' or 'path'")
        return self


Step = Annotated[
    WebhookStep | PythonStep | SummaryStep | OutcomeStep | SmsStep | AnalyticsStep, Field(discriminator="kind")
]


class EndFunctionConfig(_Model):
    idle_timeout_s: float = Field(600.0, gt=0, description="a call with no request for this long has ended (s)")
    after_hangup_s: float = Field(
        3.0, ge=0, description="after a hangup, the call ends once no request has come for this long (s)"
    )
    sweep_s: float = Field(
        5.0, gt=0, description="how often every instance recovers what stopped processes left and ends due calls (s)"
    )
    lease_s: float = Field(30.0, gt=0, description="a claimed step or delivery is this process's for this long; renewed (s)")
    shutdown_grace_s: float = Field(10.0, ge=0, description="on SIGTERM, running steps get this long to finish (s)")
    poll_s: float = Field(1.0, gt=0, description="how often the database is checked for due steps (s)")
    max_concurrent_per_step: int = Field(32, ge=1, description="tries of one step running at once, over all calls")
    steps: list[Step] = Field(default_factory=list)

    @model_validator(mode="after")
    def _graph(self) -> EndFunctionConfig:
        names = [s.name for s in self.steps]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"step names must be unique: {sorted(dup)}")
        known = set(names)
        for s in self.steps:
            missing = [a for a in s.after if a not in known]
            if missing:
                raise ValueError(f"step {s.name!r}: 'after' names unknown steps {missing}")
        # reject cycles
        deps = {s.name: set(s.after) for s in self.steps}
        done: set[str] = set()
        while deps:
            ready = [n for n, d in deps.items() if d <= done]
            if not ready:
                raise ValueError(f"steps form a cycle through 'after': {sorted(deps)}")
            for n in ready:
                done.add(n)
                del deps[n]
        return self


class StorageConfig(_Model):
    path: str = Field("./callgate.db", description="SQLite database (WAL); created when missing")
    url: str | None = Field(
        None, repr=False, pattern=r"^postgres(ql)?://", description="PostgreSQL (postgresql://user:pass@host/db): the shared store; overrides path"
    )
    pool_size: int = Field(8, ge=1, description="PostgreSQL connections per process")
    cache_calls: int = Field(10_000, ge=1, description="active calls kept in memory; ended calls leave it at once")
    max_turn_chars: int = Field(32_768, ge=256, description="a turn's stored raw and spoken text are cut here (chars)")
    wal_max_bytes: int = Field(16 << 20, ge=1 << 20, description="the SQLite WAL is truncated past this size (bytes)")
    retention_days: float | None = Field(None, gt=0, description="ended calls older than this are deleted (null: kept)")


class LogMaskConfig(_Model):
    phone_numbers: bool = Field(True, description="mask digit runs that look like phone numbers")
    fields: list[str] = Field(
        default_factory=lambda: ["caller", "callee", "to", "callerNumber", "calleeNumber", "caller_number", "callee_number", "requesterId"],
        description="mask the values of these key=value pairs",
    )


class Config(_Model):
    server: ServerConfig = Field(default_factory=ServerConfig)
    upstream: UpstreamConfig = Field(default_factory=UpstreamConfig)
    call_id: list[CallIdSource] = Field(default_factory=_default_call_id)
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

    @model_validator(mode="after")
    def _profile_names(self) -> Config:
        known = set(BUILTIN_PROFILES) | set(self.profiles)
        if self.default_profile not in known:
            raise ValueError(f"default_profile {self.default_profile!r} is not a profile: {sorted(known)}")
        for name, p in self.profiles.items():
            if p.extends is not None and p.extends not in known:
                raise ValueError(f"profiles.{name}.extends: {p.extends!r} is not a profile: {sorted(known)}")
        return self


# -- loading ---------------------------------------------------------------------

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# What `callgate serve` uses with no --config: the documented defaults, upstream
# taken from the environment as in config.example.yaml.
DEFAULT_YAML = """
upstream:
  base_url: "${UPSTREAM_BASE_URL:-https://api.openai.com/v1}"
  api_key: "${UPSTREAM_API_KEY:-}"
"""


def interpolate(value: Any, env: dict[str, str] | None = None, path: str = "") -> Any:
    """Replace ``${VAR}``/``${VAR:-default}`` in every string of a loaded YAML tree.

    Raises :class:`ConfigError` naming the path when a ``${VAR}`` without default
    is unset.
    """
    env = os.environ if env is None else env
    if isinstance(value, dict):
        return {k: interpolate(v, env, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{path or '<root>'}: environment variable {name} is not set (write ${{{name}:-default}})")

    return _VAR.sub(sub, value)


_STEP_KINDS = ("webhook", "python", "summary", "outcome", "sms", "analytics")


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


def parse_config(data: Any, source: str = "config", env: dict[str, str] | None = None) -> Config:
    """Validate a loaded YAML tree. Raises :class:`ConfigError` listing each bad
    field as ``path: message``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, not {type(data).__name__}")
    data = interpolate(data, env)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        lines = [f"{_loc(err['loc']) or '<root>'}: {err['msg']}" for err in e.errors()]
        raise ConfigError(f"{source}: invalid config\n  " + "\n  ".join(lines)) from None


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
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return parse_config(data, str(path), env)
