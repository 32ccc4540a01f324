"""``callgate demo``: one whole call, self-contained, on loopback.

A scripted LLM answers in Chinese with a transfer command and then a hangup
command, each split across chunks; callgate sits in front of it; the official
``openai`` client plays the agent runtime; a subscriber on the call's event stream
plays the call layer; a small local "CRM" receives the end function's webhook.
Prints what the caller hears, the control events and the end-function result.
Then a second call, a speech-to-speech call over SIP (:mod:`.sip_demo`): hung up
after its goodbye played, its end function run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from ..config import Config, parse_config
from ..endfn.conversation import Conversation
from ..server.app import running
from ..server.services import SERVICES
from .scripted_upstream import ScriptedReply, ScriptedUpstream, serve_app
from .sip_demo import run_sip_demo

__all__ = ["CALL_ID", "SCRIPT", "TURNS", "crm_receiver", "demo_config", "main", "report", "run_demo", "summarize", "talk"]

CALL_ID = "demo-call-1"

SCRIPT = [
    ScriptedReply(
        content=[
            "好的，", "我这就帮您", "转接人工客服。", "<imsagent_tr", "ansfer_call caller=0571", "8888, callee=1",
            '0086, err_msg="抱歉，线路繁忙，', '请稍后再拨。", msg="正在为您转', '接，请稍候……"/>',
        ]
    ),
    ScriptedReply(
        content=["不客气，", "祝您生活愉快！", "<imsagent_hang", 'up endword="感谢您的来电，', '再见！"', "/>"]
    ),
]

TURNS = ["你好，我的宽带断了，帮我转人工。", "好的，谢谢你，没别的事了。"]


def summarize(conv: Conversation) -> dict[str, Any]:
    """The demo's end function (a ``python`` step): a tiny summary of the call."""
    kinds = [e["type"] for e in conv.events]
    return {
        "call": conv.id,
        "turns": sum(1 for t in conv.transcript if t["role"] == "user"),
        "end_reason": conv.end_reason,
        "transferred": "transfer" in kinds,
        "last_words": conv.transcript[-1]["text"] if conv.transcript else "",
    }


async def _subscribe(base: str, out: list[dict[str, Any]], ready: asyncio.Event) -> None:
    """The call layer: read the call's control events until call.ended."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/v1/calls/{CALL_ID}/events") as resp:
            ready.set()
            async for line in resp.content:
                if line.startswith(b"data: "):
                    out.append(json.loads(line[6:]))


def demo_config(up_url: str, crm_url: str, storage: dict[str, Any]) -> dict[str, Any]:
    """The demo's config: the scripted LLM, two allowed transfer targets, three steps."""
    return {
        "storage": storage,
        "upstream": {"base_url": f"{up_url}/v1", "api_key": "demo-upstream-key"},
        "commands": {"transfer_allow": ["10086", "+86571*"]},
        "end_function": {
            "after_hangup_s": 0.2,  # the call ends this long after the goodbye (default 3 s)
            "steps": [
                {"name": "outcome", "kind": "outcome"},
                {"name": "summary", "kind": "python", "function": "proxy.demo.run:summarize", "after": ["outcome"]},
                {"name": "crm", "kind": "webhook", "url": f"{crm_url}/calls", "after": ["summary"]},
            ],
        },
    }


@contextlib.asynccontextmanager
async def crm_receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A small local "CRM" that keeps the call records it receives: its URL and them."""
    received: list[dict[str, Any]] = []

    async def crm(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/calls", crm)
    async with serve_app(app) as url:
        yield url, received


async def talk(base: str, served_by: Any = None) -> None:
    """The runtime's two turns through the official openai client, as the caller hears
    them. ``served_by(i)``: which instance served turn ``i`` (printed when given)."""
    client = AsyncOpenAI(base_url=f"{base}/v1", api_key="runtime-key", default_headers={"X-Call-Id": CALL_ID})
    messages: list[ChatCompletionMessageParam] = [{"role": "system", "content": "你是宽带客服。"}]
    for i, user in enumerate(TURNS, 1):
        messages.append({"role": "user", "content": user})
        stream = await client.chat.completions.create(model="scripted-1", messages=messages, stream=True)
        heard = ""
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                heard += chunk.choices[0].delta.content
        messages.append({"role": "assistant", "content": heard})
        print(f"turn {i}  caller says:  {user}")
        print(f"        caller hears: {heard}")
        if served_by is not None:
            print(f"        served by:    {await served_by(i)}")
        print()
    await client.close()


def report(events: list[dict[str, Any]], steps: list[dict[str, Any]], crm: list[dict[str, Any]]) -> bool:
    """Print the control events, the end function's steps and what the CRM got;
    ``True`` when the call went as scripted."""
    print("control events (GET /v1/calls/{id}/events):")
    for e in events:
        detail = {k: e[k] for k in ("callee", "caller", "endword", "closing_text", "reason") if e.get(k)}
        print(f"  {e['seq']}. {e['type']:<10} source={e['source']:<14} {json.dumps(detail, ensure_ascii=False)}")
    print("\nend function (steps in the database, idempotency key {call_id}:{step}):")
    for job in steps:
        shown = job["output"] if job["kind"] != "webhook" else f"HTTP {job['response_code']}"
        print(f"  {job['step']} ({job['kind']}): {job['status']}  {json.dumps(shown, ensure_ascii=False)}")
    print(f"\nthe CRM received {len(crm)} call record(s); transcript:")
    for line in crm[0]["transcript"] if crm else []:
        print(f"  {line['role']:>9}: {line['text']}")
    return (
        [e["type"] for e in events] == ["transfer", "hangup", "call.ended"]
        and all(job["status"] == "done" for job in steps)
        and len(crm) == 1
    )


async def run_demo() -> int:
    """``make demo`` / ``callgate demo``: a scripted LLM, a CRM receiver and callgate on
    built-in defaults, two turns through the openai client, then the call's record
    and the end function's webhook as printed; then the SIP call (:mod:`.sip_demo`).
    The exit code: 0 when both went as their scripts say."""
    upstream = ScriptedUpstream(SCRIPT)
    with tempfile.TemporaryDirectory(prefix="callgate-demo-") as db_dir:
        async with serve_app(upstream.app()) as up_url, crm_receiver() as (crm_url, crm):
            config = parse_config(demo_config(up_url, crm_url, {"path": f"{db_dir}/callgate.db"}))
            ok = await _call(config, up_url, crm) == 0
            ok = await run_sip_demo(crm_url) and ok
    return 0 if ok else 1


async def _call(config: Config, up_url: str, crm: list[dict[str, Any]]) -> int:
    """The demo's call through callgate on ``config``; the exit code."""
    async with running(config, host="127.0.0.1", port=0) as (app, base):
        print(f"callgate demo: scripted LLM at {up_url}, callgate at {base}, call id {CALL_ID}\n")
        events: list[dict[str, Any]] = []
        ready = asyncio.Event()
        subscriber = asyncio.create_task(_subscribe(base, events, ready))
        async with asyncio.timeout(10):
            await ready.wait()
        await talk(base)
        async with asyncio.timeout(10):  # cancels the subscriber too, as wait_for did
            await subscriber
        jobs = await app[SERVICES].pipeline.wait_call(CALL_ID, 10)
        return 0 if report(events, [j.to_json() for j in jobs], crm) else 1


def main(cluster: bool = False) -> int:
    """``callgate demo`` (``--cluster``: three instances, see :mod:`proxy.demo.cluster`)."""
    try:
        if cluster:
            from .cluster import run_cluster_demo

            return asyncio.run(run_cluster_demo())
        return asyncio.run(run_demo())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
