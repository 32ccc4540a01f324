"""Forms between a start marker and an end marker no speech contains (``<tool_call>``
… ``</tool_call>``, DeepSeek's and Kimi's special tokens, ``<function=`` …
``</function>``), and markers that stand alone (``<|python_tag|>``, a stray end
marker): :class:`TagReader` reads them, :data:`MARKERS` says which form owns which."""

from __future__ import annotations

from collections.abc import Callable

from . import deepseek_v3, glm45, hermes, kimi_k2, qwen3_coder
from .reading import NEED, Call

__all__ = ["MARKERS", "Marker", "TagReader"]

Parse = Callable[[str], "list[Call] | None"]


def _one(parse_call: Callable[[str], Call | None]) -> Parse:
    def parse(body: str) -> list[Call] | None:
        call = parse_call(body)
        return [call] if call is not None else None

    return parse


def _bare_function(body: str) -> list[Call] | None:
    """``<function=NAME>…`` without ``<tool_call>``: the body is ``NAME>…``."""
    name, sep, rest = body.partition(">")
    call = qwen3_coder.parse_function(name, rest) if sep and "\n" not in name else None
    return [call] if call is not None else None


# (start, end or None for a marker alone, ((form, body parser), ...)), the parsers
# tried in order; a form not in a profile's text_tool_calls drops out.
Marker = tuple[str, str | None, tuple[tuple[str, Parse | None], ...]]
MARKERS: tuple[Marker, ...] = (
    (hermes.START, "</tool_call>", (("hermes", hermes.parse), ("qwen3_coder", qwen3_coder.parse), ("glm45", glm45.parse))),
    ("</tool_call>", None, (("hermes", None), ("qwen3_coder", None), ("glm45", None))),
    (qwen3_coder.START, "</function>", (("qwen3_coder", _bare_function),)),
    (deepseek_v3.START, deepseek_v3.END, (("deepseek_v3", deepseek_v3.parse),)),
    (deepseek_v3.CALL_START, deepseek_v3.CALL_END, (("deepseek_v3", _one(deepseek_v3.parse_call)),)),
    (deepseek_v3.END, None, (("deepseek_v3", None),)),
    (deepseek_v3.CALL_END, None, (("deepseek_v3", None),)),
    (kimi_k2.START, kimi_k2.END, (("kimi_k2", kimi_k2.parse),)),
    (kimi_k2.CALL_START, kimi_k2.CALL_END, (("kimi_k2", _one(kimi_k2.parse_call)),)),
    (kimi_k2.END, None, (("kimi_k2", None),)),
    (kimi_k2.CALL_END, None, (("kimi_k2", None),)),
    ("<|python_tag|>", None, (("llama3_json", None),)),
    ("<|python_start|>", None, (("llama4_pythonic", None),)),
    ("<|python_end|>", None, (("llama4_pythonic", None),)),
)


class TagReader:
    """One marker form; ``parsers``: the body parsers of the forms a profile watches,
    tried in order (the first that finds calls names the form)."""

    unambiguous = True
    __slots__ = ("form", "calls", "_start", "_end", "_parsers", "_searched")

    def __init__(self, start: str, end: str | None, parsers: tuple[tuple[str, Parse | None], ...]) -> None:
        self.form = parsers[0][0]
        self.calls: list[Call] = []
        self._start, self._end, self._parsers = start, end, parsers
        self._searched = len(start)

    def feed(self, total: str) -> int:
        """The index after the end marker, or :data:`NEED`."""
        if self._end is None:
            return len(self._start)
        i = total.find(self._end, max(len(self._start), self._searched - len(self._end) + 1))
        if i < 0:
            self._searched = len(total)
            return NEED
        self._read(total[len(self._start):i])
        return i + len(self._end)

    def close(self, total: str) -> int:
        """The content ended inside the form: what came is read (vLLM's hermes reads
        a call with no ``</tool_call>`` until the end); the whole is the form."""
        body = total[len(self._start):]
        end = self._end or ""
        for k in range(min(len(end) - 1, len(body)), 0, -1):
            if end.startswith(body[-k:]):
                body = body[:-k]
                break
        if self._end is not None:
            self._read(body)
        return len(total) if self._end is not None else len(self._start)

    def _read(self, body: str) -> None:
        for form, parse in self._parsers:
            calls = parse(body) if parse is not None else None
            if calls:
                self.form, self.calls = form, calls
                return
