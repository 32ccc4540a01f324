"""``front_doors:``: what the WebSocket platforms do not send (the model, the system
prompt, the profile, upstream parameters), one section per front door; and
``front_doors.openai_sip``, OpenAI's speech-to-speech calls over SIP. Every key is
documented in ``config.example.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..core.openai_sip.api import Api
from ..core.openai_sip.usage import SipPrice
from .sections import Model, UpstreamConfig

__all__ = ["FrontDoorConfig", "FrontDoorsConfig", "OpenAISipConfig", "SipPriceConfig"]


class FrontDoorConfig(Model):
    """One front door (``front_doors.retell``, ``front_doors.conversation_relay``)."""

    model: str = Field("gpt-4o-mini", description="the model each turn's chat completion asks the upstream for")
    system_prompt: str = Field("", description="the system message before the conversation")
    system_prompt_file: str | None = Field(None, description="a UTF-8 file holding the system prompt (instead of system_prompt)")
    profile: str | None = Field(None, description="the runtime profile (FunctionMap, output rules); default_profile when unset")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _prompt_file(self) -> FrontDoorConfig:
        if self.system_prompt_file is None:
            return self
        if self.system_prompt:
            raise ValueError("set system_prompt or system_prompt_file, not both")
        try:
            self.system_prompt = Path(self.system_prompt_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"system_prompt_file {self.system_prompt_file!r} cannot be read: {e}") from None
        return self

    def upstream_params(self) -> dict[str, object]:
        """The chat completion parameters this front door sets: ``model``, and
        ``temperature`` / ``max_tokens`` when given."""
        out: dict[str, object] = {"model": self.model}
        if self.temperature is not None:
            out["temperature"] = self.temperature
        if self.max_tokens is not None:
            out["max_tokens"] = self.max_tokens
        return out


class SipPriceConfig(Model):
    """One model's prices for ``front_doors.openai_sip.prices``: USD per million tokens
    (the pool entry's three, plus audio tokens' own, which cost the text rates when
    absent) and USD per minute of a GPT-Live session."""

    input_per_mtok: float | None = Field(None, ge=0, description="USD per million input tokens (text)")
    cached_input_per_mtok: float | None = Field(None, ge=0, description="USD per million cached input tokens (default: input_per_mtok)")
    output_per_mtok: float | None = Field(None, ge=0, description="USD per million output tokens (text)")
    audio_input_per_mtok: float | None = Field(None, ge=0, description="audio input tokens (default: input_per_mtok)")
    audio_cached_input_per_mtok: float | None = Field(None, ge=0, description="cached audio input tokens (default: the text cached rate)")
    audio_output_per_mtok: float | None = Field(None, ge=0, description="audio output tokens (default: output_per_mtok)")
    per_minute: float | None = Field(None, ge=0, description="USD per minute of a GPT-Live session (billed per second)")

    @model_validator(mode="after")
    def _some(self) -> SipPriceConfig:
        if (self.input_per_mtok is None) != (self.output_per_mtok is None):
            raise ValueError("give input_per_mtok and output_per_mtok together")
        if self.input_per_mtok is None and self.per_minute is None:
            raise ValueError("give input_per_mtok and output_per_mtok (tokens), per_minute (Live seconds), or both")
        return self

    def price(self) -> SipPrice:
        """The sans-IO value."""
        return SipPrice(**self.model_dump())


class OpenAISipConfig(Model):
    """``front_doors.openai_sip``: OpenAI's speech-to-speech calls over SIP (GPT-Live or
    the Realtime API). Off until ``webhook_secret`` is set (then ``api_key`` is needed)."""

    api: Literal["live", "realtime"] = Field("realtime", description="which incoming-call webhook is answered (the other is acknowledged, not accepted)")
    base_url: str = Field("https://api.openai.com/v1", description="OpenAI's API; the sideband's wss:// URL is made from it")
    api_key: str = Field("", repr=False, description="the project's API key: accept, reject, hangup, refer and the sideband")
    webhook_secret: str = Field("", repr=False, description="the webhook's signing secret (whsec_...); empty: the door is off")
    session: dict[str, Any] = Field(default_factory=dict, description="merged into the accept body's session")
    system_prompt_file: str | None = Field(None, description="a UTF-8 file whose text is session.instructions")
    profile: str | None = Field(None, description="the profile whose FunctionMap, transfer allow-list and speak_closing apply")
    allow_callers: list[str] = Field(default_factory=list, description="caller number patterns accepted (empty: everyone)")
    reject_status: int = Field(603, ge=300, le=699, description="the SIP status a caller outside allow_callers is rejected with")
    goodbye_grace_ms: float = Field(800.0, ge=0, description="Live: output quiet this long = the closing phrase played; Realtime: the wait for its audio to start (ms)")
    goodbye_max_ms: float = Field(15_000.0, gt=0, description="the longest a closing phrase is waited for before acting anyway (ms)")
    tool_webhook: str | None = Field(None, description="a URL that runs function calls the FunctionMap does not map")
    tool_timeout_s: float = Field(5.0, gt=0, description="tool_webhook's answer time; past it the call gets an error output (s)")
    lease_s: float = Field(10.0, gt=0, description="a sideband is its instance's for this long, renewed; then another takes it over (s)")
    reattach_tries: int = Field(5, ge=0, description="a sideband that drops is attached again this many times while the call lives")
    prices: dict[str, SipPriceConfig] = Field(default_factory=dict, description="model name -> its prices (USD)")

    @field_validator("base_url", "tool_webhook")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else UpstreamConfig._base_url(v)

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, v: str) -> str:
        if v and not v.startswith("whsec_"):
            raise ValueError("a webhook secret starts with whsec_ (copy it from the project's webhook settings)")
        return v

    @model_validator(mode="after")
    def _session(self) -> OpenAISipConfig:
        if self.webhook_secret and not self.api_key:
            raise ValueError("api_key is needed when webhook_secret is set (accept, hangup, refer and the sideband use it)")
        if self.system_prompt_file is not None:
            if "instructions" in self.session:
                raise ValueError("set session.instructions or system_prompt_file, not both")
            try:
                self.session["instructions"] = Path(self.system_prompt_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ValueError(f"system_prompt_file {self.system_prompt_file!r} cannot be read: {e}") from None
        delegation = self.session.get("delegation")
        if self.api == "live" and isinstance(delegation, dict) and "type" in delegation and delegation["type"] not in ("responses", "client"):
            raise ValueError("session.delegation.type is responses or client")
        return self

    @property
    def enabled(self) -> bool:
        """The door answers webhooks (``webhook_secret`` is set)."""
        return bool(self.webhook_secret)

    @property
    def api_enum(self) -> Api:
        """``api`` as the core's enum."""
        return Api(self.api)

    def model(self) -> str:
        """The session's model (``session.model``; else the API's default)."""
        model = self.session.get("model")
        return model if isinstance(model, str) else ("gpt-live-1" if self.api == "live" else "gpt-realtime")

    def backend_model(self) -> str:
        """Live: the Responses model the voice model delegates to (``session.delegation.responses.model``)."""
        d = self.session.get("delegation")
        r = d.get("responses") if isinstance(d, dict) else None
        model = r.get("model") if isinstance(r, dict) else None
        return model if isinstance(model, str) else ""


class FrontDoorsConfig(Model):
    """``front_doors:``: Retell's custom LLM, Twilio/Telnyx ConversationRelay, and
    OpenAI's speech-to-speech calls over SIP."""

    retell: FrontDoorConfig = Field(default_factory=FrontDoorConfig)
    conversation_relay: FrontDoorConfig = Field(default_factory=FrontDoorConfig)
    openai_sip: OpenAISipConfig = Field(default_factory=OpenAISipConfig)
