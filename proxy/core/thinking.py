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

The default tags are ``think``, ``thinking``, ``reasoning`` and ``thought`` (Qwen3
and DeepSeek-R1 write ``<think>``; other models and prompts ``<thinking>``,
``<reasoning>``, ``<thought>``: pipecat#4901, NousResearch/hermes-agent#77079).

Opened in the prompt: DeepSeek-R1 distills and Qwen3 thinking models get ``<think>``
from their chat template, so the reply holds only the closing tag. A splitter made
with ``opened=True`` starts inside thinking (until a closing tag), unless a reasoning
field arrives before any content (:meth:`ThinkSplitter.sent_apart`: the server's
reasoning parser already took the thinking out). Without it, a closing tag with no
opening one is dropped from the speech and counted in :attr:`ThinkSplitter.unopened`
(what came before it was spoken already: the upstream should be marked as opening
thinking in the prompt, ``thinking_open_models``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

__all__ = ["DEFAULT_THINK_TAGS", "ThinkSplitter", "Thinking", "opens_thinking"]

DEFAULT_THINK_TAGS = ("think", "thinking", "reasoning", "thought")


def opens_thinking(model: str, patterns: Sequence[str]) -> bool:
    """Whether the model sent upstream (``deepseek-r1-distill-qwen-32b``) matches one
    of an upstream's ``thinking_open_models`` patterns (``deepseek-r1*``; shell-style,
    case-insensitive)."""
    name = model.lower()
    return any(fnmatchcase(name, p.lower()) for p in patterns)


@dataclass(frozen=True, slots=True)
class Thinking:
    """A piece of thinking: ``raw`` as it came (tags included), ``text`` without the
    tags (what the turn records as ``reasoning_text``)."""

    raw: str
    text: str


class ThinkSplitter:
    """See the module docstring. ``tags``: the tag names; ``opened``: the reply starts
    inside thinking (its model's template opened it in the prompt)."""

    __slots__ = ("_opens", "_closes", "_ends", "_inside", "_held", "_close_tag", "_opened", "_fed", "unopened", "quiet")

    def __init__(self, tags: Iterable[str] = DEFAULT_THINK_TAGS, *, opened: bool = False) -> None:
        names = [t.lower() for t in tags if t]
        self._opens = tuple(f"<{t}>" for t in names)
        self._closes = {f"<{t}>": f"</{t}>" for t in names}
        self._ends = tuple(self._closes.values())
        self._opened = opened and bool(names)
        self._inside = self._opened
        self._close_tag = ""  # the closing tag awaited ("" and inside: any of them, opened in the prompt)
        self._held = ""
        self._fed = False
        self.unopened = 0  # closing tags seen outside thinking, on a reply not opened in the prompt
        self.quiet = not self._inside  # nothing held, not inside: text without "<" is speech as it is

    @property
    def thinking(self) -> bool:
        """Inside a thinking block now."""
        return self._inside

    def sent_apart(self) -> None:
        """A reasoning field came before any content: the thinking opened in the
        prompt was sent apart, so the content is speech from its start. (Content fed
        while opened takes the slow path, which notes it.)"""
        if self._opened and not self._fed:
            self._inside = self._opened = False
            self.quiet = not self._held

    def feed(self, text: str) -> list[str | Thinking]:
        """A piece of content in; speech (``str``) and :class:`Thinking` out."""
        if not self._opens:
            return [text] if text else []
        if not self._held and not self._inside and "<" not in text:
            return [text] if text else []  # the hot path: plain speech (never inside, so _fed does not matter)
        self._fed = self._fed or bool(text)
        data = self._held + text
        self._held = ""
        out: list[str | Thinking] = []
        while data:
            data = self._step(data, out)
        self.quiet = not self._held and not self._inside
        return out

    def close(self) -> list[str | Thinking]:
        """The end of the content: what was held (an unfinished tag is what it is:
        speech outside thinking, thinking inside)."""
        held, self._held = self._held, ""
        self.quiet = not self._inside
        if not held:
            return []
        return [Thinking(held, held)] if self._inside else [held]

    def _step(self, data: str, out: list[str | Thinking]) -> str:
        """Consume what can be decided of ``data``; the rest (held or still to read)."""
        lower = data.lower()
        if self._inside:
            return self._in_thinking(data, lower, out)
        found = [(i, tag) for tag in self._opens + self._ends if (i := lower.find(tag)) >= 0]
        if found:
            start, tag = min(found)
            if start:
                out.append(data[:start])
            cut = start + len(tag)
            if tag in self._closes:
                self._inside, self._close_tag = True, self._closes[tag]
            elif not self._opened:
                self.unopened += 1  # a closing tag with no opening: not speech
            _add(out, Thinking(data[start:cut], ""))
            return data[cut:]
        keep = _partial(lower, self._opens + self._ends)
        if len(data) > keep:
            out.append(data[: len(data) - keep])
        self._held = data[len(data) - keep:] if keep else ""
        return ""

    def _in_thinking(self, data: str, lower: str, out: list[str | Thinking]) -> str:
        ends = (self._close_tag,) if self._close_tag else self._ends
        found = [(i, tag) for tag in ends if (i := lower.find(tag)) >= 0]
        if found:
            end, tag = min(found)
            cut = end + len(tag)
            _add(out, Thinking(data[:cut], data[:end]))
            self._inside = False
            return data[cut:]
        keep = _partial(lower, ends)
        if len(data) > keep:
            body = data[: len(data) - keep]
            _add(out, Thinking(body, body))
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
