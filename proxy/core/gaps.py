"""Dead air inside a reply: the longest silence between two speakable pieces.

A turn's ``speech_gap_max_ms`` is the largest interval between two consecutive
speakable pieces the runtime received, after the first: the wait for the first
piece is the time to first token, not a gap. The caller feeds the time each
speakable piece went out (:meth:`SpeechGaps.piece`, seconds of one monotonic
clock, e.g. ``time.monotonic()``); a piece is what the runtime may speak (text in
``delta.content`` after thinking and commands are taken out, or a front door's
speech frame); whitespace-only or empty pieces are the caller's to skip.

``None`` means no piece went out; ``0.0`` that exactly one did.
"""

from __future__ import annotations

__all__ = ["SpeechGaps"]


class SpeechGaps:
    """The running maximum gap of one reply (O(1) per piece, no list kept).

    ``max_ms``: the longest gap so far (ms), ``None`` before the first piece.
    """

    __slots__ = ("_last", "max_ms")

    def __init__(self) -> None:
        self._last: float | None = None
        self.max_ms: float | None = None

    def piece(self, at_s: float) -> None:
        """A speakable piece went out at ``at_s`` (seconds of a monotonic clock)."""
        last, self._last = self._last, at_s
        gap_ms = 0.0 if last is None else (at_s - last) * 1000.0
        if self.max_ms is None or gap_ms > self.max_ms:
            self.max_ms = gap_ms
