"""Micro-benchmarks of the per-chunk hot path (pytest-benchmark).

``make bench`` times them; ``make test`` runs each once as a plain test
(``--benchmark-disable``). Nothing here asserts a time: the figures are read from
the report, as README describes.
"""

from __future__ import annotations

import json
from typing import Any

from proxy.core.inspector import InspectorSettings, ReplyInspector
from proxy.core.outputs import encode
from proxy.core.sse import SSEDecoder
from proxy.core.text_tools import FORMS


def chunk(content: str) -> bytes:
    obj = {
        "id": "chatcmpl-AB0123456789abcdefghijklmno", "object": "chat.completion.chunk", "created": 1727346168,
        "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_5050236cbd",
        "choices": [{"index": 0, "delta": {"content": content}, "logprobs": None, "finish_reason": None}],
    }
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


PLAIN = chunk(" weather")
OPEN = chunk('好的 <imsagent_hangup endword="')
MIDDLE = chunk("感谢您的来电，")
CLOSE = chunk('再见！"/>')


def relay_one(decoder: SSEDecoder, inspector: ReplyInspector, data: bytes) -> bytes:
    """What the relay does per upstream read: SSE decode, inspect, bytes out."""
    out = b""
    for event in decoder.feed(data):
        out += encode(inspector.feed(event))
    return out


def test_chunk_without_angle_bracket(benchmark: Any) -> None:
    decoder, inspector = SSEDecoder(), ReplyInspector(InspectorSettings())
    out = benchmark(relay_one, decoder, inspector, PLAIN)
    assert out == PLAIN  # forwarded as received


def test_chunk_without_angle_bracket_voice_profile(benchmark: Any) -> None:
    """The same plain chunk under a voice profile's settings: every text tool-call
    form watched, four think tags, thinking removed, tool_calls output (issue 29)."""
    settings = InspectorSettings(output="tool_calls", thinking="remove", text_tool_calls=FORMS)
    decoder, inspector = SSEDecoder(), ReplyInspector(settings)
    out = benchmark(relay_one, decoder, inspector, PLAIN)
    assert out == PLAIN  # forwarded as received


def test_chunk_with_command_scan_in_progress(benchmark: Any) -> None:
    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        decoder, inspector = SSEDecoder(), ReplyInspector(InspectorSettings())
        relay_one(decoder, inspector, OPEN)
        return (decoder, inspector, MIDDLE), {}

    out = benchmark.pedantic(relay_one, setup=setup, rounds=2000)
    assert b'"content":""' in out  # held back: it is inside the command


def test_chunk_that_completes_a_command(benchmark: Any) -> None:
    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        decoder, inspector = SSEDecoder(), ReplyInspector(InspectorSettings())
        relay_one(decoder, inspector, OPEN)
        relay_one(decoder, inspector, MIDDLE)
        return (decoder, inspector, CLOSE), {}

    out = benchmark.pedantic(relay_one, setup=setup, rounds=2000)
    assert "感谢您的来电，再见！".encode() in out  # strip + speak_closing
