"""Text kept up to a limit (sans-IO): what a reply said, for the record, never more.

The stream itself is never cut; only what is stored of it is.
"""

from __future__ import annotations

__all__ = ["CappedText"]


class CappedText:
    """Append pieces; :meth:`text` gives the first ``limit`` chars and a mark saying
    how many more there were (``…[+1234 chars]``)."""

    __slots__ = ("limit", "_parts", "_size", "dropped")

    def __init__(self, limit: int = 1 << 30) -> None:
        self.limit = limit
        self._parts: list[str] = []
        self._size = 0
        self.dropped = 0

    def append(self, piece: str) -> None:
        """Add ``piece``; past ``limit`` chars only its length is counted (in ``dropped``)."""
        room = self.limit - self._size
        if room >= len(piece):
            self._parts.append(piece)
            self._size += len(piece)
        else:
            if room > 0:
                self._parts.append(piece[:room])
                self._size += room
            self.dropped += len(piece) - max(room, 0)

    def text(self) -> str:
        """What was kept, with ``…[+N chars]`` when ``N`` chars were dropped."""
        joined = "".join(self._parts)
        return joined + f"…[+{self.dropped} chars]" if self.dropped else joined

    def __len__(self) -> int:
        return self._size + self.dropped
