"""The incoming-call webhook, read once its Standard Webhooks signature is verified
(by the server, on the raw body), into a frozen :class:`IncomingCall`.

Source: ``shared/reference/realtime-sip.md`` §1 (openai-python
``types/webhooks/{live_transport_incoming,live_call_incoming,realtime_call_incoming}_webhook_event.py``).
Three types announce a call: ``realtime.call.incoming`` (``data.call_id``, ``rtc_…``),
``live.transport.incoming`` and the deprecated ``live.call.incoming``
(``data.session_id``, ``live_…``); every other type is an :class:`OtherEvent`.
``data.sip_headers`` is a list of ``{"name", "value"}`` in the order received
(repeats kept); it is **untrusted**: the numbers read from it go into the call's
metadata and decide ``allow_callers``, never anything that grants access.

A SIP ``From`` / ``To`` value (RFC 3261 §20.20 name-addr or addr-spec, e.g.
``"Alice" <sip:+14255551212@sip.example.com;user=phone>;tag=9f``, or a ``tel:`` URI)
gives a number when its user part is one (:func:`sip_number`).

Exceptions::

    ValueError
    └── WebhookError      .code: WebhookCode (invalid_json, not_object, missing_field)
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import unquote

from ..json_body import scrub_surrogates
from .api import Api

__all__ = [
    "INCOMING", "IncomingCall", "OtherEvent", "SipHeader", "WebhookCode", "WebhookError", "caller_allowed", "read_webhook",
    "sip_number",
]

# The webhook types that announce a call, and the API each belongs to.
INCOMING: dict[str, Api] = {
    "realtime.call.incoming": Api.REALTIME,
    "live.transport.incoming": Api.LIVE,
    "live.call.incoming": Api.LIVE,  # deprecated: old subscriptions still send it
}


class WebhookCode(StrEnum):
    """Why a verified delivery could not be read."""

    INVALID_JSON = "invalid_json"
    NOT_OBJECT = "not_object"
    MISSING_FIELD = "missing_field"


class WebhookError(ValueError):
    """A delivery callgate cannot read: ``code`` says why, the message says where."""

    def __init__(self, code: WebhookCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class SipHeader:
    """One SIP header of the call's INVITE, as OpenAI forwarded it."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """A call waiting to be accepted. ``call_id``: ``data.call_id`` (Realtime) or
    ``data.session_id`` (Live), unchanged; ``event_id``: the event's ``id``;
    ``caller`` / ``callee``: the numbers of ``From`` / ``To`` (empty when they hold
    none)."""

    api: Api
    call_id: str
    event_id: str
    event_type: str
    headers: tuple[SipHeader, ...]
    caller: str
    callee: str

    def header(self, name: str) -> str:
        """The first header named ``name`` (case-insensitive), or ``""``."""
        return next((h.value for h in self.headers if h.name.lower() == name.lower()), "")

    def metadata(self) -> dict[str, Any]:
        """The call's metadata: ``caller_number``, ``callee_number`` (when known),
        ``runtime_call_id`` (OpenAI's id), ``openai_api``, ``sip_call_id`` (the SIP
        ``Call-ID``), ``sip_from`` and ``sip_to`` as received."""
        meta: dict[str, Any] = {
            "caller_number": self.caller, "callee_number": self.callee, "runtime_call_id": self.call_id,
            "openai_api": str(self.api), "sip_call_id": self.header("Call-ID"), "sip_from": self.header("From"),
            "sip_to": self.header("To"),
        }
        return {k: v for k, v in meta.items() if v}


@dataclass(frozen=True, slots=True)
class OtherEvent:
    """A verified delivery of another type (acknowledged, nothing done)."""

    type: str
    event_id: str


def read_webhook(body: bytes) -> IncomingCall | OtherEvent:
    """A verified delivery's body as an :class:`IncomingCall` or :class:`OtherEvent`.
    Raises :class:`WebhookError`."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise WebhookError(WebhookCode.INVALID_JSON, f"the body is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise WebhookError(WebhookCode.NOT_OBJECT, f"the body is JSON {type(data).__name__}, not an object")
    data = scrub_surrogates(body, data)  # the caller's SIP headers may carry a lone surrogate: unstorable
    kind, event_id = _str(data, "type"), _str(data, "id")
    api = INCOMING.get(kind)
    if api is None:
        return OtherEvent(kind, event_id)
    inner = data.get("data")
    if not isinstance(inner, dict):
        raise WebhookError(WebhookCode.MISSING_FIELD, f"{kind}: 'data' is not an object")
    call_id = _str(inner, "session_id" if api is Api.LIVE else "call_id")
    if not call_id:
        raise WebhookError(WebhookCode.MISSING_FIELD, f"{kind}: data.{'session_id' if api is Api.LIVE else 'call_id'} is missing")
    headers = _headers(inner.get("sip_headers"))
    first = {h.name.lower(): h.value for h in reversed(headers)}
    return IncomingCall(
        api, call_id, event_id, kind, headers, sip_number(first.get("from", "")), sip_number(first.get("to", ""))
    )


def _str(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    return value if isinstance(value, str) else ""


def _headers(raw: Any) -> tuple[SipHeader, ...]:
    if not isinstance(raw, list):
        return ()
    out = []
    for h in raw:
        if isinstance(h, dict) and isinstance(h.get("name"), str) and isinstance(h.get("value"), str):
            out.append(SipHeader(h["name"], h["value"]))
    return tuple(out)


_ANGLE = re.compile(r"<([^>]*)>")
_NUMBER = re.compile(r"^\+?[0-9*#]{1,32}$")
_VISUAL = re.compile(r"[-.() ]")  # RFC 3966 visual separators


def sip_number(value: str) -> str:
    """The phone number in a SIP ``From`` / ``To`` value: the user part of its
    ``sip:``/``sips:`` URI or the number of its ``tel:`` URI, percent-decoded, visual
    separators removed, when that is ``+`` and digits (``*``, ``#`` too); else ``""``.
    ``"Bob" <sip:+1 (425) 555-1212@host;user=phone>;tag=1`` -> ``+14255551212``."""
    m = _ANGLE.search(value)
    uri = (m.group(1) if m else value.split(";", 1)[0]).strip()
    scheme, _, rest = uri.partition(":")
    scheme = scheme.lower()
    if scheme in ("sip", "sips"):
        user, at, _host = rest.partition("@")
        if not at:
            return ""
        candidate = user.split(";", 1)[0]
    elif scheme == "tel":
        candidate = rest.split(";", 1)[0]
    else:
        return ""
    number = _VISUAL.sub("", unquote(candidate))
    return number if _NUMBER.match(number) else ""


def caller_allowed(number: str, patterns: Sequence[str]) -> bool:
    """``True`` when ``patterns`` is empty (everyone), or the caller's ``number``
    matches one (exact or shell-style, e.g. ``+1425*``); a call without a number is
    then refused."""
    if not patterns:
        return True
    return bool(number) and any(fnmatchcase(number, p) for p in patterns)
