"""The config's sections but the end function: server, upstream, call ids,
commands and their FunctionMap, profiles, keys, limits, control events, storage,
log masking. Every key is documented in ``config.example.yaml``."""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from yarl import URL

from ..core.function_map import FunctionSpec
from ..core.inspector import InspectorSettings
from ..core.text_tools import FormName

__all__ = [
    "BUILTIN_PROFILES", "AuthConfig", "CallIdSource", "CommandsConfig", "ControlConfig", "ControlWebhookConfig",
    "FunctionMapEntry", "KeyConfig", "LimitsConfig", "LogMaskConfig", "Model", "ProfileConfig", "Scope", "ServerConfig",
    "StorageConfig", "UpstreamConfig", "checked_headers", "default_call_id", "safe_url", "with_path",
]


class Model(BaseModel):
    """The base of every config model: unknown keys are errors; aliases and names both work."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ServerConfig(Model):
    """``server:``: where callgate listens, and the bounds on what a request may bring."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0, description="largest request body accepted (bytes)")
    max_state_bytes: int = Field(64 * 1024, gt=0, description="largest PATCH /state or POST /end body (bytes)")
    max_json_depth: int = Field(64, ge=4, le=512, description="deepest nesting of a JSON body")
    backlog: int = Field(4096, ge=1, description="listen queue for connections not yet accepted")
    drain_s: float = Field(30.0, ge=0, description="on SIGTERM, replies in flight get this long (s); then an error event server_shutting_down")
    workers: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = Field(
        "auto", description="server processes on one port (SO_REUSEPORT), on either store; auto: one per core"
    )
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="also serve GET /metrics here, without a key (a scraper on a private network)"
    )
    metrics_host: str = Field("127.0.0.1", description="the address metrics_port binds to")


    def worker_count(self) -> int:
        """How many server processes ``workers`` means: ``auto`` is one per core this
        process may run on (``sched_getaffinity``: a container's cpuset counts), at
        most 64."""
        if self.workers != "auto":
            return self.workers
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, min(64, cores))


def with_path(base: URL, path: str, *, replace: bool = False) -> URL:
    """``base`` with ``path`` (encoded) appended to its path, or in its place with
    ``replace``, before its query string: ``https://h/openai/deployments/d?api-version=v``
    and ``/models`` -> ``https://h/openai/deployments/d/models?api-version=v``."""
    return URL.build(
        scheme=base.scheme, authority=base.raw_authority, path=(path if replace else base.raw_path.rstrip("/") + path),
        query_string=base.raw_query_string, encoded=True,
    )


def checked_headers(headers: dict[str, str], refused: frozenset[str] = frozenset()) -> dict[str, str]:
    """``headers`` (name -> value) as configured, when each name is an RFC 9110 token
    not in ``refused`` (lower case) and no value holds CR, LF or NUL; else ValueError
    naming the header."""
    for name, value in headers.items():
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):  # RFC 9110 token
            raise ValueError(f"{name!r} is not a header name")
        if name.lower() in refused:
            raise ValueError(f"{name!r} is a hop-by-hop header (or one callgate sets itself): it cannot be configured")
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"{name!r}: a header value may not contain CR, LF or NUL")
    return headers


def safe_url(upstream: UpstreamConfig | str, path: str = "") -> str:
    """An upstream's URL as a log line or a span may show it: ``base_url`` (of an
    ``upstream:`` or pool entry, or the string itself) with ``path`` appended (e.g.
    ``"/chat/completions"``), without user, password, query string or fragment, any
    of which may hold a key: ``https://u:k@h/openai/deployments/d?api-key=k`` and
    ``/chat/completions`` -> ``https://h/openai/deployments/d/chat/completions``.
    A value that is not a URL comes back as ``<invalid URL>``."""
    raw = upstream.base_url if isinstance(upstream, UpstreamConfig) else upstream
    try:
        url = URL(raw).with_user(None).with_query(None).with_fragment(None)
        return str(with_path(url, path) if path else url)
    except (ValueError, TypeError):
        return "<invalid URL>"


