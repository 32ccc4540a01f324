"""Benchmark upstream: the scripted upstream streaming timestamped chunks.

``POST /v1/chat/completions`` with ``{"bench": {"chunks": N, "interval_ms": X,
"ttft_ms": F, "command": bool}}`` in the body (or ``bench:{...}`` ending the last
message, as a proxy that forwards only what it knows passes it on) streams N chat completion chunks, the
first after F ms (the model thinking), then one every X ms (scheduled from the
first, so there is no drift). Each chunk's content starts with ``t<monotonic_ns at
send>`` (``time.monotonic_ns()`` is shared by processes on one machine), the first
also with ``r<monotonic_ns when the request arrived>``; with ``command`` the last
chunk also carries a hangup command. The chunks are a typical OpenAI chunk, encoded
once per shape (see :class:`proxy.demo.behaviours.ScriptedReply`, ``stamp``).

Run: ``python -m tests.bench.upstream`` prints ``port N`` once listening.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys

from proxy.demo.scripted_upstream import ScriptedReply, ScriptedUpstream, Seen, serve_app

from . import run_process

COMMAND = ' <imsagent_hangup endword="Goodbye!"/>'


@functools.lru_cache(maxsize=256)
def reply(chunks: int, interval_ms: float, ttft_ms: float, command: bool) -> ScriptedReply:
    """The reply for one ``bench`` spec (kept, so its chunks are encoded once)."""
    content = ["word"] * chunks
    if command and content:
        content[-1] += COMMAND
    return ScriptedReply(
        content=content, ttft_s=ttft_ms / 1000, interval_s=interval_ms / 1000, stamp=True, role=False,
        id="chatcmpl-AB0123456789abcdefghijklmno", model="gpt-4o-2024-08-06", created=1727346168, fingerprint="fp_5050236cbd",
    )


def script(seen: Seen) -> ScriptedReply:
    """The request's ``bench`` spec as a reply (defaults: 50 chunks 20 ms apart)."""
    body = seen.body if isinstance(seen.body, dict) else {}
    spec = body.get("bench") or _spec_in_messages(body)
    return reply(int(spec.get("chunks", 50)), float(spec.get("interval_ms", 20)), float(spec.get("ttft_ms", 0)), bool(spec.get("command")))


def _spec_in_messages(body: dict[str, Any]) -> dict[str, Any]:
    """The spec a proxy forwarded inside the last message (``bench:{json}``), else ``{}``:
    every peer forwards the messages, not every one an unknown top-level field."""
    messages = body.get("messages") or [{}]
    text = messages[-1].get("content") if isinstance(messages[-1], dict) else None
    _, found, spec = text.partition("bench:") if isinstance(text, str) else ("", "", "")
    out: dict[str, Any] = json.loads(spec) if found else {}
    return out


def main() -> None:
    async def run() -> None:
        upstream = ScriptedUpstream(script, record=False)
        async with serve_app(upstream.app(), backlog=4096) as url:
            print(f"port {url.rsplit(':', 1)[1]}", flush=True)
            await asyncio.Event().wait()

    run_process(run())


if __name__ == "__main__":
    sys.exit(main())
