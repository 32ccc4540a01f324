"""The text control-command parser (sans-IO).

Finds the IMS text commands (``<imsagent_hangup endword="..."/>``,
``<imsagent_transfer_call caller=.., callee=.., err_msg=.., msg=../>``; syntax from
the Alibaba Cloud IMS "automatic hang-up and transfer" doc) in a stream of text
pieces, however the pieces are split.

``CommandParser.feed(text)`` returns a list of events, in order:

* ``str``: text that cannot be part of a command, to pass on now;
* :class:`ParsedTag`: a complete command tag;
* :class:`UnterminatedTag` (from :meth:`CommandParser.close` only): a command that
  was opened but never closed before the end of the text.

Only a suffix that could still become a configured tag is held back (``<``,
``<ims``, an open tag), and never more than ``max_command_chars`` characters: past
that the held text is released as text. The concatenated output for any input is
the same however the input was split.

Leniency, because real models and the IMS doc's own examples need it: attribute
values in double, single or curly quotes, or bare (``caller=111111``); attributes
separated by spaces and/or commas; ``/>``, ``>`` and ``></tag>`` endings; XML/HTML
entities and numeric character references decoded; tag and attribute names matched
case-insensitively (attribute names are returned lower-cased); unknown attributes
kept.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["CommandParser", "ParsedTag", "ParserEvent", "UnterminatedTag", "parse_attributes"]

# Quote pairs a value may be wrapped in (ASCII, and the curly quotes models emit in
# Chinese text).
_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019"}
_DELIMS = frozenset(" \t\r\n\f\v/>,\u3000")

_ATTR = re.compile(
    r"""([^\s,=/"'<>\u201c\u201d\u2018\u2019]+)\s*=\s*
        (?:"([^"]*)"?|'([^']*)'?|\u201c([^\u201d]*)\u201d?|\u2018([^\u2019]*)\u2019?|([^\s,]*))""",
    re.X,
)

_OUTSIDE, _NAME, _TAG, _CLOSE = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class ParsedTag:
    """A complete command tag.

    ``tag``: the configured tag name it matched; ``attrs``: attribute names
    lower-cased, values entity-decoded; ``raw``: the tag exactly as written.
    """

    tag: str
    attrs: dict[str, str] = field(hash=False)
    raw: str


@dataclass(frozen=True, slots=True)
class UnterminatedTag:
    """A command opened (``<tag`` and a delimiter) but not closed by end of text."""

    tag: str
    raw: str


ParserEvent = str | ParsedTag | UnterminatedTag


def parse_attributes(text: str) -> dict[str, str]:
    """Attributes of the text between a tag's name and its closing ``>``/``/>``.

    Returns ``{lower-cased name: entity-decoded value}``; tokens without ``=`` are
    ignored.
    """
    attrs: dict[str, str] = {}
    for m in _ATTR.finditer(text):
        name = m.group(1).lower()
        value = next((g for g in m.groups()[1:] if g is not None), "")
        attrs[name] = html.unescape(value) if "&" in value else value
    return attrs


