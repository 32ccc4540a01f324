"""A reply's record: the turn's :class:`~proxy.storage.TurnOutcome` as its state
machine decided it, every attempt's entry (upstream, model, timings, outcome, error,
usage, cost in USD), and the metrics counted once per turn."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ...calls.model import TurnOutcome
from ...core.reply import AttemptOutcome, TurnStatus
from ...core.routing import cost_usd
from ...errors import UpstreamFailure
from ...metrics import SPEECH_GAP, TURNS, UPSTREAM_ATTEMPTS, UPSTREAM_COST, UPSTREAM_ERRORS, UPSTREAM_FIRST_TOKEN, UPSTREAM_TOKENS, labelled

if TYPE_CHECKING:
    from .reply import Reply

__all__ = ["turn_outcome"]


def turn_outcome(reply: Reply) -> TurnOutcome:
    """The turn's outcome of an ended ``reply`` (times in ms)."""
    m = reply.machine
    status = m.status or TurnStatus.ERROR
    if status in (TurnStatus.UPSTREAM_ERROR, TurnStatus.UPSTREAM_INCOMPLETE):
        labelled(UPSTREAM_ERRORS, m.failure or UpstreamFailure.STREAM_ERROR).inc()
    labelled(TURNS, reply.profile, status).inc()
    segs = reply.segments or [reply.inspector]
    return TurnOutcome(
        status=status,
        error=m.error,
        raw_text="".join(s.raw_text for s in segs),
        spoken_text="".join(s.spoken_text for s in segs),
        reasoning_text="".join(s.reasoning_text for s in segs),
        tool_calls=[t for s in segs for t in s.tool_calls],
        ttft_ms=reply.ttft_ms,
        duration_ms=round((time.perf_counter() - reply.started) * 1000, 3),
        attempts=_attempts(reply),
        heard_text=reply.heard,
        speech_gap_max_ms=_gap(reply),
    )


def _gap(reply: Reply) -> float | None:
    """The turn's dead air (ms, rounded to 0.1), observed in ``callgate_speech_gap_seconds``."""
    gap = reply.gaps.max_ms
    if gap is None:
        return None
    labelled(SPEECH_GAP, reply.profile).observe(gap / 1000)
    return round(gap, 1)


def _attempts(reply: Reply) -> list[dict[str, Any]]:
    """Every attempt's record with the outcome the machine wrote; the metrics counted."""
    out = []
    if reply.current is not None:
        reply.current.thinking_unopened()
    for a in reply.race.attempts:
        outcome = reply.machine.outcome(a.index)
        if outcome is AttemptOutcome.FAILED and a.error is None:
            a.error = reply.machine.error
        usage = a.usage
        cost = cost_usd(usage, reply.s.pool.price(a.name, a.model))
        out.append(a.record(outcome, cost))
        labelled(UPSTREAM_ATTEMPTS, a.name, str(outcome)).inc()
        if a.first_token_ms is not None:
            labelled(UPSTREAM_FIRST_TOKEN, a.name).observe(a.first_token_ms / 1000)
        if usage is not None:
            for kind, n in (("prompt", usage.prompt_tokens), ("completion", usage.completion_tokens), ("cached", usage.cached_tokens)):
                labelled(UPSTREAM_TOKENS, a.name, kind).inc(n)
        if cost is not None:
            labelled(UPSTREAM_COST, a.name).inc(cost)
    return out
