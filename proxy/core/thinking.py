"""Thinking written inside ``content`` (sans-IO): ``<think>…</think>`` told apart
from speech, split anywhere.

Reasoning models served without a reasoning parser (Qwen3 on vLLM or Xinference,
DeepSeek-R1 distills on llama.cpp or Ollama) stream their thinking inside
``delta.content`` between ``<think>`` and ``</think>`` (vLLM's reasoning-parser
docs; livekit/agents#5989; xorbitsai/inference#3647). Thinking is not speech and
not a place for commands: :class:`ThinkSplitter` cuts the content into
:class:`Thinking` pieces and speech before the command parser sees it.

``feed(text) -> list[str | Thinking]`` and ``close() -> list[str | Thinking]``, as
every incremental stage in :mod:`proxy.core`. Only what could still be the start
of a ``<tag>`` or ``</tag>`` is held back (at most the tag's length); the pieces of
one input, joined, are the input (the tags stay inside the :class:`Thinking`
pieces' ``raw``). Tag names match case-insensitively; thinking does not nest.
A stream that ends inside thinking: what came is thinking (never spoken).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ThinkSplitter", "Thinking"]


@dataclass(frozen=True, slots=True)
class Thinking:
    """A piece of thinking: ``raw`` as it came (tags included), ``text`` without the
    tags (what the turn records as ``reasoning_text``)."""

    raw: str
    text: str


class ThinkSplitter:
    """See the module docstring. ``tags``: the tag names (``think``)."""

    __slots__ = ("_opens", "_closes", "_inside", "_held", "_close_tag")

    def __init__(self, tags: Iterable[str] = ("think",)) -> None:
        names = [t.lower() for t in tags if t]
        self._opens = tuple(f"<{t}>" for t in names)
        self._closes = {f"<{t}>": f"</{t}>" for t in names}
        self._inside = False
        self._close_tag = ""
        self._held = ""

    @property
    def thinking(self) -> bool:
        """Inside a thinking block now."""
        return self._inside

    def feed(self, text: str) -> list[str | Thinking]:
        """A piece of content in; speech (``str``) and :class:`Thinking` out."""
        if not self._opens:
            return [text] if text else []
        if not self._held and not self._inside and "<" not in text:
            return [text] if text else []  # the hot path: plain speech
        data = self._held + text
        self._held = ""
        out: list[str | Thinking] = []
        while data:
            data = self._step(data, out)
        return out

    def close(self) -> list[str | Thinking]:
        """The end of the content: what was held (an unfinished tag is what it is:
        speech outside thinking, thinking inside)."""
        held, self._held = self._held, ""
        if not held:
            return []
        return [Thinking(held, held)] if self._inside else [held]

    def _step(self, data: str, out: list[str | Thinking]) -> str:
        """Consume what can be decided of ``data``; the rest (held or still to read)."""
        lower = data.lower()
        if self._inside:
            end = lower.find(self._close_tag)
            if end >= 0:
                cut = end + len(self._close_tag)
                _add(out, Thinking(data[:cut], data[:end]))
                self._inside = False
                return data[cut:]
            keep = _partial(lower, (self._close_tag,))
            if len(data) > keep:
                body = data[: len(data) - keep]
                _add(out, Thinking(body, body))
            self._held = data[len(data) - keep:] if keep else ""
            return ""
        found = [(i, tag) for tag in self._opens if (i := lower.find(tag)) >= 0]
        if found:
            start, tag = min(found)
            if start:
                out.append(data[:start])
            self._inside, self._close_tag = True, self._closes[tag]
            cut = start + len(tag)
            _add(out, Thinking(data[start:cut], ""))
            return data[cut:]
        keep = _partial(lower, self._opens)
        if len(data) > keep:
            out.append(data[: len(data) - keep])
        self._held = data[len(data) - keep:] if keep else ""
        return ""


def _partial(lower: str, tags: Iterable[str]) -> int:
    """How many chars at the end of ``lower`` could begin one of ``tags``."""
    best = 0
    start = lower.rfind("<")
    if start < 0:
        return 0
    tail = lower[start:]
    for tag in tags:
        if len(tail) < len(tag) and tag.startswith(tail):
            best = max(best, len(tail))
    return best


def _add(out: list[str | Thinking], piece: Thinking) -> None:
    """Append ``piece``, joined with a thinking piece just before it."""
    if out and isinstance(out[-1], Thinking):
        last = out[-1]
        out[-1] = Thinking(last.raw + piece.raw, last.text + piece.text)
    else:
        out.append(piece)
