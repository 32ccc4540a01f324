"""``front_doors:``: what the WebSocket platforms do not send (the model, the system
prompt, the profile, upstream parameters), one section per front door. Every key is
documented in ``config.example.yaml``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from .sections import Model

__all__ = ["FrontDoorConfig", "FrontDoorsConfig"]


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


class FrontDoorsConfig(Model):
    """``front_doors:``: Retell's custom LLM and Twilio/Telnyx ConversationRelay."""

    retell: FrontDoorConfig = Field(default_factory=FrontDoorConfig)
    conversation_relay: FrontDoorConfig = Field(default_factory=FrontDoorConfig)
