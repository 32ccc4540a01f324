"""The end function's view of a call: :class:`Conversation`, as PolyAI's ``conv``.

Every step gets one, built from the stored call record; it is frozen (no field
can be set). ``state`` is what the call layer set (``PATCH
/v1/calls/{id}/state``, ``POST /end``), plus ``tool_calls``: the tool calls the
model made during the call (``[{"name", "arguments", "turn"}]``). ``results``
holds the outputs of the steps that finished before this one, by name. The dicts
and lists inside are the step's own copy, built for each try: changing them
changes nothing stored and nothing another step sees.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..calls.outcome import add_tags, rule_tags

__all__ = ["Conversation"]


@dataclass(frozen=True)
class Conversation:
    """One ended call, for a step.

    ``id``: the runtime's call id; ``generation``: which call under it (1, or 2, 3,
    ... for a later call under an id whose call had ended); ``transcript``: ``[{"role": "user"|"assistant", "text"}]``
    as spoken; ``events``: the control events as JSON; ``end_reason``;
    ``started_at``/``ended_at`` (UTC); ``metadata``: from the runtime (IMS
    ``extendData``, ...); ``record``: the whole call record; ``outcome_tags``: rule
    tags plus those earlier steps produced; ``step``: this step's name;
    ``idempotency_key``: ``{call_id}:{step}`` (``{call_id}~{generation}:{step}`` past
    the first call under an id), the same on every retry;
    ``sandbox``: ``True`` under ``callgate end-function test`` (skip your own side
    effects then); ``usage``: ``{prompt_tokens, completion_tokens, cached_tokens}``
    over every upstream attempt of the call where known (``None``: none known; a
    speech-to-speech call adds its audio and text token split and GPT-Live's ``seconds``);
    ``cost_usd``: what they cost at the configured prices (USD; ``None``: no price known);
    ``speech_gap_max_ms``: the call's longest dead air, the largest of its turns'
    ``speech_gap_max_ms`` (ms: the longest silence inside one reply's speech, after
    its first piece; ``None``: no turn spoke, or none was measured). Each turn's own
    is in ``record["turns"][i]["speech_gap_max_ms"]``.
    """

    id: str
    state: dict[str, Any]
    transcript: list[dict[str, str]]
    events: list[dict[str, Any]]
    end_reason: str | None
    started_at: datetime | None
    ended_at: datetime | None
    metadata: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    outcome_tags: list[str] = field(default_factory=list)
    step: str = ""
    idempotency_key: str = ""
    sandbox: bool = False
    generation: int = 1
    usage: dict[str, Any] | None = None
    cost_usd: float | None = None
    speech_gap_max_ms: float | None = None

    @classmethod
    def from_record(
        cls,
        record: dict[str, Any],
        results: dict[str, Any] | None = None,
        *,
        step: str = "",
        idempotency_key: str = "",
        sandbox: bool = False,
    ) -> Conversation:
        """From a call record (``GET /v1/calls/{id}`` JSON) and earlier step outputs.
        Everything it holds is a deep copy: a step changing it changes nothing the
        next try or another step sees."""
        record = copy.deepcopy(record)
        results = copy.deepcopy(dict(results or {}))
        return cls(
            id=record.get("call_id") or record["id"],
            generation=int(record.get("generation") or 1),
            state=record.get("state") or {},
            transcript=record.get("transcript") or [],
            events=record.get("events") or [],
            end_reason=record.get("end_reason"),
            started_at=_dt(record.get("started_at")),
            ended_at=_dt(record.get("ended_at")),
            metadata=record.get("metadata") or {},
            record=record,
            results=results,
            outcome_tags=_tags(record, results),
            step=step,
            idempotency_key=idempotency_key,
            sandbox=sandbox,
            usage=record.get("usage"),
            cost_usd=record.get("cost_usd"),
            speech_gap_max_ms=_longest_gap(record),
        )

    def with_result(self, step: str, output: Any) -> Conversation:
        """A new conversation that also has ``output`` as ``results[step]`` (and its
        ``tags``, if it has any, among the outcome tags)."""
        results = {**self.results, step: copy.deepcopy(output)}
        return dataclasses.replace(self, results=results, outcome_tags=_tags(self.record, results))

    def context(self) -> dict[str, Any]:
        """What ``when:`` conditions and ``{dotted.path}`` templates can read."""
        summary = self.results.get("summary")
        return {
            "call_id": self.id,
            "generation": self.generation,
            "end_reason": self.end_reason,
            "state": self.state,
            "metadata": self.metadata,
            "results": self.results,
            "outcome_tags": self.outcome_tags,
            "summary": summary if isinstance(summary, dict) else {},
        }


def _tags(record: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """Rule tags, then the tags an ``outcome`` step (or any step) produced."""
    tags = rule_tags(record)
    for out in results.values():
        if isinstance(out, dict) and isinstance(out.get("tags"), list):
            add_tags(tags, (str(t) for t in out["tags"]))
    return tags


def _longest_gap(record: dict[str, Any]) -> float | None:
    """The largest ``speech_gap_max_ms`` of the record's turns (ms), or ``None``."""
    gaps = [t["speech_gap_max_ms"] for t in record.get("turns") or () if isinstance(t, dict) and isinstance(t.get("speech_gap_max_ms"), int | float)]
    return max(gaps) if gaps else None


def _dt(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None
