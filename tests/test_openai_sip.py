"""The OpenAI SIP front door end to end, both APIs, against the scripted OpenAI
(:mod:`proxy.demo.scripted_openai`, scripts written from
shared/reference/realtime-sip.md): callgate in process, its end function a python step
that records the :class:`~proxy.Conversation`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from proxy.demo import sip_scripts as sc
from proxy.demo.scripted_openai import ScriptedOpenAI

from . import hooks
from .conftest import Receiver, serve_app
from .sip_lab import hook_url, sip_config

BYE = "Thank you for calling, goodbye!"


@pytest.fixture
async def openai() -> AsyncIterator[tuple[ScriptedOpenAI, str]]:
    oa = ScriptedOpenAI()
    async with serve_app(oa.app()) as url:
        yield oa, url


@pytest.fixture
async def door(openai: tuple[ScriptedOpenAI, str], stack: Any) -> Any:
    """``await door(api, **door_config)``: callgate with the SIP door on the scripted OpenAI."""
    oa, url = openai

    async def start(api: str, **extra: Any) -> Any:
        hooks.CALLS.clear()
        steps = [{"name": "record", "kind": "python", "function": "tests.hooks:record"}]
        s = await stack([], front_doors=sip_config(api, url, **extra), end_function={"steps": steps})
        s.oa, s.hook = oa, hook_url(s.url)
        return s

    return start


async def _ended(s: Any, call_id: str) -> dict[str, Any]:
    """The call record once its end function ran."""
    await s.pipeline.wait_call(call_id, 15)
    rec: dict[str, Any] = await s.record(call_id)
    return rec


def _at(timeline: list[tuple[str, ...]], *entry: str) -> int:
    return timeline.index(entry)


async def test_realtime_hangup_plays_the_goodbye_before_hanging_up_once(door: Any) -> None:
    s = await door("realtime")
    s.oa.add("realtime", "rtc_1", [
        *sc.rt_session(), *sc.rt_response("r0", "Example Co, how can I help?"),
        *sc.rt_user("u1", "That is all, thanks."),
        *sc.rt_response("r1", "Glad I could help.", calls=[("call_1", "hangup", {"endword": BYE})]),
        sc.Expect("conversation.item.create"), *sc.rt_closing_response("r_bye", BYE),
    ])
    assert await s.oa.deliver(s.hook, "rtc_1") == [200]
    rec = await _ended(s, "rtc_1")
    t = s.oa.timeline
    assert _at(t, "sent", "output_audio_buffer.stopped", "r_bye") < _at(t, "rest", "hangup", "rtc_1")
    assert (s.oa.count("accept"), s.oa.count("hangup")) == (1, 1)
    assert rec["status"] == "ended" and rec["end_reason"] == "agent_hangup" and rec["end_source"] == "openai_sip"
    assert [e["type"] for e in rec["events"]] == ["hangup", "call.ended"]
    print(rec["transcript"], rec["usage"], rec["cost_usd"])
    assert len(hooks.CALLS) == 1
