"""End-function steps the tests configure as ``python`` steps (``tests.hooks:...``)."""

from __future__ import annotations

import asyncio
from typing import Any

from proxy import Conversation

CALLS: list[Conversation] = []


def record(conv: Conversation) -> dict[str, Any]:
    """A sync step: remember the conversation."""
    CALLS.append(conv)
    return {"seen": conv.id, "events": [e["type"] for e in conv.events]}


async def record_async(conv: Conversation) -> str:
    await asyncio.sleep(0)
    CALLS.append(conv)
    return "async-ok"


def explode(conv: Conversation) -> None:
    raise RuntimeError(f"boom for {conv.id}")


def scribble(conv: Conversation) -> dict[str, Any]:
    """A step that writes into what it was given (the step's own copy)."""
    conv.state["scribbled"] = True
    conv.metadata["scribbled"] = True
    conv.transcript.append({"role": "user", "text": "scribbled"})
    return {"scribbled": True}


def look(conv: Conversation) -> dict[str, Any]:
    """A step after ``scribble``: what it sees of that."""
    CALLS.append(conv)
    return {
        "state": "scribbled" in conv.state, "metadata": "scribbled" in conv.metadata,
        "transcript": any(t["text"] == "scribbled" for t in conv.transcript),
    }
