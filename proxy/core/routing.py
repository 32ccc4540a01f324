"""The upstream pool's decisions (sans-IO): health, what is retried, usage and cost,
the bodies of attempts and continuations.

:class:`Health` is each upstream's state as a table (``ok`` → ``cooling`` after
``eject_after`` failures in a row or a ``Retry-After``; ``cooling`` → ``probing``
once the cooldown is over and one request goes; ``probing`` → ``ok`` on success,
back to ``cooling`` on failure). Time is passed in (``now``: seconds, any clock).

Usage is OpenAI's ``usage`` object (``prompt_tokens``, ``completion_tokens``,
``prompt_tokens_details.cached_tokens``; the API reference's chat completion object,
and its last chunk with ``stream_options.include_usage``); prices are USD per
million tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

from . import json_codec

__all__ = [
    "Health",
    "Price",
    "UpstreamState",
    "Usage",
    "attempt_body",
    "continuation_body",
    "cost_usd",
    "retry_after_s",
    "retryable",
    "usage_of",
    "usage_totals",
]


class UpstreamState(StrEnum):
    """An upstream's health."""

    OK = "ok"
    COOLING = "cooling"  # skipped until the cooldown is over
    PROBING = "probing"  # the cooldown is over; one request is on its way


class _Event(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # and it was the eject_after-th in a row
    FAILED_AGAIN = "failed_again"  # a failure that does not eject yet
    RETRY_AFTER = "retry_after"  # a 429 with Retry-After
    PROBE = "probe"  # the cooldown is over and a request goes


# (state, event) -> state; a pair not listed leaves the state as it is.
_MOVES: dict[tuple[UpstreamState, _Event], UpstreamState] = {
    (UpstreamState.OK, _Event.FAILED): UpstreamState.COOLING,
    (UpstreamState.OK, _Event.RETRY_AFTER): UpstreamState.COOLING,
    (UpstreamState.COOLING, _Event.PROBE): UpstreamState.PROBING,
    (UpstreamState.COOLING, _Event.SUCCEEDED): UpstreamState.OK,
    (UpstreamState.COOLING, _Event.RETRY_AFTER): UpstreamState.COOLING,
    (UpstreamState.PROBING, _Event.SUCCEEDED): UpstreamState.OK,
    (UpstreamState.PROBING, _Event.FAILED): UpstreamState.COOLING,
    (UpstreamState.PROBING, _Event.FAILED_AGAIN): UpstreamState.COOLING,
    (UpstreamState.PROBING, _Event.RETRY_AFTER): UpstreamState.COOLING,
}


@dataclass(slots=True)
class _Upstream:
    state: UpstreamState = UpstreamState.OK
    failures: int = 0  # in a row
    cooling_until: float = 0.0
    in_flight: int = 0


class Health:
    """Every upstream's health and requests in flight; see the module docstring.
    ``eject_after``: failures in a row that start a cooldown; ``cooldown_s``: its length (s)."""

    def __init__(self, names: list[str], eject_after: int, cooldown_s: float) -> None:
        self._ups = {n: _Upstream() for n in names}
        self.eject_after, self.cooldown_s = eject_after, cooldown_s

    def carry(self, old: Health, names: list[str]) -> None:
        """Go on with ``old``'s record of each of ``names`` (a reload, for the upstreams
        it keeps): shared, not copied, so a request begun under ``old`` ends here too
        (its in-flight count) and what it learns counts here. A name either does not
        know is skipped."""
        for name in names:
            if name in self._ups and name in old._ups:
                self._ups[name] = old._ups[name]

    def _move(self, name: str, event: _Event) -> UpstreamState:
        u = self._ups[name]
        u.state = _MOVES.get((u.state, event), u.state)
        return u.state

    def state(self, name: str, now: float) -> tuple[UpstreamState, float]:
        """``(state, seconds of cooldown left)``."""
        u = self._ups[name]
        return u.state, max(0.0, round(u.cooling_until - now, 3)) if u.state is UpstreamState.COOLING else 0.0

    def available(self, name: str, now: float) -> bool:
        """Whether a request may go there now: ``ok``, or its cooldown is over (the probe)."""
        u = self._ups[name]
        return u.state is UpstreamState.OK or (u.state is UpstreamState.COOLING and now >= u.cooling_until)

    def in_flight(self, name: str) -> int:
        """Requests on their way to it now."""
        return self._ups[name].in_flight

    def begin(self, name: str, now: float) -> None:
        """A request goes there (a cooled one's goes as the probe)."""
        u = self._ups[name]
        u.in_flight += 1
        if u.state is UpstreamState.COOLING and now >= u.cooling_until:
            self._move(name, _Event.PROBE)

    def end(self, name: str) -> None:
        """A request there is over (however it went)."""
        u = self._ups[name]
        u.in_flight = max(0, u.in_flight - 1)

    def succeeded(self, name: str) -> None:
        """It answered: the failures in a row start again from zero."""
        self._ups[name].failures = 0
        self._move(name, _Event.SUCCEEDED)

    def failed(self, name: str, now: float, retry_after_s: float | None = None) -> UpstreamState:
        """It failed an attempt; ``retry_after_s``: a 429's ``Retry-After`` (cools it
        that long). Returns its state after."""
        u = self._ups[name]
        u.failures += 1
        if retry_after_s is not None and retry_after_s > 0:
            u.cooling_until = max(u.cooling_until, now + retry_after_s)
            return self._move(name, _Event.RETRY_AFTER)
        ejects = u.failures >= self.eject_after
        state = self._move(name, _Event.FAILED if ejects else _Event.FAILED_AGAIN)
        if state is UpstreamState.COOLING:
            u.cooling_until = now + self.cooldown_s
        return state


def retryable(status: int) -> bool:
    """Whether an upstream's HTTP error ``status`` moves to the next upstream (408,
    409, 429, 5xx); 400, 401, 403, 404, 422 and the rest are the request's own problem."""
    return status in (408, 409, 429) or status >= 500


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one attempt (``cached_tokens``: of ``prompt_tokens``, served from the
    provider's cache; 0 when it says nothing of a cache)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    def to_json(self) -> dict[str, int]:
        """``{prompt_tokens, completion_tokens, cached_tokens}``."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "cached_tokens": self.cached_tokens}


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def usage_of(obj: Any) -> Usage | None:
    """The ``usage`` of a chat completion or chunk (a parsed JSON object), or ``None``
    when it has none or it is not OpenAI's shape."""
    u = obj.get("usage") if isinstance(obj, dict) else None
    if not isinstance(u, dict):
        return None
    prompt, completion = _int(u.get("prompt_tokens")), _int(u.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    details = u.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else None
    return Usage(prompt, completion, min(cached or 0, prompt))


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens; ``cached_input_per_mtok`` ``None``: cached tokens cost as input."""

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None


def cost_usd(usage: Usage | None, price: Price | None) -> float | None:
    """What ``usage`` cost at ``price`` (USD, rounded to 1e-9), or ``None`` when either is unknown."""
    if usage is None or price is None:
        return None
    cached_price = price.cached_input_per_mtok if price.cached_input_per_mtok is not None else price.input_per_mtok
    fresh = usage.prompt_tokens - usage.cached_tokens
    total = fresh * price.input_per_mtok + usage.cached_tokens * cached_price + usage.completion_tokens * price.output_per_mtok
    return round(total / 1_000_000, 9)


def _mapped(model: Any, models: dict[str, str]) -> Any:
    if not models or not isinstance(model, str):
        return model
    return models.get(model, models.get("*", model))


def attempt_body(
    raw: bytes, body: dict[str, Any], *, models: dict[str, str], drop: frozenset[str], include_usage: bool,
) -> tuple[bytes, Any, bool]:
    """The bytes one upstream gets for the request body ``raw``, already parsed as
    ``body`` (a JSON object; never parsed again): its model mapped (``models``:
    request model -> upstream model, ``"*"`` for any other), ``drop`` fields taken
    out and, for a stream whose runtime did not ask for usage,
    ``stream_options.include_usage`` added. Returns ``(bytes, upstream model, usage
    added)``; the bytes are ``raw`` itself, or ``raw`` with
    ``"stream_options":{"include_usage":true},`` written after its ``{`` when the body
    has no ``stream_options`` key at all, unless the model is mapped or a field
    dropped (then re-encoded)."""
    model = body.get("model")
    upstream_model = _mapped(model, models)
    options = body.get("stream_options")
    asked = isinstance(options, dict) and options.get("include_usage") is True
    add_usage = include_usage and body.get("stream") is True and not asked
    dropped = [k for k in body if k in drop]
    if upstream_model == model and not dropped and (not add_usage or "stream_options" not in body):
        if add_usage:
            start = raw.index(b"{")
            raw = raw[: start + 1] + b'"stream_options":{"include_usage":true},' + raw[start + 1 :]
        return raw, upstream_model, add_usage
    out = {k: v for k, v in body.items() if k not in drop}
    out["model"] = upstream_model
    if add_usage:
        out["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return json_codec.dumps(out), upstream_model, add_usage


def continuation_body(body: dict[str, Any], heard: str, prompt: str) -> tuple[bytes, dict[str, Any]]:
    """The request ``body`` (parsed) asking to continue a reply cut off after
    ``heard`` (the exact text the runtime received): its messages, then an assistant
    message holding ``heard``, then ``prompt`` as a user message. Returns the bytes
    and the new body (parsed, for the attempts it starts)."""
    messages = list(body.get("messages") or [])
    messages += [{"role": "assistant", "content": heard}, {"role": "user", "content": prompt}]
    new = {**body, "messages": messages}
    return json_codec.dumps(new), new


def retry_after_s(headers: dict[str, str], now_epoch: float) -> float | None:
    """A 429's wait (s) from ``retry-after-ms``, or ``Retry-After`` in seconds or as an
    HTTP date (RFC 9110 §10.2.3; ``now_epoch``: the wall clock, s); ``None`` without one."""
    lower = {k.lower(): v for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = lower.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            pass
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now_epoch)
        except (TypeError, ValueError, IndexError):
            return None
    return None


def usage_totals(attempts: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, float | None]:
    """``(usage, cost_usd)`` summed over attempt records (``{"usage": {...} | None,
    "cost_usd": float | None}``) where known; ``None`` for a sum with nothing known.
    ``usage`` always has ``prompt_tokens``, ``completion_tokens``, ``cached_tokens``;
    any other number an attempt's usage has (a speech-to-speech call's audio tokens,
    its ``seconds``) is summed beside them."""
    usage: dict[str, Any] | None = None
    cost: float | None = None
    for a in attempts:
        u = a.get("usage")
        if isinstance(u, dict):
            usage = usage or {"prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}
            for k, v in u.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    usage[k] = round(usage.get(k, 0) + v, 3) if isinstance(v, float) else usage.get(k, 0) + v
        if isinstance(a.get("cost_usd"), (int, float)):
            cost = round((cost or 0.0) + a["cost_usd"], 9)
    return usage, cost
