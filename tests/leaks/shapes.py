"""Every provider delta shape callgate knows, as an encoder of a grammar reply into
SSE bytes (the shapes of ``tests/fixtures/providers/``, whose sources are named in
its ``SOURCES.md``; ``/work/shared/reference/provider-streams.md`` lists what
differs):

==============  ===================================================================
``openai``      role first, tool calls streamed by ``index`` (id and name, then
                argument pieces)
``azure``       a first chunk with empty ``choices`` and ``prompt_filter_results``;
                ``content_filter_results`` per choice
``dashscope``   ``"usage": null`` on every chunk, tool continuations with ``"id": ""``,
                a last chunk with ``"choices": []``; ``reasoning_content``
``deepseek``    ``reasoning_content`` (``null`` beside content), ``: keep-alive``
                comments
``groq``        ``x_groq``; whole tool calls in one delta; ``delta.reasoning``
``gemini``      whole tool calls without ``index``, ``"id": ""``; ``stop`` after them
``mistral``     whole tool calls without ``index``/``type``; Magistral's content as a
                list of parts with ``thinking`` parts
``together``    ``choices[].text`` repeating the content; ``finish_reason: "eos"``
``openrouter``  ``: OPENROUTER PROCESSING`` comments, ``reasoning``, ``provider``
``ollama``      role and content in every delta; ``<``, ``>``, ``&`` escaped as
                ``\\u003c``…; whole tool calls; ``reasoning``
``vllm``        unset fields left out; ``reasoning_content``
``llamacpp``    every tool delta carries ``arguments``, the id only on the first;
                ``timings`` on the finish chunk
``starlette``   CRLF line endings and ``: ping`` comments (sse-starlette)
==============  ===================================================================
"""

from __future__ import annotations

import json
import random
from typing import Any

from .grammar import Content, Mixed, Reasoning, Reply, Tool

__all__ = ["SHAPES", "encode"]

SHAPES = (
    "openai", "azure", "dashscope", "deepseek", "groq", "gemini", "mistral", "together", "openrouter", "ollama", "vllm",
    "llamacpp", "starlette",
)
_REASONING_KEY = {"groq": "reasoning", "openrouter": "reasoning", "ollama": "reasoning"}
_WHOLE_TOOLS = {"groq", "ollama", "gemini", "mistral"}


def _pieces(text: str, rng: random.Random) -> list[str]:
    """``text`` cut as a model's tokens might be: whole, or pieces of 1-12 chars."""
    if rng.random() < 0.15:
        return [text]
    out, i = [], 0
    while i < len(text):
        n = rng.randint(1, 12)
        out.append(text[i : i + n])
        i += n
    return out


class _Encoder:
    """One reply in one shape."""

    def __init__(self, reply: Reply, shape: str, rng: random.Random) -> None:
        self.reply, self.shape, self.rng = reply, shape, rng
        self.parts = shape == "mistral" and any(isinstance(e, Reasoning) or isinstance(e, Mixed) and e.reasoning for e in reply.events)
        self.reasoning_key = _REASONING_KEY.get(shape, "reasoning_content")
        self.tool_index = 0
        self.deltas: list[dict[str, Any]] = []

    def content(self, text: str) -> Any:
        return [{"type": "text", "text": text}] if self.parts else text

    def thinking(self, text: str) -> dict[str, Any]:
        if self.parts:
            return {"content": [{"type": "thinking", "thinking": [{"type": "text", "text": text}]}]}
        delta: dict[str, Any] = {self.reasoning_key: text}
        if self.shape == "deepseek":
            delta["content"] = None
        return delta

    def whole_entry(self, tool: Tool) -> dict[str, Any]:
        fn = {"name": tool.name, "arguments": tool.arguments}
        if self.shape == "gemini":
            return {"function": fn, "id": "", "type": "function"}
        if self.shape == "mistral":
            return {"id": tool.id[-9:], "function": fn}
        entry = {"index": self.tool_index, "id": tool.id, "type": "function", "function": fn}
        self.tool_index += 1
        return entry

    def tool(self, tool: Tool) -> None:
        if self.shape in _WHOLE_TOOLS:
            self.deltas.append({"tool_calls": [self.whole_entry(tool)]})
            return
        i = self.tool_index
        self.tool_index += 1
        self.deltas.append({"tool_calls": [{"index": i, "id": tool.id, "type": "function", "function": {"name": tool.name, "arguments": ""}}]})
        for piece in _pieces(tool.arguments, self.rng):
            entry: dict[str, Any] = {"index": i, "function": {"arguments": piece}}
            if self.shape == "dashscope":
                entry.update(id="", type="function")
            self.deltas.append({"tool_calls": [entry]})

    def event(self, ev: Any) -> None:
        if isinstance(ev, Content):
            for piece in _pieces(ev.text, self.rng):
                delta: dict[str, Any] = {"content": self.content(piece)}
                if self.shape == "deepseek":
                    delta["reasoning_content"] = None
                self.deltas.append(delta)
        elif isinstance(ev, Reasoning):
            self.deltas += [self.thinking(p) for p in _pieces(ev.text, self.rng)]
        elif isinstance(ev, Tool):
            self.tool(ev)
        elif ev.tool is not None:
            self.deltas.append({"content": self.content(ev.text), "tool_calls": [self.whole_entry(ev.tool)]})
        elif self.parts:
            thinking = self.thinking(ev.reasoning)["content"]
            self.deltas.append({"content": [*self.content(ev.text), *thinking]})
        else:
            self.deltas.append({"content": ev.text, self.reasoning_key: ev.reasoning})

    def finish(self) -> str:
        tools = any(isinstance(e, Tool) or isinstance(e, Mixed) and e.tool is not None for e in self.reply.events)
        if self.shape == "gemini":
            return "stop"
        if self.shape == "together" and not tools:
            return "eos"
        return "tool_calls" if tools else "stop"


