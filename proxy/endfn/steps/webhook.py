"""``webhook`` step: POST the call record (or the fields chosen) to a URL.

Headers: the configured ones, ``Idempotency-Key: {call_id}:{step}`` (stable across
retries and restarts, so the receiver can deduplicate) and, per the Standard
Webhooks spec, ``webhook-id`` (the same key) and, when ``secret`` is set,
``webhook-timestamp`` and ``webhook-signature`` (``v1,<base64 HMAC-SHA256>``,
computed by the ``standardwebhooks`` library). The body is the call record plus
``results`` (earlier steps' outputs).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

from ...config import WebhookStep
from ...outbound import encode_json
from ..conversation import Conversation
from ..effects import Effects
from .result import StepResult

__all__ = ["payload", "run", "signed_headers"]


def signed_headers(key: str, body: bytes, secret: str | None, now: datetime | None = None) -> dict[str, str]:
    """``Idempotency-Key`` and the Standard Webhooks headers for ``body``."""
    headers = {"Idempotency-Key": key, "webhook-id": key}
    if secret:
        now = now or datetime.now(UTC)
        headers["webhook-timestamp"] = str(int(now.timestamp()))
        headers["webhook-signature"] = Webhook(secret).sign(key, now, body.decode("utf-8"))
    return headers


def payload(conv: Conversation, fields: list[str] | None) -> dict[str, Any]:
    """The body: the call record with ``results`` and ``outcome_tags``, or only ``fields`` of it."""
    record = {**conv.record, "results": conv.results, "outcome_tags": conv.outcome_tags}
    if fields:
        record = {k: record.get(k) for k in fields}
    return record


async def run(cfg: WebhookStep, conv: Conversation, fx: Effects) -> StepResult:
    """POST :func:`payload` with :func:`signed_headers`; output ``{"status": HTTP status}``."""
    body = encode_json(payload(conv, cfg.fields))
    headers = {"Content-Type": "application/json", **cfg.headers, **signed_headers(conv.idempotency_key, body, cfg.secret)}
    d = await fx.post(cfg.url, body, headers, cfg.timeout_s)
    return StepResult(ok=d.ok, error=d.error, response_code=d.status, retryable=d.retryable, output={"status": d.status})
