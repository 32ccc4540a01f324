"""One reply in flight: the attempt it adopted, its commands handed to the registry,
its timings, and how it went (the turn's :class:`~proxy.storage.TurnOutcome`).

A reply adopts one attempt (:meth:`Reply.adopt`) and, after a stall, the attempt that
continues it: each has its own inspector, and the turn's texts are theirs joined
in order. A continuation's chunks carry the first attempt's chunk ``id`` and no
``role``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ...calls.model import Call, Turn, TurnOutcome, TurnStatus
from ...core.commands import AnyCommand
from ...core.inspector import ReplyInspector
from ...core.profile import Profile
from ...core.routing import AttemptOutcome, continued, cost_usd
from ...core.sse import SSEEvent
from ...errors import UpstreamFailure
from ...metrics import (
    ADDED_TTFB,
    CHUNKS,
    UPSTREAM_ATTEMPTS,
    UPSTREAM_COST,
    UPSTREAM_ERRORS,
    UPSTREAM_FIRST_TOKEN,
    UPSTREAM_TOKENS,
    UPSTREAM_TTFB,
)
from ..services import Services
from .attempt import Attempt
from .race import Race

__all__ = ["Reply"]


class Reply:
    """See the module docstring. ``started``: ``perf_counter()`` when the request was
    read (times in the outcome are ms from then)."""

    def __init__(self, s: Services, profile: Profile, call: Call, turn: Turn, started: float, race: Race) -> None:
        self.s, self.call, self.turn, self.race = s, call, turn, race
        self.inspector = ReplyInspector(profile.settings, policy=s.registry.hangup_policy(call))  # until an attempt is adopted
        self.segments: list[ReplyInspector] = []
        self.current: Attempt | None = None
        self.acted = False  # a command of this reply was acted on: nothing is continued after it
        self.started = started
        self.ttft_ms: float | None = None
        self.status: TurnStatus | None = None
        self.error: str | None = None
        self.failure: UpstreamFailure | None = None  # how the upstream failed (callgate_upstream_errors_total)
        self.profile = profile.name
        self.chunks = CHUNKS.labels(profile.name)
        self.upstream_first = 0.0  # perf_counter() at the upstream's first byte
        self.client_first = False  # the client got its first byte
        race.bind(profile.settings, s.registry.hangup_policy(call))

    def adopt(self, attempt: Attempt) -> bytes:
        """``attempt`` won: it is read on from here; returns what it held (for the
        runtime), its commands acted on."""
        assert attempt.inspector is not None and attempt.policy is not None
        attempt.policy.live()
        self.current, self.inspector = attempt, attempt.inspector
        self.segments.append(attempt.inspector)
        if attempt.first_byte_at is not None:
            self.first_byte(attempt.first_byte_at)
        out = b"".join(attempt.held)
        attempt.held.clear()
        if attempt.continuation:
            out = continued(out, self.segments[0].chunk_id)
        self.commands(attempt.cmds)
        return out

    def may_continue(self) -> bool:
        """Whether a stall (or a break) of the adopted attempt is continued: stall
        recovery is on, its speech began, and no command was acted on nor tool call begun."""
        r, a = self.s.config.routing, self.current
        return bool(r.stall_ms) and r.on_stall == "continue" and a is not None and a.first_token_ms is not None and not self.acted and not self.inspector.tool_calls

    @property
    def spoken_text(self) -> str:
        """What the runtime received as content, every adopted attempt's."""
        return "".join(seg.spoken_text for seg in self.segments) if len(self.segments) > 1 else self.inspector.spoken_text

    def commands(self, cmds: list[AnyCommand]) -> None:
        """Hand the reply's commands to the registry (they become control events)."""
        if cmds:
            self.acted = True
            self.s.registry.add_commands(self.call, self.turn, cmds, self.spoken_text)

    def feed(self, event: SSEEvent) -> bytes:
        """One SSE event through the adopted attempt; the bytes to send."""
        attempt = self.current
        assert attempt is not None
        out, cmds = attempt.feed(event)
        if cmds:
            self.commands(cmds)
        if attempt.continuation and out:
            out = continued(out, self.segments[0].chunk_id)
        return out

    def close(self) -> bytes:
        """End of the stream: what the inspector still held, its commands acted on."""
        tail, cmds = self.inspector.close()
        self.commands(cmds)
        if tail and self.current is not None and self.current.continuation:
            tail = continued(tail, self.segments[0].chunk_id)
        return tail

    def first_byte(self, at: float | None = None) -> None:
        """The upstream's first byte came (``at``: its ``perf_counter()``): the time to it is measured."""
        if self.ttft_ms is None:
            self.upstream_first = at or time.perf_counter()
            self.ttft_ms = round((self.upstream_first - self.started) * 1000, 3)
            UPSTREAM_TTFB.labels(self.profile).observe(self.upstream_first - self.started)

    def sent(self) -> None:
        """The client got bytes: the first time, what callgate added is measured."""
        if not self.client_first:
            self.client_first = True
            ADDED_TTFB.labels(self.profile).observe(time.perf_counter() - self.upstream_first)

    def settle(self, status: TurnStatus, error: str | None = None, failure: UpstreamFailure | None = None) -> None:
        """How the reply ended (the first word stands); ``failure``: how the upstream failed."""
        if self.status is None:
            self.status = status
            self.error = error if error is not None else self.error
            self.failure = failure

    def note(self, error: str) -> None:
        """Something worth recording about a reply that still went well."""
        self.error = error

    def outcome(self) -> TurnOutcome:
        """The turn's outcome (an upstream error event in a stream makes an ``ok``
        reply an ``upstream_error`` one)."""
        ins = self.inspector
        status = self.status or TurnStatus.ERROR
        error = self.error if self.status else (self.error or "callgate failed mid-reply")
        if ins.upstream_error is not None and status == TurnStatus.OK:
            status, error = TurnStatus.UPSTREAM_ERROR, json.dumps(ins.upstream_error, ensure_ascii=False)
        if status in (TurnStatus.UPSTREAM_ERROR, TurnStatus.UPSTREAM_INCOMPLETE):
            UPSTREAM_ERRORS.labels(self.failure or UpstreamFailure.STREAM_ERROR).inc()
        segs = self.segments or [ins]
        return TurnOutcome(
            status=status,
            error=error,
            raw_text="".join(s.raw_text for s in segs),
            spoken_text="".join(s.spoken_text for s in segs),
            reasoning_text="".join(s.reasoning_text for s in segs),
            tool_calls=[t for s in segs for t in s.tool_calls],
            ttft_ms=self.ttft_ms,
            duration_ms=round((time.perf_counter() - self.started) * 1000, 3),
            attempts=self._attempts(status),
        )

    def _attempts(self, status: TurnStatus) -> list[dict[str, Any]]:
        """Every attempt's record, its outcome settled; the metrics counted."""
        out = []
        for a in self.race.attempts:
            if a.outcome is None:
                a.outcome = self._final(a, status)
            cost = cost_usd(a.usage, self.s.pool.price(a.name, a.model))
            out.append(a.record(cost))
            UPSTREAM_ATTEMPTS.labels(a.name, a.outcome).inc()
            if a.first_token_ms is not None:
                UPSTREAM_FIRST_TOKEN.labels(a.name).observe(a.first_token_ms / 1000)
            if a.usage is not None:
                for kind, n in (("prompt", a.usage.prompt_tokens), ("completion", a.usage.completion_tokens), ("cached", a.usage.cached_tokens)):
                    UPSTREAM_TOKENS.labels(a.name, kind).inc(n)
            if cost is not None:
                UPSTREAM_COST.labels(a.name).inc(cost)
        return out

    def _final(self, a: Attempt, status: TurnStatus) -> AttemptOutcome:
        """How the adopted attempt (or one left running) ended, from the reply's status."""
        if a is not self.current:
            return AttemptOutcome.CANCELLED
        if status == TurnStatus.OK:
            return AttemptOutcome.CONTINUED if a.continuation else AttemptOutcome.WON
        if status == TurnStatus.CLIENT_DISCONNECTED:
            return AttemptOutcome.CANCELLED
        if a.error is None:
            a.error = self.error
        return AttemptOutcome.FAILED
