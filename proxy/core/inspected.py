"""What a reply inspector holds per choice, and what it tells of choice 0 after
(sans-IO): the record's texts (capped, chars), tool calls, the chunks' id and model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .analyzer import ChoiceAnalyzer
from .render import ChoiceOutput

__all__ = ["Choice", "InspectorResults"]


@dataclass(slots=True)
class Choice:
    """One choice's analysis (what the model wrote) and output (what the runtime got)."""

    analyzer: ChoiceAnalyzer
    out: ChoiceOutput


class InspectorResults:
    """The read side of :class:`~proxy.core.inspector.ReplyInspector`: ``_choices`` by
    index and ``_template`` (the last chunk, as decoded) are the inspector's."""

    _choices: dict[int, Choice]
    _template: dict[str, Any] | None

    @property
    def raw_text(self) -> str:
        """Everything choice 0's content said so far, commands included (capped, for the record)."""
        st = self._choices.get(0)
        return st.analyzer.raw.text() if st else ""

    @property
    def spoken_text(self) -> str:
        """What choice 0 sent the runtime as content so far: the speakable output (capped)."""
        st = self._choices.get(0)
        return st.out.spoken.text() if st else ""

    @property
    def reasoning_text(self) -> str:
        """Choice 0's thinking so far: ``<think>`` blocks in its content (without the
        tags) and its ``reasoning_content``/``reasoning`` deltas (capped)."""
        st = self._choices.get(0)
        return st.analyzer.reasoning.text() if st else ""

    @property
    def thinking_unopened(self) -> bool:
        """Choice 0 had a thinking closing tag (``</think>``) with no opening one while
        not ``thinking_open``: its upstream's model opens thinking in the prompt (the
        speech before the tag was thinking, already sent); the server counts it."""
        st = self._choices.get(0)
        return st.analyzer.thinking_unopened if st else False

    @property
    def chunk_id(self) -> str | None:
        """The ``id`` the upstream's chunks carry (the last one's), or ``None``."""
        return self._template.get("id") if self._template else None

    @property
    def model(self) -> str | None:
        """The ``model`` the upstream's chunks name (the last one's), or ``None``."""
        m = self._template.get("model") if self._template else None
        return m if isinstance(m, str) else None

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """Choice 0's tool calls as the upstream sent them, assembled per index
        (``[{"id", "name", "arguments"}]``)."""
        st = self._choices.get(0)
        return st.analyzer.tool_calls() if st else []
