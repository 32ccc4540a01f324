"""The end function's view of a call: :class:`Conversation`, as PolyAI's ``conv``.

Every step gets one, built from the stored call record. ``state`` is what the call
layer set (``PATCH /v1/calls/{id}/state``, ``POST /end``), plus ``tool_calls``: the
tool calls the model made during the call (``[{"name", "arguments", "turn"}]``).
``results`` holds the outputs of the steps that finished before this one, by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .steps.outcome import rule_tags


@dataclass
class Conversation:
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

    @classmethod
    def from_record(cls, record: dict[str, Any], results: dict[str, Any] | None = None) -> Conversation:
        """From a call record (``GET /v1/calls/{id}`` JSON) and earlier step outputs."""
        results = dict(results or {})
        tags = rule_tags(record)
        for out in results.values():  # tags an `outcome` step (or any step) produced
            if isinstance(out, dict) and isinstance(out.get("tags"), list):
                tags += [t for t in out["tags"] if t not in tags]
        return cls(
            id=record["id"],
            state=record.get("state") or {},
            transcript=record.get("transcript") or [],
            events=record.get("events") or [],
            end_reason=record.get("end_reason"),
            started_at=_dt(record.get("started_at")),
            ended_at=_dt(record.get("ended_at")),
            metadata=record.get("metadata") or {},
            record=record,
            results=results,
            outcome_tags=tags,
        )

    def context(self) -> dict[str, Any]:
        """What ``when:`` conditions and ``{dotted.path}`` templates can read."""
        return {
            "call_id": self.id,
            "end_reason": self.end_reason,
            "state": self.state,
            "metadata": self.metadata,
            "results": self.results,
            "outcome_tags": self.outcome_tags,
            "summary": (self.results.get("summary") or {}) if isinstance(self.results.get("summary"), dict) else {},
        }


def _dt(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None
