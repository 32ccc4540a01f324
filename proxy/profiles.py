"""Runtime profiles: the built-in ones, and the config's overrides, resolved.

A profile is a named bundle of what differs between agent runtimes: where the call
id is, which body fields only the runtime understands (taken out before the
upstream call and kept as the call's ``metadata``), where the caller's and callee's
numbers are, the FunctionMap with the runtime's argument shapes, and the output
mode the runtime acts on. The runtime picks one by its base URL: ``/<name>/v1``
(``/v1`` is ``default_profile``, ``openai`` unless configured).

Built-in (sources: IMS "LLM standard interface" and "automatic hang-up and
transfer" docs; Vapi's custom-LLM docs and server SDK; ElevenLabs' custom-LLM and
system-tools docs; LiveKit Agents 1.8 ``EndCallTool`` and inference headers; Pipecat
1.14's OpenAI service):

============  ==========  ===================================================================
profile       output      call id, body fields kept from the upstream, FunctionMap
============  ==========  ===================================================================
openai        commands.*  ``extendData.instanceId``, ``call.id``, ``metadata.call_id``;
                          nothing dropped (today's behaviour)
ims           text        ``extendData.instanceId``; drops ``extendData``; IMS acts on the tags
vapi          tool_calls  ``call.id``; drops ``call``, ``phoneNumber``, ``customer``,
                          ``metadata``; ``endCall``, ``transferCall``
                          (``destination.number``)
elevenlabs    tool_calls  ``elevenlabs_extra_body.conversation_id``; drops
                          ``elevenlabs_extra_body``, ``user_id``; ``end_call``
                          (``message``), ``transfer_to_number`` (``transfer_number``)
livekit       tool_calls  header ``X-LiveKit-Room-ID``; ``end_call`` (``EndCallTool``, no
                          arguments)
pipecat       tool_calls  ``X-Call-Id`` only; ``end_call``, ``transfer_call`` (the app's own)
============  ==========  ===================================================================

Thinking (``<think>``, ``<thinking>``, ``<reasoning>``, ``<thought>`` blocks in
content, ``reasoning_content``/``reasoning`` deltas, thinking parts) is never
scanned for commands; ``openai`` forwards it, the voice runtimes' profiles remove it
(``thinking: remove``): a runtime that speaks what it gets would read it aloud. For
the same reason the voice runtimes' profiles watch every form of tool call written
as text (``text_tool_calls``, :data:`~proxy.core.text_tools.FORMS`); ``openai`` none
(it changes nothing a plain OpenAI client did not ask for). ``end_call_phrases`` is
empty everywhere unless configured.

Every profile reads the top-level ``call_id`` sources first (default: header
``X-Call-Id``), and the headers ``X-Caller-Number`` / ``X-Callee-Number`` for the
normalized ``caller_number`` / ``callee_number``.
"""

from __future__ import annotations

from typing import Any

from .config import BUILTIN_PROFILES, CallIdSource, Config, ProfileConfig
from .core.inspector import InspectorSettings
from .core.profile import Profile, Source
from .core.text_tools import FORMS
from .core.thinking import DEFAULT_THINK_TAGS
from .errors import ConfigError

__all__ = ["BUILTIN", "resolve_profiles"]


def _src(spec: str) -> dict[str, str]:
    kind, _, key = spec.partition(":")
    return {kind: key}


def _sources(*specs: str) -> list[dict[str, str]]:
    """``"body:call.id"``, ``"header:X-LiveKit-Room-ID"`` -> source dicts."""
    return [_src(s) for s in specs]


def _meta(caller: list[str], callee: list[str], runtime: list[str]) -> dict[str, list[dict[str, str]]]:
    return {
        "caller_number": _sources(*caller, "header:X-Caller-Number"),
        "callee_number": _sources(*callee, "header:X-Callee-Number"),
        "runtime_call_id": _sources(*runtime),
    }


