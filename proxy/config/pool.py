"""``upstreams:`` (the pool's named entries) and ``routing:`` (fallback, hedging,
stall recovery, health)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..core.routing import Price
from .sections import Model, UpstreamConfig

__all__ = ["DEFAULT_CONTINUE_PROMPT", "PoolEntry", "PriceConfig", "RoutingConfig"]

DEFAULT_CONTINUE_PROMPT = (
    "Your last reply was cut off after the text above, which the caller has already heard. "
    "Continue it from exactly where it stopped: do not repeat any of it, do not greet again, do not apologize."
)


class PriceConfig(Model):
    """One model's prices, USD per million tokens."""

    input_per_mtok: float = Field(ge=0, description="USD per million prompt tokens")
    output_per_mtok: float = Field(ge=0, description="USD per million completion tokens")
    cached_input_per_mtok: float | None = Field(None, ge=0, description="USD per million cached prompt tokens (default: input_per_mtok)")

    def price(self) -> Price:
        """The sans-IO value."""
        return Price(self.input_per_mtok, self.output_per_mtok, self.cached_input_per_mtok)


class PoolEntry(UpstreamConfig):
    """One named upstream of the pool: every ``upstream:`` key, plus its name, model
    mapping, concurrency bound and prices."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$", description="unique; in routing.order, profiles' upstreams, metrics and records")
    models: dict[str, str] = Field(
        default_factory=dict, description='the request\'s model -> this upstream\'s model ("*": any other); unmapped models go as they came'
    )
    max_concurrent: int | None = Field(None, ge=1, description="requests in flight at most (null: no limit); a full upstream is skipped")
    prices: dict[str, PriceConfig] = Field(default_factory=dict, description="this upstream's model name -> its prices (USD per million tokens)")


class RoutingConfig(Model):
    """``routing:``: how a turn moves between the pool's upstreams."""

    order: list[str] | None = Field(None, description="upstream names in the order tried (default: the upstreams list's order)")
    max_attempts: int = Field(3, ge=1, le=10, description="upstreams tried per reply (and per continuation) at most, hedges included")
    first_token_ms: float | None = Field(
        None, gt=0, description="with no speakable output by then (ms), the next upstream starts as well; the first to speak wins (null: off)"
    )
    stall_ms: float | None = Field(
        None, gt=0, description="speech that goes silent this long (ms) before its finish is a stall (null: off; also turns on continuing a stream that breaks after speech began)"
    )
    on_stall: Literal["continue", "error"] = Field(
        "continue", description="continue: the next upstream continues the reply after what was heard; error: an error event and [DONE]"
    )
    continue_prompt: str = Field(DEFAULT_CONTINUE_PROMPT, min_length=1, description="the instruction sent after the heard text to continue a stalled reply")
    eject_after: int = Field(3, ge=1, description="failed attempts in a row after which an upstream is skipped for cooldown_s")
    cooldown_s: float = Field(30.0, gt=0, description="how long an ejected upstream is skipped (s); then one request tries it")
