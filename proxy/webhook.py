"""POST JSON to a URL with a timeout and retries (the one outbound HTTP helper).

Used by the control-event webhook sink and the end function's ``webhook`` step.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger("callgate.webhook")


@dataclass(slots=True)
class Delivery:
    """Outcome of :func:`post_json`: ``ok``, tries made, last HTTP status or error."""

    ok: bool
    attempts: int
    status: int | None = None
    error: str | None = None


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    payload: Any,
    *,
    headers: dict[str, str] | None = None,
    timeout_s: float = 5.0,
    attempts: int = 1,
    backoff_s: float = 0.5,
) -> Delivery:
    """POST ``payload`` as JSON; a 2xx answer is success. Retries connection
    errors, timeouts, 408, 429 and 5xx up to ``attempts`` tries in all, waiting
    ``backoff_s`` and doubling. Never raises for HTTP or network failures."""
    body = json.dumps(payload, ensure_ascii=False).encode()
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    result = Delivery(ok=False, attempts=0)
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
                if resp.status not in (408, 429) and resp.status < 500:
                    return result  # the receiver refuses this payload; retrying will not help
        except (aiohttp.ClientError, TimeoutError) as e:
            result.status = None
            result.error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if attempt < attempts:
            await asyncio.sleep(delay)
            delay *= 2
    return result
