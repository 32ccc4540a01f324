"""OpenAI's REST calls on one SIP call: accept, reject, hangup, refer.

``POST {base_url}/{live/sessions|realtime/calls}/{id}/{verb}`` with ``Authorization:
Bearer {api_key}`` (:func:`proxy.core.openai_sip.api.rest_url`); a 2xx is an
"accepted" acknowledgement, not the SIP outcome (reference §6). Every failure is
logged with the call id, the verb and the HTTP status (``none`` when nothing
answered) and counted (``callgate_openai_sip_rest_total``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from ....config import OpenAISipConfig
from ....core.openai_sip.api import Api, Verb, rest_url
from ....metrics import SIP_REST

__all__ = ["OpenAIRest", "RestResult"]

log = logging.getLogger("callgate.sip")

_TIMEOUT = aiohttp.ClientTimeout(total=15, sock_connect=5)


@dataclass(frozen=True, slots=True)
class RestResult:
    """An answer: its HTTP ``status`` (``None``: no answer) and body text (or the error)."""

    status: int | None
    body: str = ""

    @property
    def ok(self) -> bool:
        """2xx."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        """404: the call is gone (the caller hung up first)."""
        return self.status == 404


class OpenAIRest:
    """The REST calls, on the server's pooled session; ``config()``: the door's config
    now (a reload changes the key for the next call)."""

    def __init__(self, session: aiohttp.ClientSession, config: Callable[[], OpenAISipConfig]) -> None:
        self.session = session
        self.config = config

    async def post(self, api: Api, call_id: str, verb: Verb, body: Mapping[str, Any] | None = None) -> RestResult:
        """``POST …/{call_id}/{verb}`` with ``body`` as JSON (none for hangup)."""
        cfg = self.config()
        url = rest_url(cfg.base_url, api, call_id, verb)
        headers = {"Authorization": f"Bearer {cfg.api_key}"}
        try:
            async with self.session.post(url, json=dict(body) if body is not None else None, headers=headers, timeout=_TIMEOUT) as r:
                result = RestResult(r.status, (await r.text(errors="replace"))[:500])
        except (aiohttp.ClientError, TimeoutError) as e:
            result = RestResult(None, f"{type(e).__name__}: {e}")
        SIP_REST.labels(verb, "ok" if result.ok else "gone" if result.gone else "failed").inc()
        if not result.ok:
            log.warning(
                "openai sip %s failed call_id=%s status=%s: %s", verb, call_id, result.status if result.status is not None else "none",
                result.body[:200],
            )
        return result
