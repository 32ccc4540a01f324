"""``callgate demo``'s second call: a speech-to-speech phone call over SIP (the
Realtime API), hung up, its end function run.

A scripted OpenAI (:mod:`.scripted_openai`) plays the phone call's side: it sends
callgate the signed incoming-call webhook, answers the accept, and plays the sideband
(written from ``shared/reference/realtime-sip.md``): a greeting, the caller's question
and answer, then the model's ``hangup`` function call with its closing words. callgate
accepts once, answers the call, has the goodbye said, waits for its audio to drain
(``output_audio_buffer.stopped``), then hangs up once; the call ends and the end
function (a ``python`` step, then the CRM webhook) runs with the transcript, usage and
cost.
"""

from __future__ import annotations

import tempfile
from typing import Any

from ..config import parse_config
from ..endfn.conversation import Conversation
from ..server.app import running
from ..server.services import SERVICES
from . import sip_scripts as sc
from .scripted_openai import ScriptedOpenAI
from .scripted_upstream import serve_app

__all__ = ["CALL_ID", "report", "run_sip_demo", "script", "sip_config", "summarize"]

CALL_ID = "rtc_demo_0001"
BYE = "Thanks for calling Example Co, goodbye!"


def script() -> list[sc.Step]:
    """The call, as the scripted OpenAI plays it."""
    return [
        *sc.rt_session(), *sc.rt_response("r0", "Example Co, how can I help?"),
        *sc.rt_user("u1", "Hi, when are you open on Saturdays?"), *sc.rt_response("r1", "On Saturdays we are open from ten to two."),
        *sc.rt_user("u2", "Great, that is all, thanks."),
        *sc.rt_response("r2", "You are welcome.", calls=[("call_bye", "hangup", {"endword": BYE})]),
        sc.Expect("conversation.item.create"), *sc.rt_closing_response("r_bye", BYE, play_s=0.5),
    ]


def summarize(conv: Conversation) -> dict[str, Any]:
    """The demo's end function (a ``python`` step): what the call said and cost."""
    return {
        "call": conv.id, "end_reason": conv.end_reason, "turns": len(conv.record.get("turns") or []),
        "audio_tokens": (conv.usage or {}).get("input_audio_tokens", 0) + (conv.usage or {}).get("output_audio_tokens", 0),
        "cost_usd": conv.cost_usd, "last_words": conv.transcript[-1]["text"] if conv.transcript else "",
    }


def sip_config(openai_url: str, crm_url: str, db: str, key: str, secret: str) -> dict[str, Any]:
    """callgate's config for the demo call."""
    return {
        "storage": {"path": db},
        "front_doors": {"openai_sip": {
            "api": "realtime", "base_url": f"{openai_url}/v1", "api_key": key, "webhook_secret": secret,
            "session": {"model": "gpt-realtime", "instructions": "You answer calls for Example Co.", "audio": {"output": {"voice": "marin"}}},
            "prices": {"gpt-realtime": {"input_per_mtok": 4, "cached_input_per_mtok": 0.4, "output_per_mtok": 16,
                                        "audio_input_per_mtok": 32, "audio_output_per_mtok": 64}},
        }},
        "end_function": {"steps": [
            {"name": "summary", "kind": "python", "function": "proxy.demo.sip_demo:summarize"},
            {"name": "crm", "kind": "webhook", "url": f"{crm_url}/calls", "after": ["summary"]},
        ]},
    }


def report(oa: ScriptedOpenAI, events: list[dict[str, Any]], jobs: list[dict[str, Any]]) -> bool:
    """Print what OpenAI and callgate said to each other, the control events and the end
    function; ``True`` when the goodbye drained before the one hangup."""
    print("the sideband and the REST calls, as the scripted OpenAI saw them:")
    for entry in oa.timeline:
        kind, what = entry[0], entry[1] if len(entry) > 1 else ""
        if kind == "rest" or (kind == "got") or what in ("response.done", "output_audio_buffer.stopped", "response.output_item.done"):
            arrow = {"rest": "callgate -> POST", "got": "callgate -> ws  ", "sent": "openai   -> ws  "}.get(kind, kind)
            print(f"  {arrow} {what}" + (f" ({entry[2]})" if kind == "sent" and entry[2] else ""))
    print("\ncontrol events:")
    for e in events:
        print(f"  {e['seq']}. {e['type']:<10} source={e['source']:<10} {e.get('endword') or e.get('reason') or ''}")
    print("\nend function:")
    for job in jobs:
        shown = job["output"] if job["kind"] != "webhook" else f"HTTP {job['response_code']}"
        print(f"  {job['step']} ({job['kind']}): {job['status']}  {shown}")
    t = oa.timeline
    played = t.index(("sent", "output_audio_buffer.stopped", "r_bye")) < t.index(("rest", "hangup", CALL_ID))
    return played and oa.count("hangup") == 1 and [e["type"] for e in events] == ["hangup", "call.ended"] and all(
        j["status"] == "done" for j in jobs
    )


async def run_sip_demo(crm_url: str) -> bool:
    """The SIP call, its end function's steps posted to ``crm_url``; ``True`` when it
    went as scripted."""
    oa = ScriptedOpenAI()
    oa.add("realtime", CALL_ID, script())
    with tempfile.TemporaryDirectory(prefix="callgate-sip-demo-") as tmp:
        async with serve_app(oa.app()) as oa_url:
            config = parse_config(sip_config(oa_url, crm_url, f"{tmp}/callgate.db", oa.api_key, oa.secret))
            async with running(config, host="127.0.0.1", port=0) as (app, base):
                print(f"\n\ncallgate demo, call 2: a speech-to-speech call over SIP (Realtime API), call id {CALL_ID}\n")
                assert await oa.deliver(f"{base}/openai-sip/v1/webhook", CALL_ID) == [200]
                jobs = await app[SERVICES].pipeline.wait_call(CALL_ID, 20)
                record = await app[SERVICES].registry.record(CALL_ID) or {}
                ok = report(oa, record.get("events", []), [j.to_json() for j in jobs])
                print("\ntranscript (GET /v1/calls/{id}):")
                for line in record.get("transcript", []):
                    print(f"  {line['role']:>9}: {line['text']}")
                print(f"\nusage: {record.get('usage')}\ncost:  {record.get('cost_usd')} USD")
                return ok
