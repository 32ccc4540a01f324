"""A runtime profile, resolved: what callgate does differently per agent runtime (sans-IO).

A :class:`Profile` is plain data built from the config (:mod:`proxy.profiles`): the
call-id sources, the runtime-only body fields to take out before the upstream call,
where the normalized metadata comes from, and the inspector settings (FunctionMap
with argument shapes, output mode). :meth:`Profile.split` turns a request body into
the body that goes upstream and the call's metadata.

Sources are ``("header", name)`` or ``("body", dotted.path)`` pairs; headers must
look names up case-insensitively.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .call_id import resolve_call_id, resolve_call_id_from
from .inspector import InspectorSettings

__all__ = ["NORMALIZED_METADATA", "NestedTooDeep", "Profile", "Source"]

Source = tuple[str, str]

# The metadata every profile fills when the runtime sends it.
NORMALIZED_METADATA = ("caller_number", "callee_number", "runtime_call_id")


@dataclass(frozen=True)
class Profile:
    """One runtime profile.

    ``call_id``: sources tried in order; ``drop_fields``: top-level body fields that
    never go upstream (kept in the metadata under their names);
    ``merge_metadata``: body objects whose keys are merged into the metadata as they
    came (IMS ``extendData``); ``json_fields``: metadata keys whose JSON-string value
    is parsed (IMS ``userData``); ``metadata``: normalized key -> sources.
    """

    name: str
    settings: InspectorSettings
    call_id: tuple[Source, ...] = ()
    drop_fields: frozenset[str] = frozenset()
    merge_metadata: tuple[str, ...] = ()
    json_fields: tuple[str, ...] = ()
    metadata: Mapping[str, tuple[Source, ...]] = field(default_factory=dict, hash=False)
    upstreams: tuple[str, ...] = ()  # the pool's names this profile's requests go to, in order (empty: routing.order)

    def call_id_of(self, headers: Mapping[str, str], body: Any) -> str | None:
        """The call id the request names, or ``None``; raises
        :class:`~proxy.core.call_id.InvalidCallId` for one callgate will not take."""
        return resolve_call_id(headers, body, self.call_id)

    def split(self, body: dict[str, Any], headers: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(body for the upstream, the call's metadata)``. The upstream body is
        ``body`` itself when nothing is dropped. Raises :class:`NestedTooDeep`."""
        meta: dict[str, Any] = {}
        for name in self.merge_metadata:
            value = body.get(name)
            if isinstance(value, dict):
                meta.update(value)
        dropped = [k for k in body if k in self.drop_fields]
        for name in dropped:
            if name not in self.merge_metadata:
                meta[name] = body[name]
        for name in self.json_fields:
            meta[name] = _parsed(meta.get(name), name)
        for key, sources in self.metadata.items():
            found = resolve_call_id_from(headers, body, sources)
            if found is not None:
                meta[key] = found[0]
        upstream = {k: v for k, v in body.items() if k not in self.drop_fields} if dropped else body
        return upstream, {k: v for k, v in meta.items() if v is not None}

    def describe(self) -> dict[str, Any]:
        """The effective settings as plain data (``callgate check``)."""
        s = self.settings
        return {
            "call_id": [f"{kind} {key}" for kind, key in self.call_id],
            "drop_fields": sorted(self.drop_fields),
            "merge_metadata": list(self.merge_metadata),
            "metadata": {k: [f"{kind} {key}" for kind, key in v] for k, v in self.metadata.items()},
            "output": s.output,
            "speak_closing": s.speak_closing,
            "thinking": s.thinking,
            "think_tags": list(s.think_tags),
            "text_tool_calls": list(s.text_tool_calls),
            "end_call_phrases": list(s.end_call_phrases),
            "function_map": [_describe_spec(e) for e in s.function_map],
        }


class NestedTooDeep(ValueError):
    """A JSON string field (``json_fields``, e.g. IMS ``userData``) nested deeper than
    the parser goes; ``field``: its name."""

    def __init__(self, field: str) -> None:
        super().__init__(f"metadata.{field} is a JSON string nested too deep to read")
        self.field = field


def _parsed(value: Any, name: str) -> Any:
    """A JSON string as its value; anything else (or bad JSON) as it is;
    :class:`NestedTooDeep` when the parser runs out of stack. The caller checks the
    depth of the result."""
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
        except RecursionError:
            raise NestedTooDeep(name) from None
    return value


def _describe_spec(entry: Any) -> dict[str, Any]:
    if isinstance(entry, tuple):
        return {"Function": entry[0], "MatchFunction": entry[1]}
    out: dict[str, Any] = {"Function": entry.function, "MatchFunction": entry.match}
    if entry.arguments is not None:
        out["arguments"] = {k: list(v) for k, v in entry.arguments.items()}
    if entry.defaults:
        out["defaults"] = dict(entry.defaults)
    return out
