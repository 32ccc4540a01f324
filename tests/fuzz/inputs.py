"""What the fuzz targets make of their input bytes: a reader of choices, the text
vocabulary (normal text, other scripts, ``<``, pieces of the IMS commands) and the
split points, all derived from the input itself so that a failing input replays."""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

# Text pieces the parser and the inspector are fed: plain words in several scripts,
# markup that is no command, and every part of the two IMS commands.
TOKENS: tuple[str, ...] = (
    "Hello ", "你好，", "再见！", "Grüße ", "مرحبا ", "こんにちは", "😀", "é", "\u3000", " ", "\n", "\r\n", "\t",
    "<", "<<", ">", "/", "/>", "=", '"', "'", "\u201c", "\u201d", "\u2018", "\u2019", ",", "&", "&amp;", "&lt;",
    "&#x4F60;", "&#22909;", "&bogus;", "<b>", "</b>", "1<2", "x", "\\", "\x00", "\ud83d", "\ufffd",
    "<imsagent_hangup", "<IMSAGENT_HANGUP", "<imsagent_transfer_call", "<Imsagent_Transfer_Call", "<imsagent_",
    "<ims", "<imsagent_hang", "imsagent_hangup", "hangup", "_call", "transfer", "</imsagent_hangup>",
    "</imsagent_transfer_call>", "</imsagent_", "</", "</IMSAGENT_HANGUP>",
    " endword=", " EndWord = ", '"Goodbye!"', "'再见'", "\u201c感谢来电\u201d", "bye", " callee=", '"1001"', "123456",
    "+8657188", '"sip:agent@pbx"', " caller=111111,", " msg=", '"转接中"', " err_msg=", '"Sorry, busy."',
    " outcome=lead", '"x > y"', " a=", "=\"", "\"/>", "\"></imsagent_hangup>", "\"/><imsagent_hangup endword=\"",
    '<imsagent_hangup endword="Bye"/>', '<imsagent_transfer_call callee="1001" msg="转接"/>',
    "<end", "<end_call", "<END ", "end", "_",
)
# Single characters, so that any text can appear between the tokens.
CHARS = "abimsagentuhplcr_<>/=\"' ,\n\r&;#xX0123456789+@:你好“”‘’\u3000😀"
VOCAB: tuple[str, ...] = TOKENS + tuple(CHARS)


class Reader:
    """Choices read from the fuzzer's bytes, one byte each; zeros once they run out
    (so every input, even empty, is a valid choice of everything)."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def pick(self, options: Sequence[T]) -> T:
        return options[self.byte() % len(options)]

    def flag(self) -> bool:
        return self.byte() & 1 == 1

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += len(chunk)
        return chunk

    def rest(self) -> bytes:
        return self.take(len(self.data))

    def text(self, max_tokens: int) -> str:
        """Text of up to ``max_tokens`` vocabulary pieces."""
        return text_of(self.take(self.byte() % (max_tokens + 1)))


def text_of(data: bytes) -> str:
    """Each byte one piece of :data:`VOCAB`."""
    return "".join([VOCAB[b % len(VOCAB)] for b in data])


def derived_cuts(data: bytes, length: int, most: int = 12) -> list[int]:
    """Split points in ``range(length + 1)``, chosen from a hash of ``data``."""
    rng = random.Random(zlib.crc32(data))
    return sorted({rng.randrange(length + 1) for _ in range(rng.randrange(most + 1))})


def split(seq: Any, cuts: Iterable[int]) -> list[Any]:
    """``seq`` (str or bytes) cut at ``cuts`` (sorted), empty pieces included."""
    out = []
    start = 0
    for cut in cuts:
        out.append(seq[start:cut])
        start = cut
    out.append(seq[start:])
    return out