# Overrides of the default profile, as ProfileConfig data. `openai` takes its
# FunctionMap and output from `commands:`.
BUILTIN: dict[str, dict[str, Any]] = {
    "openai": {
        "call_id": _sources("body:extendData.instanceId", "body:call.id", "body:metadata.call_id"),
        "merge_metadata": ["extendData"],
        "json_fields": ["userData"],
        "metadata": _meta(
            ["body:extendData.callerNumber", "body:customer.number", "body:call.customer.number"],
            ["body:extendData.calleeNumber", "body:phoneNumber.number"],
            ["body:extendData.instanceId", "body:call.id", "body:metadata.call_id"],
        ),
    },
    "ims": {
        "call_id": _sources("body:extendData.instanceId"),
        "drop_fields": ["extendData"],
        "merge_metadata": ["extendData"],
        "json_fields": ["userData"],
        "metadata": _meta(["body:extendData.callerNumber"], ["body:extendData.calleeNumber"], ["body:extendData.instanceId"]),
        "output": "text",
        "thinking": "remove",
        "text_tool_calls": list(FORMS),
        "function_map": [{"Function": "hangup", "MatchFunction": "hangup"}, {"Function": "transfer", "MatchFunction": "transfer_call"}],
    },
    "vapi": {
        "call_id": _sources("body:call.id"),
        "drop_fields": ["call", "phoneNumber", "customer", "metadata"],
        "merge_metadata": [],
        "metadata": _meta(["body:customer.number", "body:call.customer.number"], ["body:phoneNumber.number"], ["body:call.id"]),
        "output": "tool_calls",
        "thinking": "remove",
        "text_tool_calls": list(FORMS),
        "function_map": [
            {"Function": "hangup", "MatchFunction": "endCall", "arguments": {}},
            {
                "Function": "transfer",
                "MatchFunction": "transferCall",
                "arguments": {"callee": ["destination.number", "destination", "number"], "msg": ["destination.message", "message"]},
                "defaults": {"destination": {"type": "number"}},
            },
        ],
    },
    "elevenlabs": {
        "call_id": _sources("body:elevenlabs_extra_body.conversation_id"),
        "drop_fields": ["elevenlabs_extra_body", "user_id"],
        "merge_metadata": [],
        "metadata": _meta(
            ["body:elevenlabs_extra_body.caller_number", "body:elevenlabs_extra_body.system__caller_id"],
            ["body:elevenlabs_extra_body.callee_number", "body:elevenlabs_extra_body.system__called_number"],
            ["body:elevenlabs_extra_body.conversation_id"],
        ),
        "output": "tool_calls",
        "thinking": "remove",
        "text_tool_calls": list(FORMS),
        "function_map": [
            {
                "Function": "hangup",
                "MatchFunction": "end_call",
                "arguments": {"endword": ["message"]},
                "defaults": {"reason": "the conversation is complete"},
            },
            {
                "Function": "transfer",
                "MatchFunction": "transfer_to_number",
                "arguments": {"callee": ["transfer_number"], "msg": ["client_message"]},
                "defaults": {
                    "reason": "the caller asked to be transferred",
                    "client_message": "",
                    "agent_message": "A caller transferred by the voice agent.",
                },
            },
        ],
    },
    "livekit": {
        "call_id": _sources("header:X-LiveKit-Room-ID"),
        "merge_metadata": [],
        "metadata": _meta([], [], ["header:X-LiveKit-Room-ID"]),
        "output": "tool_calls",
        "thinking": "remove",
        "text_tool_calls": list(FORMS),
        "function_map": [
            {"Function": "hangup", "MatchFunction": "end_call", "arguments": {}},
            {"Function": "transfer", "MatchFunction": "transfer_call"},
        ],
    },
    "pipecat": {
        "call_id": [],
        "merge_metadata": [],
        "metadata": _meta([], [], []),
        "output": "tool_calls",
        "thinking": "remove",
        "text_tool_calls": list(FORMS),
        "function_map": [{"Function": "hangup", "MatchFunction": "end_call"}, {"Function": "transfer", "MatchFunction": "transfer_call"}],
    },
}
assert set(BUILTIN) == set(BUILTIN_PROFILES)


def resolve_profiles(config: Config) -> dict[str, Profile]:
    """Every profile by name: the built-in ones with the config's overrides, and the
    config's own (which start from ``extends``, default ``default_profile``)."""
    names = list(BUILTIN) + [n for n in config.profiles if n not in BUILTIN]
    return {name: _resolve(config, name, ()) for name in names}


