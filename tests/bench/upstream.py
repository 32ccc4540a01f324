"""Benchmark upstream: an OpenAI-compatible server that streams timestamped chunks.

``POST /v1/chat/completions`` with ``{"bench": {"chunks": N, "interval_ms": X,
"ttft_ms": F, "command": bool}}`` in the body (or ``bench:{...}`` ending the last
message, as a proxy that forwards only what it knows passes it on) streams N chat completion chunks, the
first after F ms (the model thinking), then one every X ms (scheduled from the
start, so there is no drift). Each chunk's content starts with ``t<monotonic_ns at
send>`` (``time.monotonic_ns()`` is shared by processes on one machine), the first
also with ``r<monotonic_ns when the request arrived>``; with ``command`` the last
chunk also carries a hangup command.

Run: ``python -m tests.bench.upstream`` prints ``port N`` once listening.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aiohttp import web

from . import run_process

# A typical OpenAI chunk, with the content stamped per send.
HEAD = (
    b'data: {"id":"chatcmpl-AB0123456789abcdefghijklmno","object":"chat.completion.chunk","created":1727346168,'
    b'"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":"'
)
TAIL = b'"},"logprobs":null,"finish_reason":null}]}\n\n'
FINISH = HEAD.split(b'"delta"')[0] + b'"delta":{},"logprobs":null,"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
COMMAND = b' <imsagent_hangup endword=\\"Goodbye!\\"/>'


def _spec_in_messages(body: dict) -> dict:
    """The spec a proxy forwarded inside the last message (``bench:{json}``), else ``{}``."""
    messages = body.get("messages") or [{}]
    text = messages[-1].get("content")
    _, found, spec = text.partition("bench:") if isinstance(text, str) else ("", "", "")
    return json.loads(spec) if found else {}


async def chat(request: web.Request) -> web.StreamResponse:
    arrived = time.monotonic_ns()
    body = await request.json()
    spec = body.get("bench") or _spec_in_messages(body)
    n = int(spec.get("chunks", 50))
    interval = float(spec.get("interval_ms", 20)) / 1000
    command = bool(spec.get("command"))
    ttft = float(spec.get("ttft_ms", 0)) / 1000
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    loop = asyncio.get_running_loop()
    start = loop.time() + ttft
    for i in range(n):
        delay = start + i * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        content = b"t%d word" % time.monotonic_ns() if i else b"t%d r%d word" % (time.monotonic_ns(), arrived)
        if command and i == n - 1:
            content += COMMAND
        await resp.write(HEAD + content + TAIL)
    await resp.write(FINISH)
    await resp.write_eof()
    return resp


def main() -> None:
    async def run() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, backlog=4096)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        print(f"port {runner.addresses[0][1]}", flush=True)
        await asyncio.Event().wait()

    run_process(run())


if __name__ == "__main__":
    sys.exit(main())
