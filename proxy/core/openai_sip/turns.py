"""What was said and done in a speech-to-speech call, cut into turns for the call
record (sans-IO).

Neither API sends turns (reference §4): a turn here is what the caller said and what
followed it.

* Realtime: each committed caller utterance (``input_audio_buffer.committed``,
  ``item_id``) opens a turn; its transcript (``…transcription.completed``, same
  ``item_id``) may come later and still goes to that turn. The model's transcripts go
  to the newest turn; a truncation (``conversation.item.truncated``) cuts its item's
  text where the caller stopped hearing it. A turn is written once a newer one exists
  and its transcript came (or two newer ones exist), and at the end.
* GPT-Live: the transcripts are pieces on one timeline, with no item ids; a caller
  piece after the model spoke opens the next turn.

The truncation point: Realtime says how much audio was heard (``audio_end_ms``), not
how much text; the heard text is the transcript's first :data:`CHARS_PER_S` × seconds
characters, cut back to a word boundary (an estimate; the whole text stays in
``raw_text``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .actions import SipTurn

__all__ = ["CHARS_PER_S", "TurnBook", "heard_part"]

CHARS_PER_S = 15.0  # speech at about 150 words a minute


def heard_part(text: str, audio_end_ms: int, chars_per_s: float = CHARS_PER_S) -> str:
    """The part of ``text`` heard in ``audio_end_ms`` (ms) of its audio, cut back to a
    word boundary (all of it when the estimate reaches its end)."""
    n = int(audio_end_ms / 1000 * chars_per_s)
    if n >= len(text):
        return text
    cut = text[:n]
    if n < len(text) and not text[n].isspace() and " " in cut:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip()


def _join(parts: list[str], sep: str) -> str:
    out = ""
    for p in parts:
        if not p:
            continue
        out = f"{out}{sep}{p}" if out and sep and not out[-1].isspace() and not p[0].isspace() else out + p
    return out


@dataclass
class _Turn:
    id: int
    user: list[str] = field(default_factory=list)
    awaiting: set[str] = field(default_factory=set)  # caller items whose transcript has not come
    model: dict[str, str] = field(default_factory=dict)  # model item (or group) -> its text
    heard: dict[str, str] = field(default_factory=dict)  # model item -> the heard part, when cut
    tools: list[Mapping[str, Any]] = field(default_factory=list)
    attempts: list[Mapping[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.user or self.model or self.tools or self.attempts or self.awaiting)

    def finished(self, sep: str) -> SipTurn:
        raw = _join(list(self.model.values()), " ")
        spoken = _join([self.heard.get(k, v) for k, v in self.model.items()], " ")
        return SipTurn(
            self.id, _join(self.user, sep), raw, spoken, tuple(self.tools), tuple(self.attempts), bool(self.heard),
        )


class TurnBook:
    """The turns of one call. ``live``: GPT-Live's pieces (else Realtime's items).
    The methods that can finish turns return them, oldest first."""

    def __init__(self, live: bool, first_id: int = 1) -> None:
        self.live = live
        self._open: list[_Turn] = []
        self._by_item: dict[str, _Turn] = {}
        self._next = first_id

    def _new(self) -> _Turn:
        turn = _Turn(self._next)
        self._next += 1
        self._open.append(turn)
        return turn

    @property
    def current(self) -> _Turn:
        """The newest open turn (one is opened when there is none)."""
        return self._open[-1] if self._open else self._new()

    def user_item(self, item_id: str) -> list[SipTurn]:
        """Realtime: the caller's utterance ``item_id`` opens a turn."""
        turn = self.current if self.current.empty else self._new()
        turn.awaiting.add(item_id)
        self._by_item[item_id] = turn
        return self._flush()

    def caller(self, text: str, item_id: str = "") -> list[SipTurn]:
        """What the caller said (``item_id``: its Realtime utterance)."""
        turn = self._by_item.get(item_id) if item_id else None
        if turn is None or turn not in self._open:
            turn = self.current
            if self.live and turn.model:
                turn = self._new()
        turn.awaiting.discard(item_id)
        if text:
            turn.user.append(text)
        return self._flush()

    def model(self, key: str, text: str, final: bool = False) -> None:
        """What the model said: a piece of item ``key`` (its whole text with ``final``)."""
        turn = self._by_item.get(key) if key else None
        if turn is None or turn not in self._open:
            turn = self.current
            self._by_item[key] = turn
        turn.model[key] = text if final else turn.model.get(key, "") + text

    def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """Realtime cut item ``item_id`` at ``audio_end_ms`` (ms): its heard part is kept apart."""
        turn = self._by_item.get(item_id)
        if turn is not None and turn in self._open and item_id in turn.model:
            turn.heard[item_id] = heard_part(turn.model[item_id], audio_end_ms)

    def user_text(self) -> str:
        """What the caller said in the newest turn."""
        return _join(self.current.user, "" if self.live else " ")

    def reply_text(self) -> str:
        """What the model said in the newest turn."""
        return _join(list(self.current.model.values()), " ")

    def tool(self, record: Mapping[str, Any]) -> None:
        """A function call of the newest turn (``{"id", "name", "arguments", "output", "executed"}``)."""
        self.current.tools.append(dict(record))

    def attempt(self, record: Mapping[str, Any]) -> None:
        """A response's usage and cost, in the newest turn."""
        self.current.attempts.append(dict(record))

    def close(self) -> list[SipTurn]:
        """Every open turn, finished (the call ended)."""
        done = [t.finished("" if self.live else " ") for t in self._open if not t.empty]
        self._open.clear()
        self._by_item.clear()
        return done

    def _flush(self) -> list[SipTurn]:
        """Turns with a newer one after them whose transcript came (or with two newer)."""
        out = []
        while len(self._open) > 1 and (not self._open[0].awaiting or len(self._open) > 2):
            turn = self._open.pop(0)
            self._by_item = {k: t for k, t in self._by_item.items() if t is not turn}
            if not turn.empty:
                out.append(turn.finished("" if self.live else " "))
        return out
