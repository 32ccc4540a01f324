"""Dead air inside a reply: the longest silence between two speakable pieces.

A turn's ``speech_gap_max_ms`` is the largest interval between two consecutive
speakable pieces the runtime received, after the first: the wait for the first
piece is the time to first token, not a gap. The caller feeds the time each
speakable piece went out (:meth:`SpeechGaps.piece`, seconds of one monotonic
clock, e.g. ``loop.time()``); a piece is what the runtime may speak (text in
``delta.content`` after thinking and commands are taken out, or a front door's
speech frame); whitespace-only or empty pieces are the caller's to skip.

``None`` means no piece went out; ``0.0`` that exactly one did.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["SpeechGaps", "max_gap_ms"]


class SpeechGaps:
    """The running maximum gap of one reply (O(1) per piece, no list kept).

    ``max_ms``: the longest gap so far (ms), ``None`` before the first piece;
    ``pieces``: how many were fed.
    """

    __slots__ = ("_last", "max_ms", "pieces")

    def __init__(self) -> None:
        self._last: float | None = None
        self.max_ms: float | None = None
        self.pieces = 0

    def piece(self, at_s: float) -> None:
        """A speakable piece went out at ``at_s`` (seconds, monotonic). A time
        earlier than the last one (a clock that is not monotonic) counts as no gap."""
        self.pieces += 1
        if self._last is None:
            self.max_ms = 0.0
        else:
            gap_ms = (at_s - self._last) * 1000.0
            if self.max_ms is None or gap_ms > self.max_ms:
                self.max_ms = gap_ms
        if self._last is None or at_s > self._last:
            self._last = at_s


def max_gap_ms(times_s: Iterable[float]) -> float | None:
    """The longest gap (ms) between consecutive times of ``times_s`` (seconds, in the
    order the pieces went out); ``None`` for no time, ``0.0`` for one."""
    gaps = SpeechGaps()
    for at in times_s:
        gaps.piece(at)
    return gaps.max_ms
