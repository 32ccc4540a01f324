"""``POST /openai-sip/v1/webhook``: OpenAI's incoming-call webhook.

The Standard Webhooks signature (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``) is checked on the raw body with ``front_doors.openai_sip.webhook_secret``
by the ``standardwebhooks`` library (300 s tolerance): a missing, bad or stale one is
401, logged, and nothing is done. Every verified delivery is answered 200
``{"received": true}`` at once (OpenAI retries anything else); a call of the
configured ``api`` is then accepted in the background, once per call id however often
it is delivered and whichever instance receives it (:mod:`.door`). A call announced on
the other API (one call can fire both webhooks) is acknowledged and left alone. With
no ``webhook_secret`` the door is off: 404.
"""

from __future__ import annotations

import logging

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from ....core.openai_sip.webhook import IncomingCall, WebhookError, read_webhook
from ....errors import NotFound, Unauthorized
from ....metrics import SIP_WEBHOOKS
from ...bodies import read_body
from ...services import SERVICES
from .door import SIP_DOOR

__all__ = ["webhook"]

log = logging.getLogger("callgate.sip")


async def webhook(request: web.Request) -> web.Response:
    """See the module docstring. Raises :class:`~proxy.errors.Unauthorized` (bad or
    stale signature), :class:`~proxy.errors.NotFound` (the door is off),
    :class:`~proxy.errors.BodyTooLarge`."""
    s = request.app[SERVICES]
    cfg = s.config.front_doors.openai_sip
    if not all(request.headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature")):
        SIP_WEBHOOKS.labels("bad_signature").inc()
        log.warning("openai sip webhook refused: no webhook-id, webhook-timestamp or webhook-signature header")
        raise Unauthorized("the webhook signature headers are missing", code="invalid_signature")
    if not cfg.enabled:
        raise NotFound("the OpenAI SIP front door is off: set front_doors.openai_sip.webhook_secret", code="front_door_off")
    raw = await read_body(request, s.config.server.max_body_bytes)
    delivery = request.headers.get("webhook-id", "")
    try:
        Webhook(cfg.webhook_secret).verify(raw, dict(request.headers), json_parse=False)
    except WebhookVerificationError as e:
        SIP_WEBHOOKS.labels("bad_signature").inc()
        log.warning("openai sip webhook refused webhook_id=%s: %s", delivery or "none", e)
        raise Unauthorized("the webhook signature is missing, wrong or stale", code="invalid_signature") from None
    try:
        event = read_webhook(raw)
    except WebhookError as e:
        SIP_WEBHOOKS.labels("unreadable").inc()
        log.warning("openai sip webhook unreadable webhook_id=%s code=%s: %s", delivery, e.code, e)
        return web.json_response({"received": True})
    if not isinstance(event, IncomingCall):
        SIP_WEBHOOKS.labels("other_type").inc()
        log.info("openai sip webhook ignored webhook_id=%s type=%s", delivery, event.type)
    elif event.api is not cfg.api_enum:
        SIP_WEBHOOKS.labels("other_api").inc()
        log.info("openai sip webhook for the other API left alone call_id=%s type=%s (api: %s)", event.call_id, event.event_type, cfg.api)
    else:
        SIP_WEBHOOKS.labels("call").inc()
        log.info("openai sip incoming call call_id=%s webhook_id=%s", event.call_id, delivery)
        request.app[SIP_DOOR].accept_later(event)
    return web.json_response({"received": True})