class UpstreamConfig(Model):
    """``upstream:``: the OpenAI-compatible LLM every chat completion goes to.

    ``base_url`` is an absolute ``http(s)://`` URL; ``/chat/completions`` and ``/models``
    go after its path and before its query string (Azure's ``?api-version=...``).
    ``HOP_BY_HOP``: the header names (lower case) never copied between hops, which
    ``headers`` may not name either.
    """

    HOP_BY_HOP: ClassVar[frozenset[str]] = frozenset(
        h.lower()
        for h in (
            "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "TE", "Trailer", "Upgrade",
            "Host", "Content-Length", "Content-Encoding", "Accept-Encoding",
        )
    )

    base_url: str = Field(
        "https://api.openai.com/v1",
        description="the API's absolute http(s) URL, e.g. https://api.openai.com/v1; /chat/completions and /models "
        "are appended to its path, before any query string (…/openai/deployments/gpt-4o?api-version=2024-10-21)",
    )
    api_key: str = Field(
        "", repr=False, description="when set, sent as api_key_header instead of the runtime's Authorization/api-key"
    )
    api_key_header: Literal["authorization", "api-key"] = Field(
        "authorization",
        description="how api_key is sent: authorization (Authorization: Bearer <key>) or api-key (api-key: <key>, Azure)",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="extra headers on every upstream request (name -> value); api_key wins over them"
    )
    timeout_s: float = Field(60.0, gt=0, description="connect and between-reads timeout (s)")
    drop_fields: list[str] = Field(
        default_factory=list, description="top-level body fields never sent upstream, for every profile (kept as metadata)"
    )
    include_usage: bool = Field(
        True, description="add stream_options.include_usage to streams whose runtime did not ask (that usage chunk is not forwarded)"
    )
    thinking_open_models: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list, description="models (deepseek-r1*) whose template opens <think>")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        try:
            url = URL(v)
        except ValueError as e:
            raise ValueError(f"{v!r} is not a URL ({e}): write one like 'https://api.openai.com/v1'") from None
        if url.scheme not in ("http", "https") or not url.host:
            rest = v.split("://", 1)[-1]
            fix = f"https://{rest}" if rest and not rest.startswith("/") else "https://api.openai.com/v1"
            raise ValueError(f"{v!r} is not an absolute http:// or https:// URL with a host: write {fix!r}")
        path = url.raw_path.rstrip("/")
        if path.endswith("/chat/completions"):
            base = with_path(url, path[: -len("/chat/completions")], replace=True)
            raise ValueError(f"{v!r} ends in /chat/completions, which callgate appends itself: write {str(base)!r}")
        return v

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        return checked_headers(v, cls.HOP_BY_HOP)


class CallIdSource(Model):
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


def default_call_id() -> list[CallIdSource]:
    """``call_id`` when the config gives none: the ``X-Call-Id`` header alone."""
    return [CallIdSource(header="X-Call-Id")]


# The runtime profiles callgate knows (proxy.profiles holds what they are).
BUILTIN_PROFILES = ("openai", "ims", "vapi", "elevenlabs", "livekit", "pipecat")

_PATH = r"^[A-Za-z_$][\w$-]*(\.[A-Za-z_$][\w$-]*)*$"


class FunctionMapEntry(Model):
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
        """This entry as the core's :class:`~proxy.core.function_map.FunctionSpec`."""
        args = None
        if self.arguments is not None:
            args = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in self.arguments.items()}
        return FunctionSpec(self.function, self.match_function, args, dict(self.defaults))


def _default_function_map() -> list[FunctionMapEntry]:
    return [
        FunctionMapEntry(function="hangup", match_function="hangup"),
        FunctionMapEntry(function="transfer", match_function="transfer_call"),
    ]


class CommandsConfig(Model):
    """``commands:``: the text command tags, the FunctionMap, how commands are rendered
    (``output``), the transfer allow-list, and what callgate injects into requests."""

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


class ProfileConfig(Model):
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
    thinking: Literal["forward", "remove"] | None = Field(
        None,
        description="what the runtime gets of the model's thinking (<think> blocks in content, reasoning_content/"
        "reasoning deltas, thinking parts): forward or remove; never scanned for commands either way "
        "(default: forward on openai, remove on the voice runtimes' profiles; passthrough always forwards)",
    )
    think_tags: list[str] | None = Field(None, description="tags whose <name>…</name> in content is thinking (default: think, thinking, reasoning, thought)")
    text_tool_calls: list[FormName] | None = Field(None, description="tool-call forms written as text that are tool calls (default: voice profiles all)")
    end_call_phrases: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(None, description="goodbye phrases that hang up")
    upstreams: list[str] | None = Field(None, min_length=1, description="this profile's upstreams, in order (default: routing.order)")


Scope = Literal["relay", "calls:read", "calls:write", "admin"]