class CommandParser:
    """Incremental command finder; see the module docstring.

    ``tags``: the configured tag names (e.g. ``imsagent_hangup``,
    ``imsagent_transfer_call``). ``max_command_chars``: the most characters held
    back at once (chars, default 1024).
    """

    __slots__ = ("_tags", "_lower_tags", "_max", "_mode", "_buf", "_tag", "_quote", "_eq", "quiet")

    def __init__(self, tags: Iterable[str], max_command_chars: int = 1024) -> None:
        self._tags = {t.lower(): t for t in tags}
        if not self._tags:
            raise ValueError("CommandParser needs at least one tag name")
        self._lower_tags = tuple(self._tags)
        self._max = max_command_chars
        self._mode = _OUTSIDE
        self._buf = ""
        self._tag = ""
        self._quote: str | None = None
        self._eq = False
        self.quiet = True  # nothing held: text without "<" comes back as it is

    @property
    def held(self) -> str:
        """The text held back right now (a possible command prefix)."""
        return self._buf

    def feed(self, text: str) -> list[ParserEvent]:
        """Consume ``text``; return the events it completes."""
        if self._mode == _OUTSIDE and "<" not in text:
            return [text] if text else []
        out: list[ParserEvent] = []
        self._run(text, out)
        self.quiet = self._mode == _OUTSIDE
        return out

    def close(self) -> list[ParserEvent]:
        """End of text: release what is held. A half-written command comes back as
        :class:`UnterminatedTag` (never as text, so it is not spoken); a partial
        closing tag ``</imsagent_`` is dropped; a mere prefix (``<ims``) is text."""
        mode, buf, tag = self._mode, self._buf, self._tag
        self._reset()
        self.quiet = True
        if mode == _NAME:
            name = buf[1:].lower()
            if name in self._tags:
                return [UnterminatedTag(self._tags[name], buf)]
            return [buf]
        if mode == _TAG:
            return [UnterminatedTag(tag, buf)]
        return []

    # -- internals -------------------------------------------------------------

    def _reset(self) -> None:
        self._mode = _OUTSIDE
        self._buf = ""
        self._tag = ""
        self._quote = None
        self._eq = False

    def _release(self, out: list[ParserEvent], rest: str) -> str:
        """Held text turned out not to be a command: its first char is text, the
        remainder is scanned again (it may hold the start of a real command)."""
        buf = self._buf
        self._reset()
        out.append(buf[0])
        return buf[1:] + rest

    def _run(self, text: str, out: list[ParserEvent]) -> None:
        i, n = 0, len(text)
        while i < n:
            mode = self._mode
            if mode == _OUTSIDE:
                j = text.find("<", i)
                if j < 0:
                    out.append(text[i:])
                    return
                if j > i:
                    out.append(text[i:j])
                self._mode, self._buf = _NAME, "<"
                i = j + 1
            elif mode == _NAME:
                c = text[i]
                name = self._buf[1:].lower()
                if c in _DELIMS and name in self._tags:
                    self._mode, self._tag = _TAG, self._tags[name]
                    continue  # the delimiter is read in _TAG mode
                cand = name + c.lower()
                if any(t.startswith(cand) for t in self._lower_tags):
                    self._buf += c
                    i += 1
                else:
                    text, i, n = self._restart(out, text, i)
            elif mode == _TAG:
                i = self._scan_tag(text, i, out)
                if self._mode == _TAG and len(self._buf) > self._max:
                    text, i, n = self._restart(out, text, i)
            else:  # _CLOSE: an optional </tag> right after a `>`-terminated command
                expected = "</" + self._tag.lower() + ">"
                cand = (self._buf + text[i]).lower()
                if expected.startswith(cand):
                    self._buf += text[i]
                    i += 1
                    if len(self._buf) == len(expected):
                        self._reset()
                elif not self._buf:
                    self._reset()
                else:
                    buf = self._buf
                    self._reset()
                    text, i, n = buf + text[i:], 0, len(buf) + n - i
        return

    def _restart(self, out: list[ParserEvent], text: str, i: int) -> tuple[str, int, int]:
        rest = self._release(out, text[i:])
        return rest, 0, len(rest)

    def _scan_tag(self, text: str, i: int, out: list[ParserEvent]) -> int:
        """Read tag characters from ``text[i:]`` until the tag closes or text ends."""
        n = len(text)
        start = i
        quote, eq = self._quote, self._eq
        limit = self._max - len(self._buf)
        while i < n and i - start <= limit:
            c = text[i]
            i += 1
            if quote is not None:
                if c == quote:
                    quote = None
            elif c == ">":
                raw = self._buf + text[start:i]
                tag = self._tag
                inner = raw[1 + len(tag) : -1]
                self._reset()
                if inner.endswith("/"):
                    inner = inner[:-1]
                else:
                    self._mode, self._tag = _CLOSE, tag
                out.append(ParsedTag(tag, parse_attributes(inner), raw))
                return i
            elif c == "=":
                eq = True
            elif eq and c in _QUOTES:
                quote, eq = _QUOTES[c], False
            elif not c.isspace():
                eq = False
        self._buf += text[start:i]
        self._quote, self._eq = quote, eq
        return i
