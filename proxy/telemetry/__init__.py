"""Traces: OpenTelemetry spans of turns, upstream attempts and end-function steps,
exported over OTLP/HTTP, or nothing at all.

==============  ===================================================================
``api``         the facade callers use (``Telemetry``, ``TurnSpan``, ``AttemptSpan``,
                ``StepSpan``, ``TurnEvent``) and its no-op, ``NOOP``: traces off
``attributes``  what a span may carry: masked strings, the GenAI provider and server
                of an upstream, content as the conventions' messages
``otel``        the exported spans: OpenTelemetry's SDK, a batch processor with a
                bounded queue, the OTLP/HTTP exporter (imported only when on)
==============  ===================================================================

:func:`build` decides: with ``telemetry.otlp_endpoint``, or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` in the
environment (and neither ``OTEL_SDK_DISABLED=true`` nor ``OTEL_TRACES_EXPORTER=none``),
it returns :class:`~proxy.telemetry.otel.OtelTelemetry`; otherwise :data:`NOOP`, and
nothing of ``opentelemetry`` is imported (``tests/test_telemetry.py`` holds it).

What it may import: the import rule in :mod:`proxy`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

from ..config import TelemetryConfig, safe_url
from ..errors import ConfigError
from .api import NOOP, NOOP_ATTEMPT, NOOP_STEP, NOOP_TURN, AttemptSpan, AttrValue, StepSpan, Telemetry, TurnEvent, TurnSpan

__all__ = ["NOOP", "NOOP_ATTEMPT", "NOOP_STEP", "NOOP_TURN", "AttemptSpan", "AttrValue", "StepSpan", "Telemetry", "TurnEvent", "TurnSpan", "build", "traces_endpoint"]

log = logging.getLogger("callgate.telemetry")


def traces_endpoint(cfg: TelemetryConfig, env: Mapping[str, str] | None = None) -> str | None:
    """The OTLP/HTTP traces URL spans go to, or ``None`` (traces off): ``OTEL_SDK_DISABLED=true``
    or ``OTEL_TRACES_EXPORTER=none`` turn them off; then ``telemetry.otlp_endpoint``,
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (as is), ``OTEL_EXPORTER_OTLP_ENDPOINT``
    (``/v1/traces`` appended), as the OpenTelemetry specification reads them."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" or env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    configured = cfg.traces_url()
    if configured:
        return configured
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip():
        return env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].strip()
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return base.rstrip("/") + "/v1/traces" if base else None


def build(
    cfg: TelemetryConfig, mask_fields: Sequence[str] = (), env: Mapping[str, str] | None = None, *, schedule_delay_ms: float | None = None
) -> Telemetry:
    """The server's :class:`Telemetry` for ``cfg`` (``mask_fields``: ``log_mask.fields``;
    ``schedule_delay_ms``: the batch's wait, default ``OTEL_BSP_SCHEDULE_DELAY`` or
    5000). Raises :class:`~proxy.errors.ConfigError` when ``telemetry.otlp_endpoint``
    is set but the ``telemetry`` extra is not installed (an endpoint from the
    environment alone only warns)."""
    env = os.environ if env is None else env
    endpoint = traces_endpoint(cfg, env)
    if endpoint is None:
        return NOOP
    try:
        from .otel import OtelTelemetry
    except ImportError as e:
        message = f"traces need the telemetry extra (pip install 'callgate[telemetry]'): {e}"
        if cfg.otlp_endpoint:
            raise ConfigError(f"telemetry.otlp_endpoint: {message}") from None
        log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but %s; traces stay off", message)
        return NOOP
    service = cfg.service_name or env.get("OTEL_SERVICE_NAME", "").strip() or "callgate"
    telemetry = OtelTelemetry(cfg, endpoint, service, mask_fields, schedule_delay_ms=schedule_delay_ms)
    log.info(
        "traces exported to %s as service %s (sample_ratio=%s, capture_content=%s)",
        safe_url(endpoint), service, cfg.sample_ratio, str(cfg.capture_content).lower(),
    )
    return telemetry