class KeyConfig(Model):
    """An API key: ``relay`` (chat completions, models), ``calls:read`` (call records,
    events), ``calls:write`` (end, state), ``admin`` (operations, metrics, the page)."""

    name: str = Field(pattern=r"^[\w.-]{1,64}$", description="the key's name: owner of the calls it makes, shown in logs")
    key: Annotated[str, Field(min_length=16)] | list[Annotated[str, Field(min_length=16)]] = Field(
        repr=False,
        description="the secret, e.g. ${IMS_KEY}, at least 16 characters; or a list of secrets, all of them this key "
        "(rotation: add the new one, move the runtime, remove the old one, reloading or restarting each time)",
    )
    scopes: list[Scope] = Field(min_length=1)
    calls_of: list[str] | None = Field(None, description="calls:* scopes: only the calls made by these key names")

    @property
    def secrets(self) -> list[str]:
        """Every secret of this key."""
        return [self.key] if isinstance(self.key, str) else list(self.key)

    @field_validator("key")
    @classmethod
    def _some_secret(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and not v:
            raise ValueError("a key needs at least one secret")
        return v


class AuthConfig(Model):
    """``auth:``: the API keys (``keys``); without any, callgate serves loopback only
    unless ``allow_unauthenticated``."""

    keys: list[KeyConfig] = Field(default_factory=list)
    allow_unauthenticated: bool = Field(False, description="serve on a non-loopback address with no keys (logged)")

    @model_validator(mode="after")
    def _unique(self) -> AuthConfig:
        names = [k.name for k in self.keys]
        if len(set(names)) != len(names):
            raise ValueError("key names must be unique")
        secrets = [s for k in self.keys for s in k.secrets]
        if len(set(secrets)) != len(secrets):
            raise ValueError("two keys (or one key twice) have the same secret")
        return self


class LimitsConfig(Model):
    """Bounds on what one reply and one call can cause."""

    max_turns_per_call: int = Field(500, ge=1, description="past this the call is ended (limits_exceeded), the request 429")
    max_events_per_call: int = Field(200, ge=2, description="past this the call is ended (limits_exceeded)")
    rejected_events_per_reply: int = Field(3, ge=1, description="more rejected commands in one reply go on one counted event")
    spoken_rejections_per_reply: int = Field(1, ge=0, description="err_msg of at most this many rejected commands per reply is spoken")
    max_held_bytes: int = Field(
        1 << 20, ge=1024, description="an attempt's stream held before its first speech (a hedge) past this is adopted as it is (bytes)"
    )
    max_prompt_chars: int = Field(
        32_768, ge=256, description="a front door utterance sent in parts is cut at this many chars (counted and logged)"
    )


class ControlWebhookConfig(Model):
    """``control.webhook:``: where control events are POSTed, and how long a failing
    delivery is retried (times in s)."""

    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(5.0, gt=0)
    backoff_s: float = Field(0.5, ge=0, description="wait before the 2nd try; doubles after each, with jitter")
    max_backoff_s: float = Field(10.0, ge=0, description="the longest wait between tries (s)")
    max_age_s: float = Field(
        120.0, gt=0, description="an event is retried while younger than this; then it is a dead letter (failed) (s)"
    )


class ControlConfig(Model):
    """``control:``: how control events reach the call layer (webhook, SSE)."""

    webhook: ControlWebhookConfig = Field(default_factory=ControlWebhookConfig)
    sse_keepalive_s: float = Field(15.0, gt=0, description="comment line sent to idle event subscribers (s)")


class StorageConfig(Model):
    """``storage:``: the database (SQLite ``path``, or PostgreSQL ``url``), the memory
    cache, what a turn keeps, retention."""

    path: str = Field("./callgate.db", description="SQLite database (WAL); created when missing")
    url: str | None = Field(
        None, repr=False, pattern=r"^postgres(ql)?://", description="PostgreSQL (postgresql://user:pass@host/db): the shared store; overrides path"
    )
    pool_size: int = Field(8, ge=1, description="PostgreSQL connections per process")
    cache_calls: int = Field(10_000, ge=1, description="active calls kept in memory; ended calls leave it at once")
    max_turn_chars: int = Field(32_768, ge=256, description="a turn's stored raw and spoken text are cut here (chars)")
    wal_max_bytes: int = Field(16 << 20, ge=1 << 20, description="the SQLite WAL is truncated past this size (bytes)")
    group_commit_ms: float = Field(
        20.0, ge=0, le=1000, description="SQLite: turns' rows and events wait this long to share one commit (ms; 0: none)"
    )
    retention_days: float | None = Field(None, gt=0, description="ended calls older than this are deleted (null: kept)")


class LogMaskConfig(Model):
    """``log_mask:``: what is masked in logs and the operator page."""

    phone_numbers: bool = Field(True, description="mask digit runs that look like phone numbers")
    fields: list[str] = Field(
        default_factory=lambda: ["caller", "callee", "to", "callerNumber", "calleeNumber", "caller_number", "callee_number", "requesterId"],
        description="mask the values of these key=value pairs",
    )


