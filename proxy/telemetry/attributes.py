"""What a span may carry, decided without OpenTelemetry: masked strings, the GenAI
provider and server of an upstream URL, content as the GenAI conventions' messages.

Masking is :func:`proxy.logs.mask_text`'s, as the logs and the operator page do it:
phone numbers (always, whatever ``log_mask.phone_numbers`` says: a trace backend is
another company's disk) and the values of ``log_mask.fields``. Ids (``session.id``,
``gen_ai.response.id``, event ids) are kept as they are, as on the operator page.

Sources: OpenTelemetry semantic conventions for generative AI (``gen_ai.*``,
https://opentelemetry.io/docs/specs/semconv/gen-ai/), ``server.*`` and
``session.id`` from the general registry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from yarl import URL

from ..logs import mask_text

__all__ = ["Scrub", "output_messages", "provider_name", "server_of", "user_message"]

# gen_ai.provider.name's well-known values, by the API's host (suffix); any other
# OpenAI-compatible API is "openai" (the protocol callgate speaks to it).
_PROVIDERS: tuple[tuple[str, str], ...] = (
    ("api.openai.com", "openai"),
    (".openai.azure.com", "azure.ai.openai"),
    (".services.ai.azure.com", "azure.ai.inference"),
    ("api.anthropic.com", "anthropic"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),
    ("aiplatform.googleapis.com", "gcp.vertex_ai"),
    ("api.groq.com", "groq"),
    ("api.mistral.ai", "mistral_ai"),
    ("api.deepseek.com", "deepseek"),
    ("api.x.ai", "x_ai"),
    ("api.perplexity.ai", "perplexity"),
    ("api.cohere.com", "cohere"),
    ("bedrock-runtime.", "aws.bedrock"),
)


def provider_name(host: str | None) -> str:
    """``gen_ai.provider.name`` for an upstream host: a well-known value (``openai``,
    ``azure.ai.openai``, ``anthropic``, ``groq``, ``mistral_ai``...), else ``openai``."""
    h = (host or "").lower()
    for suffix, name in _PROVIDERS:
        if h == suffix or h.endswith(suffix) or (suffix.endswith(".") and h.startswith(suffix)):
            return name
    return "openai"


def server_of(base_url: str) -> tuple[str | None, int | None]:
    """``(server.address, server.port)`` of an upstream's ``base_url`` (the port as
    given or the scheme's default); ``(None, None)`` for a value that is not a URL."""
    try:
        url = URL(base_url)
    except (ValueError, TypeError):
        return None, None
    return url.host, url.port


class Scrub:
    """Masks strings before they leave: phone numbers and ``fields`` (``log_mask.fields``)."""

    __slots__ = ("fields",)

    def __init__(self, fields: Iterable[str] = ()) -> None:
        self.fields = tuple(fields)

    def text(self, value: str) -> str:
        """``value`` masked."""
        return mask_text(value, self.fields, phone_numbers=True)

    def attrs(self, attrs: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
        """``attrs`` as span attributes: ``None`` dropped, strings (and lists of them)
        masked, other values as they are, each key after ``prefix``."""
        out: dict[str, Any] = {}
        for key, value in (attrs or {}).items():
            if value is None:
                continue
            if isinstance(value, str):
                value = self.text(value)
            elif isinstance(value, Sequence) and not isinstance(value, bytes | str):
                value = [self.text(v) if isinstance(v, str) else v for v in value]
            out[prefix + key] = value
        return out

    def json(self, value: Any) -> str:
        """``value`` as JSON text, masked."""
        return self.text(json.dumps(value, ensure_ascii=False, default=str))


def user_message(text: str, scrub: Scrub) -> str:
    """``gen_ai.input.messages``: the caller's last message, as the conventions' JSON."""
    return json.dumps([{"role": "user", "parts": [{"type": "text", "content": scrub.text(text)}]}], ensure_ascii=False)


def output_messages(speech: str, tool_calls: Sequence[Mapping[str, Any]], scrub: Scrub) -> str:
    """``gen_ai.output.messages``: what was spoken and the tool calls, as the
    conventions' JSON (arguments masked)."""
    parts: list[dict[str, Any]] = [{"type": "text", "content": scrub.text(speech)}] if speech else []
    for call in tool_calls:
        args = call.get("arguments")
        parts.append({
            "type": "tool_call", "id": call.get("id"), "name": call.get("name"),
            "arguments": scrub.text(args) if isinstance(args, str) else json.loads(scrub.json(args)),
        })
    return json.dumps([{"role": "assistant", "parts": parts}], ensure_ascii=False)
