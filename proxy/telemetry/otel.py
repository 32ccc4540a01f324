"""The exported spans: :class:`OtelTelemetry`, OpenTelemetry's SDK behind the facade
of :mod:`proxy.telemetry.api`. Imported only when traces are on.

One ``TracerProvider`` of its own per server (never the global one), a
``BatchSpanProcessor`` with a bounded queue (``telemetry.max_queue_size``; when full
the oldest waiting spans are dropped) and the OTLP/HTTP protobuf exporter, which runs in the
processor's own thread: ending a span appends it to a deque and returns, so a reply
never waits for the collector, whether it is slow or gone. The sampler is
``ParentBased(TraceIdRatioBased(telemetry.sample_ratio))``: a runtime's
``traceparent`` decides for its own trace. Contexts are passed explicitly, never
attached to the running task, so no span leaks into another turn. The SDK's own
warnings (a full queue, a failed export) are logged at most once a minute each.

Attribute names: the GenAI semantic conventions (``gen_ai.*``), ``server.*``,
``session.id``, ``error.type``, and callgate's own under ``callgate.``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .. import __version__
from ..config import TelemetryConfig
from .api import AttemptSpan, AttrValue, StepSpan, Telemetry, TurnSpan
from .attributes import Scrub, output_messages, provider_name, server_of, user_message

__all__ = ["OtelTelemetry"]

_PROPAGATOR = TraceContextTextMapPropagator()
_ERROR_TURN = frozenset({"upstream_error", "upstream_incomplete", "error"})  # TurnStatus values that are failures
_ERROR_STEP = frozenset({"retry", "failed"})


class _OncePerMinute(logging.Filter):
    """Lets one record per (logger, message template) through each minute."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[tuple[str, object], float] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is the first of its kind this minute."""
        key, now = (record.name, record.msg), time.monotonic()
        with self._lock:
            if now - self._last.get(key, -60.0) < 60.0:
                return False
            self._last[key] = now
        return True


_QUIET = _OncePerMinute()


def _quiet_sdk() -> None:
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("opentelemetry"):
            logging.getLogger(name).addFilter(_QUIET)  # a filter already there is not added twice


def _headers(span: Span) -> dict[str, str]:
    if not span.get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=set_span_in_context(span))
    return carrier


class _Attempt(AttemptSpan):
    __slots__ = ("_span", "_scrub", "_ended")

    def __init__(self, span: Span, scrub: Scrub) -> None:
        self._span, self._scrub, self._ended = span, scrub, False

    def trace_headers(self) -> dict[str, str]:
        """See :meth:`AttemptSpan.trace_headers`."""
        return _headers(self._span)

    def event(self, name: str, attrs: Mapping[str, AttrValue] | None = None) -> None:
        """See :meth:`AttemptSpan.event`."""
        if not self._ended:
            self._span.add_event(name, self._scrub.attrs(attrs))

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
        """See :meth:`AttemptSpan.end`."""
        if self._ended:
            return
        self._ended = True
        attrs: dict[str, Any] = {
            "callgate.attempt.outcome": str(outcome), "gen_ai.response.model": response_model,
            "gen_ai.response.id": response_id, "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens, "callgate.attempt.ttft_ms": ttft_ms,
            "error.type": self._scrub.text(error) if error else None,
        }
        if finish_reasons:
            attrs["gen_ai.response.finish_reasons"] = [str(r) for r in finish_reasons]
        self._span.set_attributes({k: v for k, v in attrs.items() if v is not None})
        if outcome == "failed":
            self._span.set_status(Status(StatusCode.ERROR, self._scrub.text(error) if error else None))
        self._span.end()


class _Turn(TurnSpan):
    __slots__ = ("_t", "_span", "_ctx", "_ended")

    def __init__(self, t: OtelTelemetry, span: Span) -> None:
        self._t, self._span, self._ctx, self._ended = t, span, set_span_in_context(span), False

    def attempt(self, upstream: str, base_url: str, request_model: str | None, *, number: int = 1, reason: str = "first") -> AttemptSpan:
        """See :meth:`TurnSpan.attempt`."""
        host, port = server_of(base_url)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider_name(host), "gen_ai.request.model": request_model,
            "server.address": host, "server.port": port, "callgate.upstream": upstream,
            "callgate.attempt.number": number, "callgate.attempt.reason": reason,
        }
        span = self._t.tracer.start_span(
            f"chat {request_model}" if request_model else "chat", context=self._ctx, kind=SpanKind.CLIENT,
            attributes={k: v for k, v in attrs.items() if v is not None},
        )
        return _Attempt(span, self._t.scrub)

    def trace_headers(self) -> dict[str, str]:
        """See :meth:`TurnSpan.trace_headers`."""
        return _headers(self._span)

    def call(self, call_id: str, generation: int) -> None:
        """See :meth:`TurnSpan.call`."""
        if not self._ended:
            self._span.set_attributes({"session.id": call_id, "callgate.call.generation": generation})

    def event(self, name: str, attrs: Mapping[str, AttrValue] | None = None) -> None:
        """See :meth:`TurnSpan.event`."""
        if not self._ended:
            self._span.add_event(str(name), self._t.scrub.attrs(attrs))

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
        """See :meth:`TurnSpan.control_event`."""
        if self._ended:
            return
        attrs = self._t.scrub.attrs({"command.function": function, "command.source": source, "command.reject_code": code}, "callgate.")
        if event_id:
            attrs["callgate.event.id"] = event_id
        if args and self._t.capture_content:
            attrs["callgate.command.args"] = self._t.scrub.json(dict(args))
        self._span.add_event(str(type), attrs)

    def content(self, *, user_text: str = "", speech: str = "", tool_calls: Sequence[Mapping[str, Any]] = ()) -> None:
        """See :meth:`TurnSpan.content`."""
        if self._ended or not self._t.capture_content:
            return
        if user_text:
            self._span.set_attribute("gen_ai.input.messages", user_message(user_text, self._t.scrub))
        if speech or tool_calls:
            self._span.set_attribute("gen_ai.output.messages", output_messages(speech, tool_calls, self._t.scrub))

    def end(self, status: str, *, ttft_ms: float | None = None, speech_gap_max_ms: float | None = None, error: str | None = None) -> None:
        """See :meth:`TurnSpan.end`."""
        if self._ended:
            return
        self._ended = True
        attrs: dict[str, Any] = {
            "callgate.turn.status": str(status), "callgate.turn.ttft_ms": ttft_ms,
            "callgate.turn.speech_gap_max_ms": speech_gap_max_ms, "error.type": self._t.scrub.text(error) if error else None,
        }
        self._span.set_attributes({k: v for k, v in attrs.items() if v is not None})
        if str(status) in _ERROR_TURN:
            self._span.set_status(Status(StatusCode.ERROR, str(status)))
        self._span.end()


