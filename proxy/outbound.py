"""POST to a URL with a timeout and retries: the one outbound HTTP helper (aiohttp).

Used by control-event delivery (:mod:`proxy.server.delivery`) and, through
:class:`~proxy.endfn.effects.Effects`, by the end-function steps. It never raises for
HTTP or network failures: the answer is a :class:`PostResult`.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

__all__ = ["PostResult", "encode_json", "post", "post_json"]


@dataclass(slots=True)
class PostResult:
    """Outcome of :func:`post`: ``ok``, tries made, last HTTP status or error."""

    ok: bool
    attempts: int
    status: int | None = None
    error: str | None = None

    @property
    def retryable(self) -> bool:
        """Worth another try later: no answer, 408, 429 or 5xx."""
        return self.status is None or self.status in (408, 429) or self.status >= 500


def encode_json(payload: Any) -> bytes:
    """``payload`` as UTF-8 JSON (not ASCII-escaped; other values as their ``str``)."""
    return json.dumps(payload, ensure_ascii=False, default=str).encode()


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    *,
    headers: dict[str, str] | None = None,
    timeout_s: float = 5.0,
    attempts: int = 1,
    backoff_s: float = 0.5,
    auth: tuple[str, str] | None = None,
) -> PostResult:
    """POST ``body`` as it is; a 2xx answer is success. Retries what
    :attr:`PostResult.retryable` says up to ``attempts`` tries in all, waiting
    ``backoff_s`` and doubling. Never raises for HTTP or network failures."""
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if auth:  # RFC 7617 basic auth
        hdrs["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    result = PostResult(ok=False, attempts=0)
    delay = backoff_s
    for attempt in range(1, attempts + 1):
        result.attempts = attempt
        try:
            async with session.post(
                url, data=body, headers=hdrs, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as resp:
                await resp.read()
                result.status = resp.status
                if 200 <= resp.status < 300:
                    result.ok, result.error = True, None
                    return result
                result.error = f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as e:
            result.status = None
            result.error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if not result.retryable:
            return result  # the receiver refuses this payload; retrying will not help
        if attempt < attempts:
            await asyncio.sleep(delay)
            delay *= 2
    return result


async def post_json(session: aiohttp.ClientSession, url: str, payload: Any, **kw: Any) -> PostResult:
    """:func:`post` with ``payload`` serialized as JSON."""
    return await post(session, url, encode_json(payload), **kw)
