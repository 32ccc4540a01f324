"""Helpers of the speech-safety tests: a reply as OpenAI-shaped SSE, fed through the
sans-IO ReplyInspector at any split, and what the runtime received of choice 0."""

from __future__ import annotations

import json
import random
from typing import Any

from proxy.core.inspector import InspectorSettings, ReplyInspector
from proxy.core.outputs import Output, commands_of, encode
from proxy.core.sse import SSEDecoder, SSEEvent

MODES = ("strip", "tool_calls", "text")


def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    """One chat completion chunk (OpenAI API reference) with one choice."""
    return {
        "id": "chatcmpl-speech", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }


def sse(chunks: list[dict[str, Any]], done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(c, ensure_ascii=False).encode() + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


def content_stream(pieces: list[str], finish: str = "stop", done: bool = True) -> bytes:
    """A reply whose content comes in ``pieces``, one delta each, then the finish."""
    chunks = [chunk({"role": "assistant", "content": ""})] + [chunk({"content": p}) for p in pieces if p]
    return sse([*chunks, chunk({}, finish)], done)


def cuts(data: bytes, kind: str, seed: int = 0) -> list[int]:
    """Split points of ``data``: none, every byte, or a dozen random ones."""
    if kind == "whole":
        return []
    if kind == "bytes":
        return list(range(1, len(data)))
    rnd = random.Random(seed)
    return sorted(rnd.sample(range(1, len(data)), min(len(data) - 1, 12)))


def events(data: bytes, points: list[int]) -> list[SSEEvent]:
    dec = SSEDecoder()
    out: list[SSEEvent] = []
    for a, b in zip([0, *points], [*points, len(data)]):
        out += dec.feed(data[a:b])
    return out + dec.close()


def inspect(data: bytes, points: list[int] | None = None, *, policy: Any = None, **kw: Any) -> tuple[bytes, list[Any], ReplyInspector]:
    """``data`` through one inspector (``kw``: InspectorSettings fields): bytes out,
    commands, the inspector."""
    ins = ReplyInspector(InspectorSettings(**kw), policy=policy)
    items: list[Output] = []
    for ev in events(data, points or []):
        items += ins.feed(ev)
    items += ins.close()
    return encode(items), commands_of(items), ins


def heard(out: bytes) -> tuple[str, list[dict[str, Any]], list[Any], list[dict[str, Any]]]:
    """Choice 0 as the runtime gets it: content (text parts joined), tool-call entries,
    finish_reasons, and every delta."""
    text, tools, finishes, deltas = "", list[dict[str, Any]](), list[Any](), list[dict[str, Any]]()
    for ev in events(out, []):
        if not ev.data or ev.data == "[DONE]":
            continue
        for ch in json.loads(ev.data).get("choices") or []:
            if ch.get("index", 0) != 0:
                continue
            delta = ch.get("delta") or {}
            deltas.append(delta)
            content = delta.get("content")
            if isinstance(content, str):
                text += content
            elif isinstance(content, list):
                text += "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
            tools += delta.get("tool_calls") or []
            if ch.get("finish_reason") is not None:
                finishes.append(ch["finish_reason"])
    return text, tools, finishes, deltas


def assembled(tools: list[dict[str, Any]]) -> list[tuple[str, Any, str]]:
    """Tool-call entries joined per index: ``(name, arguments parsed, id)``."""
    calls: dict[int, dict[str, str]] = {}
    for i, t in enumerate(tools):
        c = calls.setdefault(t.get("index", i), {"name": "", "arguments": "", "id": ""})
        fn = t.get("function") or {}
        c["name"] += fn.get("name") or ""
        c["arguments"] += fn.get("arguments") or ""
        c["id"] = c["id"] or t.get("id") or ""
    return [(c["name"], json.loads(c["arguments"] or "{}"), c["id"]) for _, c in sorted(calls.items())]


def shared_deltas(deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Deltas carrying both content and tool calls (a runtime may speak the call)."""
    return [d for d in deltas if d.get("content") and d.get("tool_calls")]
