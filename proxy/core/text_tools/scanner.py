"""The incremental scanner: speech in pieces in, speech and :class:`TextCall` out.

``feed(text) -> list[str | TextCall]`` and ``close() -> list[str | TextCall]``, as
every incremental stage of :mod:`proxy.core`. The pieces of speech, joined, are the
input less the forms; the answer does not depend on how the input was split.

What is held back: only what could still be the start of a form of a watched kind —
a proper prefix of a marker (``<tool_c``, ``[TOOL_CA``), ``functions.`` or a known
tool name being written at the start of a word (not after a letter or digit of a script
written with spaces, nor ``_``; ``of`` does not hold its ``f``; a tool call or thinking
in between is a word break), or an open candidate (``{"``, ``[fn(``, ``functions.x(``)
until it closes. An ambiguous candidate (one speech could hold) is held at most
``max_chars`` characters, then spoken; a marker no speech holds is never spoken: its
form is dropped when it cannot be read, and past :data:`MAX_FORM_CHARS` the rest up
to its end marker is dropped unread. Text without ``<``, ``[``, ``{`` (of the watched
forms) and not ending in a prefix of a watched word comes back as the same object.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

from .reading import NEED, NO, Reader, TextCall
from .functions import PREFIX, FunctionsReader
from .llama3_json import JsonCallReader
from .mistral import START as MISTRAL, MistralReader
from .pythonic import PythonicReader
from .tags import MARKERS, TagReader

__all__ = ["FORMS", "MAX_FORM_CHARS", "FormName", "TextToolScanner"]

# Every form name a profile's text_tool_calls may list (vLLM's parser names).
FormName = Literal[
    "hermes", "mistral", "llama3_json", "pythonic", "llama4_pythonic", "deepseek_v3", "kimi_k2", "glm45", "qwen3_coder",
    "functions",
]
FORMS: tuple[str, ...] = get_args(FormName)
MAX_FORM_CHARS = 65536  # a marker form longer than this (chars) is dropped unread
_WAIT: list[Reader] = []  # _start's answer for "a marker may begin here: hold"
_PREFIX_STARTS = tuple(PREFIX[:k] for k in range(1, len(PREFIX)))  # "f", "fu", … "functions"



class TextToolScanner:
    """See the module docstring. ``forms``: the watched forms (names in :data:`FORMS`;
    ``ValueError`` for another); ``max_chars``: the most chars an ambiguous candidate
    is held."""

    __slots__ = (
        "_markers", "_chars", "_json", "_pythonic", "_fn", "_names", "_max", "_prefix", "_held", "_readers", "_swallow", "_prev",
        "_break", "_busy",
    )

    def __init__(self, forms: Iterable[str], max_chars: int = 1024) -> None:
        watched = set(forms)
        unknown = watched - set(FORMS)
        if unknown:
            raise ValueError(f"unknown text tool-call forms {sorted(unknown)}; known: {list(FORMS)}")
        self._markers = tuple(
            (start, end, kept) for start, end, parsers in MARKERS if (kept := tuple(p for p in parsers if p[0] in watched))
        )
        if "mistral" in watched:
            self._markers += ((MISTRAL, None, ()),)
        self._json = "llama3_json" in watched
        self._pythonic = bool(watched & {"pythonic", "llama4_pythonic"})
        self._fn = "functions" in watched
        chars = {m[0][0] for m in self._markers} | ({"{", "["} if self._json else set()) | ({"["} if self._pythonic else set())
        self._chars = "".join(sorted(chars))
        self._names: tuple[str, ...] = ()
        self._max = max_chars
        self._prefix = ""  # a possible start, not yet decided
        self._held = ""  # the open candidate's text
        self._readers: list[Reader] = []
        self._swallow: str | None = None  # dropping a too-long form up to this end marker ("": to the end)
        self._prev = ""  # the last char read before what is being read now (does a word start here?)
        self._break = False  # a word break came while a word's start was held
        self._busy = False  # something is held: no hot path

    def add_name(self, name: str) -> None:
        """A tool call the reply sent as ``tool_calls``: ``NAME(...)`` written as text is
        that call again (watched with the ``functions`` form)."""
        if self._fn and name and name not in self._names:
            self._names += (name,)

    def word_break(self) -> None:
        """The speech is cut by something else (a tool call, thinking): what follows
        starts a word (``functions.`` there is the form, a known tool's name its echo)."""
        if self._readers:
            return
        if not self._prefix:
            self._prev = ""
        elif self._prefix[0] not in "<[{":
            self._break = self._busy = True  # the held start of a word cannot go on past it

    def plain(self, text: str) -> bool:
        """Whether ``text`` (not empty) holds no start of a watched form and nothing is
        held: :meth:`feed` would give it back as it is (and it is now read)."""
        if self._busy or "<" in text or "[" in text or "{" in text:
            return False
        if self._fn:
            if PREFIX in text or self._names:
                return False
            if text.endswith(_PREFIX_STARTS):  # "of" ends with the start of "functions." but does not start it
                j = text.rfind("f")
                c = text[j - 1] if j else self._prev
                if not (c == "_" or (c < "\u2e80" and c.isalnum())):
                    return False
            self._prev = text[-1:] or self._prev
        return True

    def feed(self, text: str) -> list[str | TextCall]:
        """A piece of speech in; speech and calls out."""
        if text and self.plain(text):
            return [text]  # the hot path: no start of a form in it
        out: list[str | TextCall] = []
        self._run(text, out)
        self._settle()
        return out

    def close(self) -> list[str | TextCall]:
        """The end of the content: an open marker form is read as it stands, an open
        ambiguous candidate and a held prefix are speech."""
        out: list[str | TextCall] = []
        while self._readers or self._prefix:
            if not self._readers:
                self._say(out, self._prefix)
                self._prefix = ""
                break
            total, readers = self._held, self._readers
            self._readers, self._held = [], ""
            rest = self._closed(readers, total, out)
            self._run(rest, out)
        self._swallow = None
        self._settle()
        return out

    def _settle(self) -> None:
        """Note whether anything is held (the hot path needs nothing held)."""
        self._busy = bool(self._readers or self._prefix or self._swallow is not None or self._break)

    # -- internals -------------------------------------------------------------

    def _run(self, data: str, out: list[str | TextCall]) -> None:
        while data:
            if self._swallow is not None:
                data = self._swallowed(data)
            elif self._readers:
                data = self._advance(data, out)
            else:
                data = self._outside(data, out)

    def _outside(self, data: str, out: list[str | TextCall]) -> str:
        """Speech up to the next possible start; the rest to read on."""
        if self._break:
            self._break = False
            if self._prefix:
                self._say(out, self._prefix)
                self._prefix = ""
            self._prev = ""
        data, self._prefix = self._prefix + data, ""
        i = self._candidate(data)
        if i < 0:
            keep = self._word_tail(data)
            if len(data) > keep:
                self._say(out, data[: len(data) - keep])
            self._prefix = data[len(data) - keep:]
            return ""
        if i:
            self._say(out, data[:i])
        rest = data[i:]
        readers = self._start(rest)
        if readers is _WAIT:
            self._prefix = rest
            return ""
        if not readers:
            self._say(out, rest[0])
            return rest[1:]
        self._readers = readers
        return rest

    def _say(self, out: list[str | TextCall], speech: str) -> None:
        out.append(speech)
        self._prev = speech[-1:] or self._prev

    def _word_start(self, data: str, i: int) -> bool:
        """Whether ``data[i]`` begins a word (see :func:`_is_word`)."""
        return not _is_word(data[i - 1] if i else self._prev)

    def _candidate(self, data: str) -> int:
        """The index of the first possible start in ``data``, or -1."""
        found = [i for c in self._chars if (i := data.find(c)) >= 0]
        if self._fn:
            for word in (PREFIX, *self._names):
                i = data.find(word)
                while i >= 0 and not self._word_start(data, i):
                    i = data.find(word, i + 1)
                if i >= 0:
                    found.append(i)
        return min(found, default=-1)

    def _word_tail(self, data: str) -> int:
        """How many chars at the end of ``data`` could begin a watched word."""
        if not self._fn:
            return 0
        keep = [k for word in (PREFIX, *self._names) if (k := _tail(data, word)) and self._word_start(data, len(data) - k)]
        return max(keep, default=0)

    def _start(self, rest: str) -> list[Reader]:
        """The readers that may read a form from ``rest[0]``; :data:`_WAIT` while a
        marker or word may still begin there (``[`` may be ``[TOOL_CALLS]``: the
        marker is waited for before ``[`` is tried as a list)."""
        wait = False
        for start, end, parsers in self._markers:
            if rest.startswith(start):
                return [MistralReader() if start == MISTRAL else TagReader(start, end, parsers)]
            wait = wait or (len(rest) < len(start) and start.startswith(rest))
        readers: list[Reader] = []
        c = rest[0]
        if c in "{[" and self._json:
            readers.append(JsonCallReader(c))
        if c == "[" and self._pythonic:
            readers.append(PythonicReader())
        if self._fn:
            wait = self._words(rest, readers) or wait
        return _WAIT if wait else readers

    def _words(self, rest: str, readers: list[Reader]) -> bool:
        """Add the readers of ``functions.`` and of known tool names at ``rest``;
        whether one of those words may still begin there."""
        wait = False
        for word in (PREFIX, *self._names):
            if rest.startswith(word):
                readers.append(FunctionsReader(None if word is PREFIX else word))
            wait = wait or (len(rest) < len(word) and word.startswith(rest))
        return wait

    def _advance(self, data: str, out: list[str | TextCall]) -> str:
        """The open candidate reads on; the text after it, when it ended."""
        total = self._held + data
        alive: list[Reader] = []
        for r in self._readers:
            end = r.feed(total)
            if end >= 0:
                return self._done(r, total, end, out)
            if end == NEED:
                alive.append(r)
        if alive and alive[0].unambiguous:
            if len(total) <= MAX_FORM_CHARS:
                self._readers, self._held = alive, total
            else:  # too long to read: drop the rest of the form
                end_marker = getattr(alive[0], "_end", None)
                self._readers, self._held, self._swallow = [], "", end_marker or ""
            return ""
        if alive and len(total) <= self._max:
            self._readers, self._held = alive, total
            return ""
        self._readers, self._held = [], ""
        self._say(out, total[0])  # not a form after all: its first char is speech, the rest is read again
        return total[1:]

    def _done(self, r: Reader, total: str, end: int, out: list[str | TextCall]) -> str:
        raw = total[:end]
        out += [TextCall(r.form, name, args, raw) for name, args in r.calls]
        self._prev = raw[-1:] or self._prev
        self._readers, self._held = [], ""
        return total[end:]

    def _closed(self, readers: list[Reader], total: str, out: list[str | TextCall]) -> str:
        """The content ended with a candidate open: what its readers make of it."""
        for r in readers:
            end = r.close(total)
            if end >= 0:
                return self._done(r, total, end, out)
        self._say(out, total[0])
        return total[1:]

    def _swallowed(self, data: str) -> str:
        """Drop a too-long form up to its end marker; the text after it."""
        marker = self._swallow or ""
        data = self._held + data
        i = data.find(marker) if marker else -1
        if i < 0:
            keep = _tail(data, marker) if marker else 0
            self._held = data[len(data) - keep:] if keep else ""
            return ""
        self._swallow, self._held = None, ""
        return data[i + len(marker):]


def _tail(text: str, word: str) -> int:
    """How many chars at the end of ``text`` are a proper prefix of ``word``."""
    j = text.rfind(word[0], max(0, len(text) - len(word) + 1))
    while j >= 0:
        if word.startswith(text[j:]):
            return len(text) - j
        j = text.rfind(word[0], max(0, len(text) - len(word) + 1), j)
    return 0


def _is_word(c: str) -> bool:
    """A char a word goes on with: ``_``, or a letter or digit below U+2E80 (the
    scripts written with spaces; CJK, kana, Hangul and full-width forms are not,
    so ``再见functions.end_call()`` is the form)."""
    return c == "_" or (c < "\u2e80" and c.isalnum())
