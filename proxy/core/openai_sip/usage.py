"""What a speech-to-speech call used, and what it cost (USD).

Source: ``shared/reference/realtime-sip.md`` §7.

* Realtime bills tokens per response (``response.done.response.usage``):
  ``input_tokens``, ``output_tokens``, ``input_token_details {text_tokens,
  audio_tokens, cached_tokens, cached_tokens_details {text_tokens, audio_tokens}}``
  (cached ⊂ input), ``output_token_details {text_tokens, audio_tokens}``.
* GPT-Live bills the session's seconds (``session.usage.updated`` /
  ``session.closed``: ``usage.seconds``, cumulative) at a per-minute rate, and its
  Responses backend's tokens (``usage {input_tokens, output_tokens,
  input_tokens_details {cached_tokens}}``), all text, at that model's rates.

A :class:`SipPrice` is USD per million tokens: the text rates, and audio rates that
cost the text rates when absent; ``per_minute`` for Live's seconds. A price or usage
not known makes the cost ``None`` (unknown, not zero). :meth:`TokenUsage.to_json`
gives the call record's shape: ``prompt_tokens`` / ``completion_tokens`` /
``cached_tokens`` as on the HTTP path, with the audio and text split beside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SipPrice", "TokenUsage", "seconds_cost", "token_cost"]


def _n(obj: Any, *path: str) -> int:
    """A non-negative int at ``path`` inside ``obj``; 0 when absent or not one."""
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj if isinstance(obj, int) and not isinstance(obj, bool) and obj >= 0 else 0


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens of one response, split into text and audio (``cached_*``: of the input,
    served from the cache)."""

    input_text: int = 0
    input_audio: int = 0
    cached_text: int = 0
    cached_audio: int = 0
    output_text: int = 0
    output_audio: int = 0

    @classmethod
    def from_realtime(cls, u: Any) -> TokenUsage | None:
        """From a Realtime ``response.usage``; ``None`` when it is not an object. Without
        a detail, the tokens count as text."""
        if not isinstance(u, dict):
            return None
        inp, out = _n(u, "input_tokens"), _n(u, "output_tokens")
        in_audio = min(_n(u, "input_token_details", "audio_tokens"), inp)
        cached = min(_n(u, "input_token_details", "cached_tokens"), inp)
        cached_audio = min(_n(u, "input_token_details", "cached_tokens_details", "audio_tokens"), cached, in_audio)
        out_audio = min(_n(u, "output_token_details", "audio_tokens"), out)
        return cls(inp - in_audio, in_audio, cached - cached_audio, cached_audio, out - out_audio, out_audio)

    @classmethod
    def from_responses(cls, u: Any) -> TokenUsage | None:
        """From a Responses API ``usage`` (Live's backend): all text."""
        if not isinstance(u, dict):
            return None
        inp = _n(u, "input_tokens")
        return cls(inp, 0, min(_n(u, "input_tokens_details", "cached_tokens"), inp), 0, _n(u, "output_tokens"), 0)

    def to_json(self) -> dict[str, int]:
        """``{prompt_tokens, completion_tokens, cached_tokens, input_text_tokens,
        input_audio_tokens, cached_text_tokens, cached_audio_tokens,
        output_text_tokens, output_audio_tokens}``."""
        return {
            "prompt_tokens": self.input_text + self.input_audio, "completion_tokens": self.output_text + self.output_audio,
            "cached_tokens": self.cached_text + self.cached_audio, "input_text_tokens": self.input_text,
            "input_audio_tokens": self.input_audio, "cached_text_tokens": self.cached_text,
            "cached_audio_tokens": self.cached_audio, "output_text_tokens": self.output_text,
            "output_audio_tokens": self.output_audio,
        }


@dataclass(frozen=True, slots=True)
class SipPrice:
    """One model's prices: USD per million tokens (``audio_*``: audio tokens; ``None``:
    the text rate), ``per_minute``: USD per minute of a Live session."""

    input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    cached_input_per_mtok: float | None = None
    audio_input_per_mtok: float | None = None
    audio_cached_input_per_mtok: float | None = None
    audio_output_per_mtok: float | None = None
    per_minute: float | None = None


def _or(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


def token_cost(usage: TokenUsage | None, price: SipPrice | None) -> float | None:
    """What ``usage`` cost at ``price`` (USD, rounded to 1e-9); ``None`` when either,
    or the price's text input or output rate, is unknown. Cached tokens cost the cached
    rate (default: the input rate); audio tokens the audio rates, each of which
    defaults to the text rate of its kind (input, cached input, output)."""
    if usage is None or price is None or price.input_per_mtok is None or price.output_per_mtok is None:
        return None
    cached = _or(price.cached_input_per_mtok, price.input_per_mtok) or 0.0
    audio_in = _or(price.audio_input_per_mtok, price.input_per_mtok) or 0.0
    audio_cached = _or(price.audio_cached_input_per_mtok, cached) or 0.0
    audio_out = _or(price.audio_output_per_mtok, price.output_per_mtok) or 0.0
    total = (
        (usage.input_text - usage.cached_text) * price.input_per_mtok + usage.cached_text * cached
        + (usage.input_audio - usage.cached_audio) * audio_in + usage.cached_audio * audio_cached
        + usage.output_text * price.output_per_mtok + usage.output_audio * audio_out
    )
    return round(total / 1_000_000, 9)


def seconds_cost(seconds: float | None, price: SipPrice | None) -> float | None:
    """What ``seconds`` of a Live session cost at ``price.per_minute`` (USD, rounded to
    1e-9; billed per second, not rounded up); ``None`` when either is unknown."""
    if seconds is None or price is None or price.per_minute is None:
        return None
    return round(seconds / 60 * price.per_minute, 9)
