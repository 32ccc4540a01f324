"""``telemetry:``: OpenTelemetry traces exported over OTLP/HTTP (off by default).

What is exported, and when, is :mod:`proxy.telemetry`'s; this is the section as the
YAML gives it. Every key is documented in ``config.example.yaml``.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from yarl import URL

from .sections import Model, checked_headers

__all__ = ["TelemetryConfig"]


class TelemetryConfig(Model):
    """``telemetry:``. ``otlp_endpoint`` null and no ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` in the environment: nothing is traced and
    nothing of OpenTelemetry is imported."""

    otlp_endpoint: str | None = Field(
        None,
        description="the collector's OTLP/HTTP base URL, e.g. http://otel-collector:4318 (/v1/traces is appended "
        "unless the path ends with it); null: the OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT variables, else off",
    )
    service_name: str | None = Field(None, description="the spans' service.name (null: OTEL_SERVICE_NAME, else callgate)")
    headers: dict[str, str] = Field(
        default_factory=dict, repr=False, description="sent with every export (a hosted backend's key: ${OTLP_KEY}); added to OTEL_EXPORTER_OTLP_HEADERS"
    )
    capture_content: bool = Field(
        False, description="also export prompts, speech and tool arguments (phone numbers and log_mask.fields masked either way)"
    )
    sample_ratio: float = Field(
        1.0, ge=0, le=1, description="share of new traces kept; a runtime's traceparent decides for its own (sampled flag)"
    )
    max_queue_size: int = Field(2048, ge=1, description="ended spans waiting for export; when full the oldest are dropped, never a reply delayed")
    export_timeout_s: float = Field(10.0, gt=0, description="one export request's timeout (s), in the exporter's own thread")

    @field_validator("otlp_endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            url = URL(v)
        except ValueError as e:
            raise ValueError(f"{v!r} is not a URL ({e}): write one like 'http://otel-collector:4318'") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"{v!r} is not an absolute http:// or https:// URL: write one like 'http://otel-collector:4318'")
        return v

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        return checked_headers(v)

    def traces_url(self) -> str | None:
        """``otlp_endpoint`` as the traces URL (``…/v1/traces``), or ``None`` when unset."""
        if self.otlp_endpoint is None:
            return None
        url = URL(self.otlp_endpoint)
        path = url.path.rstrip("/")
        return str(url if path.endswith("/v1/traces") else url.with_path(path + "/v1/traces"))