def _resolve(config: Config, name: str, seen: tuple[str, ...]) -> Profile:
    """``name``'s settings: the base (built-in or ``extends``) with the overrides."""
    own = config.profiles.get(name, ProfileConfig())
    if name in BUILTIN:
        base = _base(config, name)
    else:
        parent = own.extends or config.default_profile
        if parent in seen or parent == name:
            raise ConfigError(f"profiles.{name}.extends: a cycle through {[*seen, name]}")
        base = _fields(_resolve(config, parent, (*seen, name)))
    merged = {**base, **own.model_dump(exclude_unset=True, exclude={"extends"}, by_alias=False)}
    return _build(config, name, ProfileConfig.model_validate(merged))


def _base(config: Config, name: str) -> dict[str, Any]:
    """A built-in profile as ProfileConfig fields; ``openai`` gets ``commands:``'s
    FunctionMap and output."""
    data = dict(BUILTIN[name])
    if name == "openai":
        data["function_map"] = [e.model_dump(by_alias=True) for e in config.commands.function_map]
        data["output"] = config.commands.output
    return data


def _fields(p: Profile) -> dict[str, Any]:
    """A resolved profile back as ProfileConfig fields (for ``extends``)."""
    def srcs(pairs: tuple[Source, ...]) -> list[dict[str, str]]:
        return [{kind: key} for kind, key in pairs]

    return {
        "call_id": srcs(p.call_id),
        "drop_fields": sorted(p.drop_fields),
        "merge_metadata": list(p.merge_metadata),
        "json_fields": list(p.json_fields),
        "metadata": {k: srcs(v) for k, v in p.metadata.items()},
        "function_map": [_entry(s) for s in p.settings.function_map],
        "output": p.settings.output,
        "speak_closing": p.settings.speak_closing,
        "thinking": p.settings.thinking,
        "think_tags": list(p.settings.think_tags),
        "text_tool_calls": list(p.settings.text_tool_calls),
        "end_call_phrases": list(p.settings.end_call_phrases),
    }


def _entry(spec: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"Function": spec.function, "MatchFunction": spec.match}
    if spec.arguments is not None:
        out["arguments"] = {k: list(v) for k, v in spec.arguments.items()}
    if spec.defaults:
        out["defaults"] = dict(spec.defaults)
    return out


def _pairs(sources: list[CallIdSource] | None) -> tuple[Source, ...]:
    return tuple(c.pair() for c in sources or ())


def _build(config: Config, name: str, p: ProfileConfig) -> Profile:
    """The resolved profile from its merged settings."""
    cc = config.commands
    settings = InspectorSettings(
        hangup_tag=cc.hangup_tag,
        transfer_tag=cc.transfer_tag,
        function_map=tuple(e.spec() for e in (p.function_map if p.function_map is not None else cc.function_map)),
        output=p.output or cc.output,
        speak_closing=cc.speak_closing if p.speak_closing is None else p.speak_closing,
        max_command_chars=cc.max_command_chars,
        transfer_allow=tuple(cc.transfer_allow),
        max_recorded_chars=config.storage.max_turn_chars,
        spoken_rejections=config.limits.spoken_rejections_per_reply,
        thinking=p.thinking or "forward",
        think_tags=tuple(p.think_tags if p.think_tags is not None else DEFAULT_THINK_TAGS),
        text_tool_calls=tuple(p.text_tool_calls or ()),
        end_call_phrases=tuple(p.end_call_phrases or ()),
    )
    top = _pairs(config.call_id)
    return Profile(
        name=name,
        settings=settings,
        call_id=top + tuple(s for s in _pairs(p.call_id) if s not in top),
        drop_fields=frozenset((p.drop_fields or []) + config.upstream.drop_fields),
        merge_metadata=tuple(p.merge_metadata or ()),
        json_fields=tuple(p.json_fields or ()),
        metadata={k: _pairs(v) for k, v in (p.metadata or {}).items()},
        upstreams=tuple(p.upstreams or ()),
    )
