"""What the OpenAI SIP door's tests share: the scripted OpenAI on loopback, callgate's
config for it, and waiting for a call's end."""

from __future__ import annotations

from typing import Any

from proxy.demo.scripted_openai import SECRET, ScriptedOpenAI

KEY = "sk-scripted-openai"

PRICES = {
    "gpt-realtime": {"input_per_mtok": 4, "cached_input_per_mtok": 0.4, "output_per_mtok": 16, "audio_input_per_mtok": 32,
                     "audio_output_per_mtok": 64},
    "gpt-live-1": {"per_minute": 0.06},
    "gpt-5-mini": {"input_per_mtok": 0.25, "cached_input_per_mtok": 0.025, "output_per_mtok": 2},
}


def sip_config(api: str, openai_url: str, **door: Any) -> dict[str, Any]:
    """``front_doors.openai_sip`` for the scripted OpenAI at ``openai_url`` (fast waits)."""
    session: dict[str, Any] = {"model": "gpt-realtime" if api == "realtime" else "gpt-live-1", "instructions": "Be brief."}
    if api == "live":
        session["delegation"] = {"type": "responses", "responses": {"model": "gpt-5-mini", "instructions": "Help the caller."}}
    cfg = {
        "api": api, "base_url": f"{openai_url}/v1", "api_key": KEY, "webhook_secret": SECRET, "session": session,
        "goodbye_grace_ms": 200, "goodbye_max_ms": 4000, "lease_s": 1.0, "reattach_tries": 3, "prices": PRICES,
    }
    return {"openai_sip": {**cfg, **door}}


def hook_url(base: str) -> str:
    """callgate's webhook URL."""
    return f"{base}/openai-sip/v1/webhook"


__all__ = ["KEY", "PRICES", "SECRET", "ScriptedOpenAI", "hook_url", "sip_config"]