class _Step(StepSpan):
    __slots__ = ("_span", "_scrub", "_ended")

    def __init__(self, span: Span, scrub: Scrub) -> None:
        self._span, self._scrub, self._ended = span, scrub, False

    def end(self, outcome: str, *, error: str | None = None, response_code: int | None = None) -> None:
        """See :meth:`StepSpan.end`."""
        if self._ended:
            return
        self._ended = True
        self._span.set_attribute("callgate.step.outcome", str(outcome))
        if response_code is not None:
            self._span.set_attribute("http.response.status_code", response_code)
        if error:
            self._span.set_attribute("error.type", self._scrub.text(error)[:500])
        if str(outcome) in _ERROR_STEP:
            self._span.set_status(Status(StatusCode.ERROR, str(outcome)))
        self._span.end()


class OtelTelemetry(Telemetry):
    """Spans exported to ``endpoint`` (the full ``…/v1/traces`` URL) as
    ``service_name``; ``mask_fields``: ``log_mask.fields``. ``schedule_delay_ms``:
    the batch's wait (``None``: ``OTEL_BSP_SCHEDULE_DELAY``, else 5000)."""

    enabled = True

    def __init__(
        self, cfg: TelemetryConfig, endpoint: str, service_name: str, mask_fields: Sequence[str] = (), *, schedule_delay_ms: float | None = None
    ) -> None:
        self.endpoint = endpoint
        self.capture_content = cfg.capture_content
        self.scrub = Scrub(mask_fields)
        self.exporter = OTLPSpanExporter(endpoint=endpoint, headers=dict(cfg.headers) or None, timeout=cfg.export_timeout_s)
        self.processor = BatchSpanProcessor(
            self.exporter, max_queue_size=cfg.max_queue_size, schedule_delay_millis=schedule_delay_ms,
            max_export_batch_size=min(512, cfg.max_queue_size),
        )
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service_name, "service.version": __version__}),
            sampler=ParentBased(TraceIdRatioBased(cfg.sample_ratio)),
            shutdown_on_exit=False,
        )
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("callgate", __version__)
        _quiet_sdk()

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
        """See :meth:`Telemetry.turn`."""
        parent: Context | None = None
        if traceparent:
            parent = _PROPAGATOR.extract({"traceparent": traceparent, "tracestate": tracestate or ""})
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat", "gen_ai.request.model": model, "session.id": call_id,
            "callgate.call.generation": generation, "callgate.profile": profile, "callgate.request.id": request_id,
            "callgate.door": door,
        }
        span = self.tracer.start_span(
            f"chat {model}" if model else "chat", context=parent or Context(), kind=SpanKind.SERVER,
            attributes={k: v for k, v in attrs.items() if v is not None}, start_time=start_ns,
        )
        return _Turn(self, span)

    def step(self, call_id: str, generation: int, call_key: str, step: str, kind: str, attempt: int, idempotency_key: str) -> StepSpan:
        """See :meth:`Telemetry.step`."""
        span = self.tracer.start_span(
            f"end_function {step}", context=Context(), kind=SpanKind.INTERNAL,
            attributes={
                "session.id": call_id, "callgate.call.generation": generation, "callgate.call.key": call_key,
                "callgate.step.name": step, "callgate.step.kind": kind, "callgate.step.attempt": attempt,
                "callgate.step.idempotency_key": idempotency_key,
            },
        )
        return _Step(span, self.scrub)

    def flush(self, timeout_s: float = 5.0) -> bool:
        """See :meth:`Telemetry.flush`."""
        return bool(self.provider.force_flush(int(timeout_s * 1000)))

    def shutdown(self, grace_s: float = 2.0) -> None:
        """See :meth:`Telemetry.shutdown`: the spans left get ``grace_s`` to go; then
        an export still retrying (a collector that is gone) is told to stop."""
        timer = threading.Timer(grace_s, self.exporter.shutdown)
        timer.daemon = True
        timer.start()
        try:
            self.provider.shutdown()
        finally:
            timer.cancel()
