"""The example trace of docs/operations.md#traces, from a real served call.

callgate serves in this process (``proxy.server.app.running``, the server ``callgate
serve`` runs) in front of two scripted upstreams on 127.0.0.1: ``primary`` is silent
for 800 ms, so after ``routing.first_token_ms`` (300 ms) a hedge goes to ``backup``
(its own model name), which answers first and hangs up; the primary is cancelled. The
call's end function then runs its webhook step ``crm``. The runtime is the official
``openai`` client sending a W3C ``traceparent``. Spans go over OTLP/HTTP to the real
receiver of ``tests/otlp.py``; this prints its decoded trees, the turn's trace and the
step's (durations differ from run to run).

Run: ``python -m tests.example_trace``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

import openai
from aiohttp import web

from proxy.config import parse_config
from proxy.demo.scripted_upstream import ScriptedReply, ScriptedUpstream, serve_app
from proxy.server.app import running

from .otlp import OtlpReceiver, otlp_receiver

__all__ = ["KEYS", "TRACE", "example_trace", "main"]

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
CALL_ID = "CA5f1e0c8b2d4a6e8f0a1b3c5d7e9f1a2b"
#: the attributes the tree shows (every one is exported; these say the most)
KEYS = (
    "session.id", "callgate.profile", "callgate.turn.status", "callgate.turn.ttft_ms", "callgate.turn.speech_gap_max_ms",
    "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model", "server.address", "callgate.upstream",
    "callgate.attempt.reason", "callgate.attempt.outcome", "gen_ai.response.finish_reasons", "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens", "callgate.step.attempt", "callgate.step.outcome", "http.response.status_code",
)
PRIMARY = ScriptedReply(content=["Sure, ", "goodbye."], ttft_s=0.8, model="gpt-4o-mini-2024-07-18")
BACKUP = ScriptedReply(
    content=["Thanks for calling, ", "see you ", "on Tuesday. ", '<imsagent_hangup endword="Goodbye!"/>'], interval_s=0.05,
    id="chatcmpl-8xQk2", model="llama-3.3-70b-versatile", usage={"prompt_tokens": 812, "completion_tokens": 46, "total_tokens": 858},
)


async def _ok(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"ok": True})


async def example_trace(otlp: OtlpReceiver, db_path: str) -> str:
    """Serve the call described in the module docstring against ``otlp`` (storage at
    ``db_path``); returns the two trees, the turn's then the step's. ``TimeoutError``
    when the step's span does not arrive within 10 s."""
    hook = web.Application()
    hook.router.add_post("/crm", _ok)
    async with contextlib.AsyncExitStack() as stack:
        primary = await stack.enter_async_context(serve_app(ScriptedUpstream([PRIMARY], name="primary").app()))
        backup = await stack.enter_async_context(serve_app(ScriptedUpstream([BACKUP], name="backup").app()))
        crm = await stack.enter_async_context(serve_app(hook))
        config = parse_config({
            "upstreams": [
                {"name": "primary", "base_url": f"{primary}/v1"},
                {"name": "backup", "base_url": f"{backup}/v1", "models": {"gpt-4o-mini": "llama-3.3-70b-versatile"}},
            ],
            "routing": {"first_token_ms": 300},
            "storage": {"path": db_path},
            "telemetry": {"otlp_endpoint": otlp.url},
            "end_function": {"poll_s": 0.05, "after_hangup_s": 0, "steps": [{"name": "crm", "kind": "webhook", "url": f"{crm}/crm"}]},
            "log_level": "warning",
        })
        _, url = await stack.enter_async_context(running(config, host="127.0.0.1", port=0))
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-example", max_retries=0) as client:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "That's all, thanks."}], stream=True,
                extra_headers={"X-Call-Id": CALL_ID, "traceparent": TRACEPARENT},
            )
            async for _ in stream:
                pass
        [step] = await otlp.wait_for(1, name="end_function crm")
        await otlp.wait(lambda r: sum(s.trace_id == TRACE for s in r.spans) >= 3)
    return otlp.tree(TRACE, KEYS) + "\n\n" + otlp.tree(step.trace_id, KEYS)


def main() -> None:
    """Print the trees (see the module docstring)."""
    import tempfile

    os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", "50")  # the batch goes every 50 ms, not 5 s

    async def run() -> str:
        async with otlp_receiver() as otlp:
            with tempfile.TemporaryDirectory(prefix="callgate-trace-") as tmp:
                return await example_trace(otlp, os.path.join(tmp, "cg.db"))

    print(asyncio.run(run()))


if __name__ == "__main__":
    sys.exit(main())
