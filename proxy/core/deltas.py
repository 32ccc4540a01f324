"""What a chunk's delta becomes when the inspector changes it (sans-IO): the content
replaced (a string, or a list of parts kept as a list), tool-call entries replaced
or added, thinking fields dropped; and a chunk whose delta holds both content and
tool calls cut in two. Pure functions over the upstream's JSON; nothing is edited in
place (every change is a copy)."""

from __future__ import annotations

from typing import Any

from .analyzer import Finding, Found, Silenced, TextToolCall

__all__ = [
    "REASONING_FIELDS", "THINKING_PARTS", "Rendered", "part_text", "patched", "separated",
    "same_text", "without_thinking",
]

# What one part of a choice became: ``(content, tool calls callgate wrote)``, the
# content a string or (content given as a list of parts) a list; ``None`` when it
# goes on as it came.
Rendered = tuple[str | list[Any], list[dict[str, Any]]] | None

# Delta fields that carry thinking (DeepSeek, DashScope, vLLM: ``reasoning_content``;
# Groq, Ollama, OpenRouter: ``reasoning``; OpenRouter: ``reasoning_details``).
REASONING_FIELDS = ("reasoning_content", "reasoning", "reasoning_details")
# Content parts that carry thinking (Mistral's Magistral: ``{"type": "thinking",
# "thinking": [{"type": "text", "text": ...}]}``).
THINKING_PARTS = frozenset({"thinking", "reasoning"})


def _with_text(content: Any, text: str) -> str | list[Any]:
    """``content`` (a string, a list of parts, or nothing) with ``text`` added after it."""
    if isinstance(content, list):
        return [*content, {"type": "text", "text": text}]
    return (content if isinstance(content, str) else "") + text


def patched(
    delta: dict[str, Any], tools: list[Any] | None, content: Rendered, finish: Rendered, drop: tuple[str, ...] = ()
) -> dict[str, Any] | None:
    """The delta to send: ``delta`` with the model's tool-call entries replaced by
    ``tools`` (when not ``None``), its content by ``content``'s, then what the
    choice's end added, without the fields ``drop``. ``None`` when nothing changed."""
    text = content[0] if content is not None else None
    added = (content[1] if content is not None else []) + (finish[1] if finish is not None else [])
    if finish is not None and finish[0]:
        text = _with_text(text if text is not None else delta.get("content"), str(finish[0]))
    if text is None and tools is None and not added and not drop:
        return None
    new = {k: v for k, v in delta.items() if k not in drop} if drop else dict(delta)
    if text is not None:
        new["content"] = text
    if tools is not None or added:
        calls = (tools if tools is not None else list(delta.get("tool_calls") or [])) + added
        if calls:
            new["tool_calls"] = calls
        else:
            new.pop("tool_calls", None)
    return new


def separated(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    """``chunk``, or two chunks when a choice's delta has both content and tool
    calls: the content first (no ``finish_reason``), then the tool calls."""
    choices = chunk["choices"]
    both = [
        i for i, c in enumerate(choices)
        if isinstance(c, dict) and isinstance(c.get("delta"), dict) and c["delta"].get("content") and c["delta"].get("tool_calls")
    ]
    if not both:
        return [chunk]
    first, second = list(choices), []
    for i in both:
        c = choices[i]
        delta = c["delta"]
        first[i] = {**c, "delta": {k: v for k, v in delta.items() if k != "tool_calls"}, "finish_reason": None}
        second.append({**c, "delta": {k: v for k, v in delta.items() if k not in ("content", "role", "refusal")}})
    text_chunk = {k: v for k, v in chunk.items() if k != "usage"}
    return [{**text_chunk, "choices": first}, {**chunk, "choices": second}]


def without_thinking(findings: list[Finding]) -> str:
    """What passthrough sent of these findings, less its thinking (the record keeps
    speech): speech, text after a hangup, commands and calls as written. Read from the
    findings, not the content: a finding may hold text of an earlier piece."""
    out: list[str] = []
    for f in findings:
        if type(f) is str:
            out.append(f)
        elif isinstance(f, Silenced):
            out.append(f.text)
        elif isinstance(f, TextToolCall):
            out.append(f.raw)
        elif isinstance(f, Found) and f.command.source in ("text_command", "text_tool_call"):
            out.append(f.command.raw)
    return "".join(out)


def part_text(value: Any) -> str:
    """The text of a thinking part: a string, or a list of text parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(p["text"] for p in value if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def same_text(choice: dict[str, Any], delta: dict[str, Any], new_delta: dict[str, Any]) -> None:
    """Together's ``choices[].text`` repeats ``delta.content``: when the content
    changed, the new choice's ``text`` says the same as its new content."""
    dup = choice.get("text")
    if isinstance(dup, str) and dup == delta.get("content") and isinstance(new_delta.get("content"), str):
        choice["text"] = new_delta["content"]
