"""One reply in flight: its inspector, its commands handed to the registry, its
timings, and how it went (the turn's :class:`~proxy.storage.TurnOutcome`)."""

from __future__ import annotations

import json
import time

from ...calls.model import Call, Turn, TurnOutcome, TurnStatus
from ...core.commands import AnyCommand
from ...core.inspector import ReplyInspector
from ...core.profile import Profile
from ...core.sse import SSEEvent
from ...errors import UpstreamFailure
from ...metrics import ADDED_TTFB, CHUNKS, UPSTREAM_ERRORS, UPSTREAM_TTFB
from ..services import Services

__all__ = ["Reply"]


class Reply:
    """See the module docstring. ``started``: ``perf_counter()`` when the request was
    read (times in the outcome are ms from then)."""

    def __init__(self, s: Services, profile: Profile, call: Call, turn: Turn, started: float) -> None:
        self.s, self.call, self.turn = s, call, turn
        self.inspector = ReplyInspector(profile.settings, policy=s.registry.hangup_policy(call))
        self.started = started
        self.ttft_ms: float | None = None
        self.status: TurnStatus | None = None
        self.error: str | None = None
        self.failure: UpstreamFailure | None = None  # how the upstream failed (callgate_upstream_errors_total)
        self.profile = profile.name
        self.chunks = CHUNKS.labels(profile.name)
        self.upstream_first = 0.0  # perf_counter() at the upstream's first byte
        self.client_first = False  # the client got its first byte

    def commands(self, cmds: list[AnyCommand]) -> None:
        """Hand the reply's commands to the registry (they become control events)."""
        if cmds:
            self.s.registry.add_commands(self.call, self.turn, cmds, self.inspector.spoken_text)

    def feed(self, event: SSEEvent) -> bytes:
        """One SSE event through the inspector; the bytes to send."""
        out, cmds = self.inspector.feed(event)
        if cmds:
            self.commands(cmds)
        return out

    def close(self) -> bytes:
        """End of the stream: what the inspector still held, its commands acted on."""
        tail, cmds = self.inspector.close()
        self.commands(cmds)
        return tail

    def first_byte(self) -> None:
        """The upstream's first byte came: the time to it is measured."""
        if self.ttft_ms is None:
            self.upstream_first = time.perf_counter()
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
        return TurnOutcome(
            status=status,
            error=error,
            raw_text=ins.raw_text,
            spoken_text=ins.spoken_text,
            reasoning_text=ins.reasoning_text,
            tool_calls=ins.tool_calls,
            ttft_ms=self.ttft_ms,
            duration_ms=round((time.perf_counter() - self.started) * 1000, 3),
        )
