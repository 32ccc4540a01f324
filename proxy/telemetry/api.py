"""The tracing facade the reply machine, the front doors and the end function call,
and its no-op: what they see of OpenTelemetry, with nothing of it imported.

:class:`Telemetry` makes spans: :meth:`Telemetry.turn` one per turn (kind SERVER,
``chat {model}``), :meth:`TurnSpan.attempt` one per upstream attempt under it (kind
CLIENT, the GenAI semantic conventions), :meth:`Telemetry.step` one per end-function
step run. The classes here *are* the off switch: every method does nothing and
returns a shared no-op object (no allocation, no clock read), so a caller never asks
whether tracing is on. :mod:`proxy.telemetry.otel` subclasses them to export.

Rules a caller can rely on, on or off:

* ``end`` is called once per span; later calls (and calls after it) are ignored.
* Nothing raises: a span is an observer, never a reason for a reply to fail.
* Content (what the caller said, the speech, tool and command arguments) goes only
  through :meth:`TurnSpan.content` and the ``args`` of :meth:`TurnSpan.control_event`,
  and is exported only with ``telemetry.capture_content: true``; phone numbers and
  the ``log_mask.fields`` are masked in every string exported, ids aside.
* Times are ms (``ttft_ms``, ``speech_gap_max_ms``); ``start_ns`` is Unix ns
  (``time.time_ns()``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

__all__ = ["NOOP", "NOOP_ATTEMPT", "NOOP_STEP", "NOOP_TURN", "AttemptSpan", "AttrValue", "StepSpan", "Telemetry", "TurnEvent", "TurnSpan"]

AttrValue = str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]
"""A span attribute's value, as OpenTelemetry takes it."""


class TurnEvent(StrEnum):
    """Span events of a turn (:meth:`TurnSpan.event`, :meth:`TurnSpan.control_event`):
    the control events callgate emitted, and what the pool did."""

    HANGUP = "hangup"
    TRANSFER = "transfer"
    COMMAND_REJECTED = "command.rejected"
    STALL = "stall"  # the speaking attempt went silent routing.stall_ms (or broke) before its finish
    HEDGE = "hedge"  # no speakable output within routing.first_token_ms: the next upstream started too
    FALLBACK = "fallback"  # an attempt failed before speech: the next upstream took over
    CONTINUATION = "continuation"  # an attempt continues a stalled one after what was heard
    BARGE_IN = "barge_in"  # the caller spoke over the reply (a front door's interrupt)


class AttemptSpan:
    """One upstream attempt (no-op). :mod:`proxy.telemetry.otel`'s is a CLIENT span
    ``chat {request_model}`` under its turn."""

    __slots__ = ()

    def trace_headers(self) -> dict[str, str]:
        """W3C ``traceparent`` (and ``tracestate``) naming this attempt, to add to the
        upstream request so a provider's trace joins; ``{}`` when off or not sampled."""
        return {}

    def event(self, name: str, attrs: Mapping[str, AttrValue] | None = None) -> None:
        """A span event on the attempt (``first_token``, ``stall``...); ``attrs`` are
        not content: their strings are masked, none is dropped."""

    def end(
        self,
        outcome: str,
        *,
        response_model: str | None = None,
        response_id: str | None = None,
        finish_reasons: Sequence[str] = (),
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        ttft_ms: float | None = None,
        error: str | None = None,
    ) -> None:
        """The attempt is over. ``outcome``: an ``AttemptOutcome`` value (``won``,
        ``lost``, ``failed``, ``cancelled``, ``stalled``, ``continued``); the rest as
        the upstream reported them (``None``/empty: unknown); ``ttft_ms``: request
        read -> its first speakable output; ``error``: a failure code or short text
        (``failed`` also marks the span's status ERROR)."""


