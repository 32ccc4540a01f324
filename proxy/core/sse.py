"""Incremental Server-Sent Events decoding and encoding (sans-IO).

Format: the WHATWG HTML "Server-sent events" section, as the OpenAI API uses it for
``stream: true`` (``data: {json}`` events separated by a blank line, ``data: [DONE]``
last). Lines may end in CRLF, LF or CR; ``:`` lines are comments; several ``data:``
lines join with ``\\n``.

:class:`SSEDecoder` is fed raw bytes (:meth:`~SSEDecoder.feed`, then :meth:`~SSEDecoder.close`) as they arrive (any split, including inside a
UTF-8 character or between CR and LF) and returns whole :class:`SSEEvent` objects.
Each event keeps its exact ``raw`` bytes so a relay can forward it untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DONE", "SSEDecodeError", "SSEDecoder", "SSEEvent", "encode_data", "encode_event"]

_EOL = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One event block.

    ``raw``: the block's bytes exactly as received, terminating blank line included.
    ``data``: the joined ``data:`` lines decoded as UTF-8, or ``None`` when the block
    has no data field (a comment, a keep-alive, a stray blank line).
    """

    raw: bytes
    data: str | None = None
    event: str | None = None
    id: str | None = None
    retry: int | None = None


class SSEDecodeError(ValueError):
    """An event grew past ``max_event_bytes`` without a terminating blank line."""


class SSEDecoder:
    """Feed bytes with :meth:`feed`, get finished events; :meth:`close` at end of stream.

    ``max_event_bytes`` bounds the memory one event may take (default 1 MiB); past it
    :class:`SSEDecodeError` is raised.
    """

    __slots__ = ("_buf", "_pos", "_data", "_event", "_id", "_retry", "_max", "_first", "_head")

    def __init__(self, max_event_bytes: int = 1 << 20) -> None:
        self._buf = b""  # raw bytes of the event in progress
        self._pos = 0  # how much of _buf has been read into fields already
        self._data: list[bytes] = []
        self._event: str | None = None
        self._id: str | None = None  # persists across events, as the spec says
        self._retry: int | None = None
        self._max = max_event_bytes
        self._first = True  # no byte read yet past a possible BOM
        self._head = b""  # the stream's first bytes while they may still be a split BOM

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume ``chunk``; return every event it completed (possibly none).

        Raises :class:`SSEDecodeError` when one event exceeds ``max_event_bytes``.
        """
        if self._first:
            chunk = self._skip_bom(chunk)
        if not self._buf and chunk.endswith(b"\n\n") and b"\r" not in chunk:
            fast = self._whole_data_events(chunk)
            if fast is not None:
                return fast
        buf = self._buf + chunk if self._buf else chunk
        events: list[SSEEvent] = []
        pos = self._pos
        start = 0
        search = _EOL.search
        while True:
            m = search(buf, pos)
            if m is None:
                break
            end = m.end()
            if end == len(buf) and buf[end - 1] == 13:
                break  # a CR at the very end may be the first half of CRLF: wait
            if m.start() > pos:
                self._field(buf[pos:m.start()])
                pos = end
            else:
                pos = end
                events.append(self._dispatch(buf[start:pos]))
                start = pos
        self._buf = buf[start:] if start else buf
        self._pos = pos - start
        if len(self._buf) > self._max:
            raise SSEDecodeError(f"SSE event larger than {self._max} bytes")
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream: finish a last line or event that had no terminator."""
        buf, pos = self._buf or self._head, self._pos  # _head: the stream was a BOM's first bytes only
        self._buf, self._pos, self._head = b"", 0, b""
        if not buf:
            return []
        rest = buf[pos:].rstrip(b"\r")
        if rest:
            self._field(rest)
        return [self._dispatch(buf)]

    # -- internals -------------------------------------------------------------

    def _skip_bom(self, chunk: bytes) -> bytes:
        """The stream's first bytes without the UTF-8 BOM that may open it, even when
        the BOM comes split over reads (held back until it can be told apart)."""
        head = self._head + chunk
        if len(head) < 3 and _BOM.startswith(head):
            self._head = head
            return b""
        self._first, self._head = False, b""
        return head[3:] if head.startswith(_BOM) else head

    def _whole_data_events(self, chunk: bytes) -> list[SSEEvent] | None:
        """The common read, decoded without the line machinery: whole events of one
        ``data: `` line each (OpenAI's form). ``None`` when the read is anything else."""
        events = []
        start = 0
        end = len(chunk)
        last_id = self._id
        while start < end:
            stop = chunk.find(b"\n", start)
            if chunk[stop + 1 : stop + 2] != b"\n" or chunk[start : start + 6] != b"data: ":
                return None
            events.append(SSEEvent(chunk[start : stop + 2], chunk[start + 6 : stop].decode("utf-8", "replace"), None, last_id))
            start = stop + 2
        return events


    def _field(self, line: bytes) -> None:
        if line[:1] == b":":
            return  # comment
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\0" not in value:
                self._id = value.decode("utf-8", "replace")
        elif name == b"retry":
            if value.isdigit():
                self._retry = int(value)

    def _dispatch(self, raw: bytes) -> SSEEvent:
        data = self._data
        ev = SSEEvent(
            raw=raw,
            data=(data[0] if len(data) == 1 else b"\n".join(data)).decode("utf-8", "replace") if data else None,
            event=self._event,
            id=self._id,
            retry=self._retry,
        )
        self._data = []
        self._event = None
        self._retry = None
        return ev


def encode_data(data: str) -> bytes:
    """One ``data:`` event (multi-line data split over several ``data:`` lines)."""
    if "\n" in data or "\r" in data:
        lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        return ("".join(f"data: {line}\n" for line in lines) + "\n").encode()
    return b"data: " + data.encode() + b"\n\n"


def encode_event(data: str, *, event: str | None = None, id: str | None = None) -> bytes:
    """An event with optional ``event:`` and ``id:`` fields, in the aiohttp-sse wire format."""
    head = ""
    if id is not None:
        head += f"id: {id}\n"
    if event is not None:
        head += f"event: {event}\n"
    return head.encode() + encode_data(data)


DONE = b"data: [DONE]\n\n"
