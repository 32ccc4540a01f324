"""Which speech-to-speech API a call is on, and where its REST calls and sideband go.

Source: ``shared/reference/realtime-sip.md`` §0, §2, §3, §6. GPT-Live:
``POST {base}/live/sessions/{session_id}/{accept|reject|hangup|refer}`` and the
sideband ``wss://…/live/sessions/{session_id}/attach``; Realtime:
``POST {base}/realtime/calls/{call_id}/{…}`` and ``wss://…/realtime?call_id={call_id}``.
The sideband's scheme is ``wss`` for an ``https`` base URL (``ws`` for ``http``, the
tests' scripted OpenAI). Call ids are passed through unchanged (never converted
between the ``rtc_`` and ``live_`` prefixes).
"""

from __future__ import annotations

from enum import StrEnum
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

__all__ = ["Api", "Verb", "rest_url", "sideband_url", "target_uri"]


class Api(StrEnum):
    """The API a call is answered on (``front_doors.openai_sip.api``)."""

    LIVE = "live"  # GPT-Live: /v1/live/sessions/...
    REALTIME = "realtime"  # the Realtime API: /v1/realtime/calls/...


class Verb(StrEnum):
    """A REST call on one call."""

    ACCEPT = "accept"
    REJECT = "reject"
    HANGUP = "hangup"
    REFER = "refer"


def _calls_path(api: Api) -> str:
    return "live/sessions" if api is Api.LIVE else "realtime/calls"


def rest_url(base_url: str, api: Api, call_id: str, verb: Verb) -> str:
    """``{base_url}/live/sessions/{id}/{verb}`` or ``{base_url}/realtime/calls/{id}/{verb}``
    (the id percent-encoded as one path segment)."""
    return f"{base_url.rstrip('/')}/{_calls_path(api)}/{quote(call_id, safe='')}/{verb}"


def sideband_url(base_url: str, api: Api, call_id: str) -> str:
    """The sideband WebSocket URL of a call, from ``base_url``: ``wss`` for ``https``,
    ``ws`` for ``http``; Live ``…/live/sessions/{id}/attach``, Realtime
    ``…/realtime?call_id={id}``."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = parts.path.rstrip("/")
    if api is Api.LIVE:
        return urlunsplit((scheme, parts.netloc, f"{path}/live/sessions/{quote(call_id, safe='')}/attach", parts.query, ""))
    query = "&".join(q for q in (parts.query, urlencode({"call_id": call_id})) if q)
    return urlunsplit((scheme, parts.netloc, f"{path}/realtime", query, ""))


def target_uri(callee: str) -> str:
    """A transfer's ``target_uri`` (it goes into SIP ``Refer-To``): a ``sip:``,
    ``sips:`` or ``tel:`` URI as given, a phone number as ``tel:<number>``. ``callee``
    has passed :func:`proxy.core.commands.callee_shape_ok`."""
    if callee.lower().startswith(("sip:", "sips:", "tel:")):
        return callee
    return f"tel:{callee}"