class TurnSpan:
    """One turn (no-op). :mod:`proxy.telemetry.otel`'s is a SERVER span ``chat
    {model}``, continuing the runtime's trace context when it sent one."""

    __slots__ = ()

    def attempt(self, upstream: str, base_url: str, request_model: str | None, *, number: int = 1, reason: str = "first") -> AttemptSpan:
        """A child span for an attempt at pool entry ``upstream`` (its ``base_url``:
        ``server.address``/``server.port`` and ``gen_ai.provider.name`` are read from
        it, never its user, password or query). ``number``: 1, 2, ... in start order;
        ``reason``: ``first``, ``fallback``, ``hedge`` or ``continuation``."""
        return NOOP_ATTEMPT

    def trace_headers(self) -> dict[str, str]:
        """W3C ``traceparent``/``tracestate`` naming the turn span; ``{}`` when off."""
        return {}

    def call(self, call_id: str, generation: int) -> None:
        """The turn's call, once known (the turn span starts when the request was read,
        before the call is found): ``session.id`` and ``callgate.call.generation``."""

    def event(self, name: str, attrs: Mapping[str, AttrValue] | None = None) -> None:
        """A span event: a :class:`TurnEvent` value (``stall``, ``hedge``,
        ``continuation``...) with attributes that are not content (strings masked)."""

    def control_event(
        self,
        type: str,
        *,
        event_id: str | None = None,
        function: str | None = None,
        source: str | None = None,
        code: str | None = None,
        args: Mapping[str, Any] | None = None,
    ) -> None:
        """A control event callgate emitted, as a span event named ``type``
        (``hangup``, ``transfer``, ``command.rejected``) with ``callgate.event.id``,
        ``callgate.command.function``, ``.source``, ``.reject_code`` (``code``: a
        ``RejectReason`` value); ``args`` (endword, callee...) are content."""

    def content(self, *, user_text: str = "", speech: str = "", tool_calls: Sequence[Mapping[str, Any]] = ()) -> None:
        """What the caller said, what was spoken and the tool calls
        (``[{"name", "arguments"}]``): exported only with ``capture_content``, as
        ``gen_ai.input.messages`` / ``gen_ai.output.messages`` (JSON), masked."""

    def end(
        self,
        status: str,
        *,
        ttft_ms: float | None = None,
        speech_gap_max_ms: float | None = None,
        error: str | None = None,
    ) -> None:
        """The turn is over: ``status`` a ``TurnStatus`` value (``upstream_error``,
        ``upstream_incomplete`` and ``error`` mark the span ERROR); ``ttft_ms`` and
        ``speech_gap_max_ms`` as the turn records them (ms); ``error``: its code."""


class StepSpan:
    """One end-function step run (no-op). :mod:`proxy.telemetry.otel`'s is a root
    span ``end_function {step}``, tied to its call by ``session.id``."""

    __slots__ = ()

    def end(self, outcome: str, *, error: str | None = None, response_code: int | None = None) -> None:
        """The try is over: ``outcome`` ``done``, ``retry``, ``failed`` or ``skipped``
        (``retry`` and ``failed`` mark the span ERROR); ``error`` masked."""


class Telemetry:
    """Traces off: every span is a no-op (:data:`NOOP`). ``enabled``: spans are
    exported; ``capture_content``: content is too."""

    enabled = False
    capture_content = False

    def turn(
        self,
        model: str | None,
        call_id: str | None,
        generation: int,
        profile: str,
        traceparent: str | None = None,
        tracestate: str | None = None,
        *,
        request_id: str | None = None,
        door: str | None = None,
        start_ns: int | None = None,
    ) -> TurnSpan:
        """A turn's span: ``model`` as asked, ``call_id`` (``session.id``; ``None`` for
        a request of no call), ``generation``, ``profile``; ``traceparent`` and
        ``tracestate`` as the runtime (or the platform, on a front door) sent them
        (W3C Trace Context; an invalid one starts a new trace); ``request_id``: the
        turn's; ``door``: ``retell``, ``conversation_relay`` on a front door."""
        return NOOP_TURN

    def step(self, call_id: str, generation: int, call_key: str, step: str, kind: str, attempt: int, idempotency_key: str) -> StepSpan:
        """An end-function step run's span: try number ``attempt`` (1, 2, ...) of
        ``step`` (its ``kind``) for the call ``call_id`` (``session.id``)."""
        return NOOP_STEP

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Export what has ended, now (blocking: call it off the event loop); whether
        it all went."""
        return True

    def shutdown(self, grace_s: float = 2.0) -> None:
        """Export what is left and stop the exporter (blocking: call it off the event
        loop); an export still failing after ``grace_s`` (s) is given up."""


NOOP_ATTEMPT = AttemptSpan()
"""The attempt span of an attempt that traces nothing."""
NOOP_TURN = TurnSpan()
"""The turn span of a reply that traces nothing (the default of the relay's parts)."""
NOOP_STEP = StepSpan()
"""The span of a step that traces nothing."""
NOOP = Telemetry()
"""Tracing off: the one shared no-op."""
