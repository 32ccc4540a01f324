"""Goodbye phrases (sans-IO): does a reply's speech end with one of the profile's
``end_call_phrases``?

A model that says goodbye but writes no command never hangs up
(gptme/gptme-contrib#795: goodbye five times, no hangup tool). :class:`GoodbyePhrases`
keeps the end of a reply's speech (:meth:`~GoodbyePhrases.hear`) and answers, once
the reply has ended (:meth:`~GoodbyePhrases.ending`), which phrase it ends with.

Folded before comparing, in any language: Unicode NFKC (full-width forms), case
(``casefold``), and every run of punctuation, symbols (emoji), whitespace and
control characters made one space, trimmed at both ends: ``"Goodbye!"`` matches
``"…thanks. GOODBYE 👋"``; ``"再见"`` matches ``"好的，再见。"``. A phrase starting with a letter or digit of a spaced script must
start a word (``bye`` does not end ``goodbye``); in scripts written without spaces
(CJK) it need not.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

__all__ = ["GoodbyePhrases", "fold"]


def fold(text: str) -> str:
    """``text`` folded as the module docstring says."""
    out: list[str] = []
    space = False
    for c in unicodedata.normalize("NFKC", text).casefold():
        if unicodedata.category(c)[0] in "PSZC":
            space = True
            continue
        if space and out:
            out.append(" ")
        space = False
        out.append(c)
    return "".join(out)


def _spaced(c: str) -> bool:
    """A letter or digit of a script that separates words with spaces."""
    return c.isalnum() and unicodedata.east_asian_width(c) not in ("W", "F")


class GoodbyePhrases:
    """The phrases of one profile; one instance per choice of a reply (it keeps
    that choice's last words)."""

    __slots__ = ("_phrases", "_keep", "_tail")

    def __init__(self, phrases: Iterable[str]) -> None:
        folded = [(fold(p), p) for p in phrases]
        self._phrases = tuple(sorted(((f, p) for f, p in folded if f), key=lambda fp: -len(fp[0])))
        self._keep = 4 * max((len(p) for _, p in self._phrases), default=0) + 64  # chars of speech kept
        self._tail = ""

    def __bool__(self) -> bool:
        return bool(self._phrases)

    def hear(self, speech: str) -> None:
        """Speech the runtime was sent, in order."""
        tail = self._tail + speech
        self._tail = tail[-self._keep:] if len(tail) > self._keep else tail

    def ending(self) -> str | None:
        """The phrase (as configured) the speech so far ends with, or ``None``."""
        tail = fold(self._tail)
        for folded, phrase in self._phrases:
            if not tail.endswith(folded):
                continue
            before = tail[: len(tail) - len(folded)]
            if before and not before.endswith(" ") and _spaced(before[-1]) and _spaced(folded[0]):
                continue  # inside a word
            return phrase
        return None
