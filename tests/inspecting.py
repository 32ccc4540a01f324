"""The sans-IO reply inspector as the tests read it: its typed outputs turned into
the SSE bytes the HTTP relay sends and the commands it acts on
(:func:`proxy.core.outputs.encode`, :func:`proxy.core.outputs.commands_of`)."""

from __future__ import annotations

from typing import Any

from proxy.core.inspector import ReplyInspector
from proxy.core.outputs import commands_of, encode
from proxy.core.sse import SSEEvent


def feed(ins: ReplyInspector, event: SSEEvent) -> tuple[bytes, list[Any]]:
    """One event: ``(bytes sent, commands)``."""
    items = ins.feed(event)
    return encode(items), commands_of(items)


def close(ins: ReplyInspector) -> tuple[bytes, list[Any]]:
    """The stream's end: ``(bytes sent, commands)``."""
    items = ins.close()
    return encode(items), commands_of(items)