def _chunk(shape: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
    obj: dict[str, Any] = {"id": "chatcmpl-leak", "object": "chat.completion.chunk", "created": 1767225600, "model": "m"}
    if shape in ("openai", "azure"):
        choice["logprobs"] = None
        obj["system_fingerprint"] = "fp_leak"
    if shape == "azure":
        choice["content_filter_results"] = {}
    if shape == "dashscope":
        obj["usage"] = None
    if shape == "together" and isinstance(delta.get("content"), str):
        choice["text"] = delta["content"]
    if shape == "openrouter":
        obj["provider"] = "Leak"
        if finish is not None:
            choice["native_finish_reason"] = finish
    if shape == "ollama":
        delta.setdefault("role", "assistant")
        if delta.get("content") is None:
            delta["content"] = ""
    if shape == "llamacpp" and finish is not None:
        obj["timings"] = {"predicted_ms": 1.0}
    obj["choices"] = [choice]
    return obj


def _sse(shape: str, chunks: list[dict[str, Any]]) -> bytes:
    nl = "\r\n" if shape == "starlette" else "\n"
    out = []
    if shape == "starlette":
        out.append(f": ping - 2026-01-01 00:00:00{nl}{nl}")
    for i, c in enumerate(chunks):
        text = json.dumps(c, ensure_ascii=False, separators=(",", ":"))
        if shape == "ollama":
            text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        if shape == "deepseek" and i % 5 == 2:
            out.append(f": keep-alive{nl}{nl}")
        if shape == "openrouter" and i % 7 == 1:
            out.append(f": OPENROUTER PROCESSING{nl}{nl}")
        out.append(f"data: {text}{nl}{nl}")
    out.append(f"data: [DONE]{nl}{nl}")
    return "".join(out).encode()


def encode(reply: Reply, shape: str, rng: random.Random) -> bytes:
    """``reply`` as the SSE bytes of a streamed chat completion in ``shape``."""
    enc = _Encoder(reply, shape, rng)
    for ev in reply.events:
        enc.event(ev)
    first: dict[str, Any] = {"role": "assistant", "content": enc.content("") if not enc.parts else ""}
    chunks = [_chunk(shape, first, None)] + [_chunk(shape, d, None) for d in enc.deltas]
    chunks.append(_chunk(shape, {}, enc.finish()))
    if shape == "azure":
        chunks.insert(0, {"id": "", "object": "", "created": 0, "model": "", "choices": [], "prompt_filter_results": [{"prompt_index": 0}]})
    if shape == "groq":
        chunks[0]["x_groq"] = {"id": "req_leak"}
        chunks[-1]["x_groq"] = {"id": "req_leak", "usage": {"completion_tokens": 1}}
    if shape == "dashscope":
        chunks.append({"id": "chatcmpl-leak", "object": "chat.completion.chunk", "created": 1767225600, "model": "m", "choices": [], "usage": {"total_tokens": 1}})
    return _sse(shape, chunks)
