"""``sms`` step: a follow-up text message through an SMS gateway.

The text is ``template`` with ``{dotted.path}`` placeholders filled from the call
context (``call_id``, ``end_reason``, ``state.*``, ``metadata.*``, ``summary.*``,
``results.*``), or, when ``llm`` is set, written by that model to mirror the call's
tone (prompt ``prompts/sms.md``; the template is the fallback). ``to`` is a
template too (default ``{metadata.caller_number}``, the normalized caller number every
profile fills when the runtime sends it).

Presets: ``generic`` POSTs JSON ``{"to", "from", "text", "call_id"}``; ``twilio``
POSTs the form ``To``, ``From``, ``Body`` with basic auth (account SID, auth token)
as Twilio's Messages API takes it. Both send ``Idempotency-Key`` (Twilio:
``I-Twilio-Idempotency-Token``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from ...config import SmsStep
from ...core.call_id import body_path
from ...outbound import encode_json
from ...prompts import prompts_dir
from ..conversation import Conversation
from ..effects import Effects
from .result import StepResult

__all__ = ["render", "run", "write_text"]
from .summary import transcript_text

_FIELD = re.compile(r"\{([\w.]+)\}")


def render(template: str, ctx: dict[str, Any]) -> str:
    """Fill ``{dotted.path}`` placeholders; a missing value becomes empty."""

    def value(m: re.Match[str]) -> str:
        v = body_path(ctx, m.group(1))
        return "" if v is None else str(v)

    return _FIELD.sub(value, template)


async def write_text(cfg: SmsStep, conv: Conversation, fx: Effects, fallback: str) -> str:
    """The message text: ``cfg.llm``'s (at most 640 chars), or ``fallback`` when no
    model is set, in the sandbox, or when the model fails or answers nothing."""
    if cfg.llm is None:
        return fallback
    client = fx.llm(cfg.llm)
    if client is None:
        return fallback
    try:
        prompt = (prompts_dir() / "sms.md").read_text(encoding="utf-8")
        reply = await client.chat.completions.create(
            model=cfg.llm.model,
            messages=[{"role": "system", "content": prompt}, {"role": "user", "content": transcript_text(conv) + f"\n\nFallback text: {fallback}"}],
        )
        text = (reply.choices[0].message.content or "").strip()
        return text[:640] or fallback
    except Exception:
        return fallback
    finally:
        await client.close()


async def run(cfg: SmsStep, conv: Conversation, fx: Effects) -> StepResult:
    """Send the SMS (see the module docstring); output ``{to, text, status}``. No
    recipient fails without retry; the gateway's answer decides the rest."""
    ctx = conv.context()
    to = render(cfg.to, ctx).strip()
    if not to:
        return StepResult(ok=False, error=f"no recipient: {cfg.to!r} is empty for this call", retryable=False)
    text = await write_text(cfg, conv, fx, render(cfg.template, ctx))
    key = conv.idempotency_key
    auth = (cfg.username, cfg.password) if cfg.username else None
    if cfg.preset == "twilio":
        body = urlencode({"To": to, "From": cfg.sender, "Body": text}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", "I-Twilio-Idempotency-Token": key, **cfg.headers}
    else:
        body = encode_json({"to": to, "from": cfg.sender, "text": text, "call_id": conv.id})
        headers = {"Content-Type": "application/json", "Idempotency-Key": key, **cfg.headers}
    d = await fx.post(cfg.url, body, headers, cfg.timeout_s, auth)
    return StepResult(ok=d.ok, error=d.error, response_code=d.status, retryable=d.retryable, output={"to": to, "text": text, "status": d.status})
