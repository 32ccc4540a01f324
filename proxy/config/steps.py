"""The end function's config: its timing and the steps (one model per ``kind``),
their retries and ``when:`` conditions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from .sections import Model

__all__ = [
    "AnalyticsStep", "EndFunctionConfig", "LLMConfig", "OutcomeStep", "PythonStep", "RetryConfig", "SmsStep", "Step",
    "SummaryStep", "WebhookStep", "When",
]


class RetryConfig(Model):
    """A step's ``retry:``: tries in all and the doubling wait between them (s)."""

    attempts: int = Field(3, ge=1, description="tries in all, the first included")
    backoff_s: float = Field(1.0, ge=0, description="wait before the 2nd try; doubles after each, with jitter")
    max_backoff_s: float = Field(60.0, ge=0)


class When(Model):
    """A declarative condition; every clause given must hold. No code is evaluated."""

    end_reason: list[str] | None = Field(None, description="end_reason is one of these")
    not_end_reason: list[str] | None = None
    outcome_tags_any: list[str] | None = Field(None, description="at least one of these outcome tags")
    outcome_tags_all: list[str] | None = None
    outcome_tags_none: list[str] | None = None
    state: dict[str, Any] | None = Field(None, description="state keys (dotted paths) equal to these values")
    state_set: list[str] | None = Field(None, description="state keys (dotted paths) present and truthy")


class _Step(Model):
    name: str = Field(min_length=1, pattern=r"^[\w.-]+$")
    after: list[str] = Field(default_factory=list, description="steps that must finish first")
    timeout_s: float = Field(30.0, gt=0)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    when: When | None = None


class LLMConfig(Model):
    """An OpenAI-compatible API the step calls through the official openai client."""

    base_url: str = "https://api.openai.com/v1"
    api_key: str = Field("", repr=False)
    model: str = "gpt-4o-mini"
    timeout_s: float = Field(20.0, gt=0)


class WebhookStep(_Step):
    """``kind: webhook``: POST the call record (or ``fields`` of it) to ``url``,
    signed with Standard Webhooks when ``secret`` is set."""

    kind: Literal["webhook"]
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    secret: str | None = Field(None, repr=False, description="Standard Webhooks secret (whsec_...): sign each POST")
    fields: list[str] | None = Field(None, description="send only these top-level fields of the call record")
    timeout_s: float = Field(10.0, gt=0)


class PythonStep(_Step):
    """``kind: python``: call ``module:function`` with the :class:`~proxy.Conversation`."""

    kind: Literal["python"]
    function: str = Field(pattern=r"^[\w.]+:[\w.]+$", description="module:function")


class SummaryStep(_Step):
    """``kind: summary``: a summary of the call written by ``llm``."""

    kind: Literal["summary"]
    llm: LLMConfig = Field(default_factory=LLMConfig)


class OutcomeStep(_Step):
    """``kind: outcome``: the call's outcome tags (the rules', and ``tags``)."""

    kind: Literal["outcome"]
    tags: list[str] = Field(default_factory=list, description="tags added to every call")


class SmsStep(_Step):
    """``kind: sms``: a text message to the caller (``preset: twilio`` speaks Twilio's API)."""

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
    """``kind: analytics``: a transaction record POSTed to ``url`` or appended to ``path``."""

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


class EndFunctionConfig(Model):
    """``end_function:``: when a call has ended (idle, after a hangup), how the steps are
    claimed and retried, and the steps (times in s)."""

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


