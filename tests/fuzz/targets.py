"""The fuzz targets: one per incremental decoder of the sans-IO core.

Each target is a function of ``bytes`` that returns nothing and raises on a bug:
an :class:`AssertionError` when the decoder's answer depends on how its input was
split (whole, at split points derived from the input, one byte or char at a time,
with the ``close()`` at the end), or any exception the module does not
document. Documented ones are caught and checked: :class:`SSEDecodeError` (an
event past ``max_event_bytes``) and :class:`InvalidChunk` (a ``data:`` line that is
not JSON).

``TARGETS`` names them; ``seeds(name)`` gives each a starting corpus (the recorded
OpenAI streams and hand-written edge cases).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from proxy.core import json_codec
from proxy.core.inspector import InspectorSettings, InvalidChunk, ReplyInspector
from proxy.core.parser import CommandParser, ParsedTag, UnterminatedTag
from proxy.core.sse import SSEDecodeError, SSEDecoder, SSEEvent
from proxy.core.text_tools import FORMS
from proxy.core.tool_calls import ToolCall, ToolCallAssembler
from ..inspecting import close as ins_close, feed as ins_feed

from .inputs import Reader, derived_cuts, split, text_of

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "openai-streams"
BOM = b"\xef\xbb\xbf"

# -- SSE decoder ------------------------------------------------------------------

SSE_LIMITS = (1 << 20, 1 << 20, 1 << 20, 48)  # max_event_bytes, chosen by the first byte


def _sse_run(data: bytes, cuts: Any, limit: int) -> tuple[list[SSEEvent], bool]:
    """Events of ``data`` fed in pieces, and whether SSEDecodeError ended it."""
    dec = SSEDecoder(limit)
    events: list[SSEEvent] = []
    try:
        for piece in split(data, cuts):
            events += dec.feed(piece)
        events += dec.close()
    except SSEDecodeError:
        return events, True
    return events, False


def sse_target(data: bytes) -> None:
    """Whole, at derived splits, byte by byte: the same events (``raw`` adding up to
    the input). Under a small ``max_event_bytes`` a split run may stop with
    SSEDecodeError, only at an event that is really larger than the limit."""
    limit = SSE_LIMITS[data[0] % len(SSE_LIMITS)] if data else 1 << 20
    ref, _ = _sse_run(data, [], 1 << 30)
    assert b"".join(e.raw for e in ref) == (data[3:] if data.startswith(BOM) else data)
    for cuts in ([], derived_cuts(data, len(data)), range(1, len(data))):
        got, failed = _sse_run(data, cuts, limit)
        if failed:
            assert got == ref[: len(got)], "events before SSEDecodeError differ"
            assert any(len(e.raw) > limit for e in ref[len(got) :]), "SSEDecodeError without a large event"
        else:
            assert got == ref


# -- command parser ---------------------------------------------------------------

TAGS = ("imsagent_hangup", "imsagent_transfer_call")
PARSER_CONFIGS: tuple[tuple[tuple[str, ...], int], ...] = (
    (TAGS, 1024), (TAGS, 64), (TAGS, 40), (TAGS, 16), (("end", "end_call"), 16),
)


def _parse(pieces: list[str], tags: tuple[str, ...], limit: int) -> list[Any]:
    """Events of the pieces, adjacent text merged; checks what may be held back."""
    p = CommandParser(tags, limit)
    most = max(limit, 1 + max(map(len, tags)))  # a tag name being read is held whole, even past the limit
    events: list[Any] = []
    for piece in pieces:
        events += p.feed(piece)
        assert len(p.held) <= most, f"held {len(p.held)} chars > max_command_chars {limit}"
    events += p.close()
    merged: list[Any] = []
    for e in events:
        if isinstance(e, str) and merged and isinstance(merged[-1], str):
            merged[-1] += e
        elif e != "":
            merged.append(e)
    return merged


def parser_target(data: bytes) -> None:
    """Text made of vocabulary pieces: whole, at derived splits, char by char give
    the same events; nothing but consumed closing tags is lost."""
    r = Reader(data)
    tags, limit = r.pick(PARSER_CONFIGS)
    text = text_of(r.rest())
    whole = _parse([text], tags, limit)
    for pieces in (split(text, derived_cuts(data, len(text))), list(text)):
        assert _parse(pieces, tags, limit) == whole
    for i, e in enumerate(whole):
        assert type(e) in (str, ParsedTag) or (type(e) is UnterminatedTag and i == len(whole) - 1), e
        assert isinstance(e, str) or e.tag in tags
    assert _conserved(text, whole), "text lost or invented"


def _closing(text: str, pos: int, tag: str) -> int:
    """How much of ``text[pos:]`` the parser takes as the ``</tag>`` after a command
    closed by ``>``: all of it, or a prefix cut off by the end of the text."""
    expected = f"</{tag.lower()}>"
    got = text[pos : pos + len(expected)].lower()
    k = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), len(got))
    return k if k == len(expected) or pos + k == len(text) else 0


def _conserved(text: str, events: list[Any]) -> bool:
    """Text and commands' ``raw`` add up to the input, but for closing tags."""
    pos = 0
    for e in events:
        piece = e if isinstance(e, str) else e.raw
        if not text.startswith(piece, pos):
            return False
        pos += len(piece)
        if type(e) is ParsedTag and not e.raw.endswith("/>"):
            pos += _closing(text, pos, e.tag)
    return pos == len(text)


# -- tool-call assembler ----------------------------------------------------------

NAMES = ("end_call", "transfer_call", "lookup", "hangup", "")
ODD_VALUES: dict[str, tuple[Any, ...]] = {
    "index": (0, 1, 2, -1, None, "0", 1.5, True, 1 << 70),
    "id": ("call_a", "call_b", "", None, 7, ["call_a"], {"id": 1}),
    "type": ("function", None, 3),
    "name": ("end_call", "lookup", "", None, 5, ["x"]),
    "arguments": ('{"a": ', "1}", "", None, {"endword": "bye"}, ["x"], 3),
}


def _odd_entry(r: Reader) -> dict[str, Any]:
    """A ``tool_calls`` entry with any field missing or of an unexpected type."""
    entry: dict[str, Any] = {k: r.pick(ODD_VALUES[k]) for k in ("index", "id", "type") if r.byte() % 3}
    shape = r.byte() % 4
    if shape == 1:
        entry["function"] = r.pick((None, "end_call", 5, ["x"]))
    elif shape > 1:
        entry["function"] = {k: r.pick(ODD_VALUES[k]) for k in ("name", "arguments") if r.byte() % 3}
    return entry


def _odd_entries(r: Reader) -> None:
    """Any entries: never an exception; every call well-formed, by index."""
    asm = ToolCallAssembler()
    for _ in range(r.byte() % 12):
        assert isinstance(asm.feed(_odd_entry(r))[0], ToolCall)
    calls = asm.calls()
    assert [c.index for c in calls] == sorted(c.index for c in calls)
    for c in calls:
        assert isinstance(c.name, str) and isinstance(c.arguments, str), c
        assert c.id is None or isinstance(c.id, str), c


def _streamed(calls: list[ToolCall], cuts: Callable[[str], list[int]], indexed: bool) -> list[dict[str, Any]]:
    """The OpenAI form: a first entry with id and name, then argument pieces."""
    entries: list[dict[str, Any]] = []
    for c in calls:
        first, *rest = split(c.arguments, cuts(c.arguments))
        head = {"index": c.index} if indexed else {}
        entries.append({**head, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": first}})
        entries += [{**head, "function": {"arguments": piece}} for piece in rest]
    return entries


def _repeated(calls: list[ToolCall], r: Reader) -> list[dict[str, Any]]:
    """The IMS form: every chunk repeats a whole call (no index); calls first come in order."""
    order = list(range(len(calls)))
    for _ in range(r.byte() % 5):
        pos = 1 + r.byte() % len(order)
        order.insert(pos, order[r.byte() % pos])
    return [{"id": calls[i].id, "type": "function", "function": {"name": calls[i].name, "arguments": calls[i].arguments}} for i in order]


def _assembled(entries: list[dict[str, Any]]) -> list[ToolCall]:
    asm = ToolCallAssembler()
    for entry in entries:
        asm.feed(entry)
    return asm.calls()


def tool_calls_target(data: bytes) -> None:
    """Odd entries never raise; well-formed calls assemble to the same calls however
    their arguments are split, with or without ``index``, or repeated IMS-style."""
    r = Reader(data)
    if r.byte() % 3 == 0:
        _odd_entries(r)
        return
    calls = [ToolCall(i, f"call_{i}{r.pick(('', 'x', '我'))}", r.pick(NAMES), r.text(12)) for i in range(1 + r.byte() % 3)]
    indexed = r.flag()
    for cuts in (lambda s: [], lambda s: derived_cuts(data + s.encode("utf-8", "replace"), len(s)), lambda s: list(range(1, len(s)))):
        assert _assembled(_streamed(calls, cuts, indexed)) == calls
    assert _assembled(_repeated(calls, r)) == calls


# -- reply inspector --------------------------------------------------------------

MODES = ("strip", "passthrough", "tool_calls", "text")
FMAP = (("hangup", "end_call"), ("transfer", "transfer_call"))
ARGUMENTS = (
    '{"endword": "Bye"}', '{"callee": "1001", "msg": "转接中", "err_msg": "忙"}', '{"callee": "abc"}',
    "not json", "", "{}", '{"endword": "<imsagent_hangup/>"}', '{"callee": "+8657188", "caller": 1}',
)
GENERATED_ID = re.compile(rb'"call_[0-9a-f]{24}"')


def _settings(r: Reader) -> InspectorSettings:
    return InspectorSettings(
        output=r.pick(MODES),
        speak_closing=r.flag(),
        max_command_chars=r.pick((16, 64, 1024)),
        transfer_allow=r.pick(((), ("1001", "+86*"))),
        function_map=r.pick((InspectorSettings.function_map, FMAP)),
        spoken_rejections=r.byte() % 3,
        text_tool_calls=r.pick(((), FORMS)),
        thinking_open=r.byte() % 4 == 0,
        thinking=r.pick(("remove", "remove", "forward")),
    )


_HEAD = b'data: {"id":"chatcmpl-fuzz","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":'


def _chunk(delta: dict[str, Any], finish: str | None = None, ascii_only: bool = False) -> bytes:
    """One chunk of choice 0 (lone surrogates need ``ascii_only``: JSON escapes)."""
    tail = b',"finish_reason":' + (b'"%s"' % finish.encode() if finish else b"null") + b"}]}\n\n"
    return _HEAD + json.dumps(delta, ensure_ascii=ascii_only).encode() + tail


class _Reply:
    """One streamed reply of choice 0: content, tool-call entries at content offsets."""

    def __init__(self, r: Reader) -> None:
        self.text = r.text(20)
        entries = []
        for i in range(r.byte() % 3):
            args = r.pick(ARGUMENTS)
            first, *rest = split(args, derived_cuts(r.take(2), len(args), 3))
            entries.append({"index": i, "id": f"call_m{i}", "type": "function", "function": {"name": r.pick(NAMES), "arguments": first}})
            entries += [{"index": i, "function": {"arguments": piece}} for piece in rest]
        offsets = sorted(r.byte() % (len(self.text) + 1) for _ in entries)
        self.tools = list(zip(offsets, entries))
        self.finish = r.pick(("stop", "tool_calls", "length", None))
        self.done = r.flag()
        self.ascii = r.flag() or any("\ud800" <= ch <= "\udfff" for ch in self.text)

    def stream(self, cuts: list[int]) -> bytes:
        """The SSE body, the content cut at ``cuts`` (and at every tool entry)."""
        points = sorted({0, len(self.text), *cuts, *(off for off, _ in self.tools)})
        out = [_chunk({"role": "assistant", "content": ""})]
        for a, b in zip(points, points[1:] + [None]):
            out += [_chunk({"tool_calls": [e]}, ascii_only=self.ascii) for off, e in self.tools if off == a]
            if b is not None and b > a:
                out.append(_chunk({"content": self.text[a:b]}, ascii_only=self.ascii))
        if self.finish is not None:
            out.append(_chunk({}, self.finish) + b": keep-alive\n\n")
        out.append(b'data: {"id":"chatcmpl-fuzz","choices":[],"usage":{"total_tokens":3}}\n\n')
        return b"".join(out) + (b"data: [DONE]\n\n" if self.done else b"")


def _inspect(stream: bytes, settings: InspectorSettings, cuts: Any) -> tuple[bytes, list[Any], ReplyInspector]:
    """The stream through the SSE decoder and the inspector, cut at ``cuts``."""
    ins = ReplyInspector(settings)
    dec = SSEDecoder()
    out: list[bytes] = []
    cmds: list[Any] = []
    for piece in split(stream, cuts):
        for ev in dec.feed(piece):
            o, c = ins_feed(ins, ev)
            out.append(o)
            cmds += c
    for ev in dec.close():
        o, c = ins_feed(ins, ev)
        out.append(o)
        cmds += c
    o, c = ins_close(ins)
    return b"".join(out) + o, cmds + c, ins


def _sent(out: bytes) -> tuple[str, list[Any], list[Any]]:
    """What choice 0 sent: its content, its tool-call entries (callgate's own ids
    masked), its finish reasons."""
    text, tools, finish = "", [], []
    for block in GENERATED_ID.sub(b'"call_new"', out).split(b"\n\n"):
        if not block.startswith(b"data: {"):
            continue  # a comment, [DONE], the end
        for ch in json_codec.loads(block[6:])["choices"]:
            text += ch["delta"].get("content") or ""
            tools += ch["delta"].get("tool_calls") or []
            finish += [ch["finish_reason"]] if ch.get("finish_reason") else []
    return text, tools, finish


def _observed(stream: bytes, settings: InspectorSettings, cuts: Any) -> tuple[Any, ...]:
    out, cmds, ins = _inspect(stream, settings, cuts)
    sent = _sent(out)
    # forwarded thinking (<think>, a stray </think>; passthrough forwards it always) is sent but is no speech
    forwarded = settings.thinking == "forward" or settings.output == "passthrough"
    assert forwarded or ins.spoken_text == sent[0], "spoken_text is not the content sent"
    assert settings.output != "passthrough" or out == stream, "passthrough changed the stream"
    return sent, cmds, ins.spoken_text, ins.raw_text, ins.tool_calls, ins.saw_done, ins.saw_finish


def _structured(r: Reader, data: bytes) -> None:
    """A reply with commands split anywhere: the same whatever the content split."""
    settings = _settings(r)
    reply = _Reply(r)
    base = reply.stream([])
    want = _observed(base, settings, [])
    assert want[3] == reply.text, "raw_text is not the content received"
    n = len(reply.text)
    every = list(range(n + 1)) if n <= 40 else derived_cuts(data[::-1], n, n // 3)  # char by char where cheap
    for cuts in (derived_cuts(data, n), every):
        stream = reply.stream(cuts)
        assert _observed(stream, settings, derived_cuts(data, len(stream))) == want


# Odd values for the chunk fields an upstream could get wrong.
ODD_CONTENT = ("<imsagent_hangup", ' endword="bye"/>', "<ims", "text", "", None, 5, ["a"], {"text": "x"}, True)
ODD_TOOLS = (None, [], "x", {"index": 0}, [1, None, "a"])
ODD_FINISH = ("stop", "tool_calls", "length", None, None, 5, ["stop"], {})
ODD_INDEX = (0, 0, 0, 1, None, "0", -1, 1 << 70, True, 2.0)


def _odd_choice(r: Reader) -> Any:
    shape = r.byte() % 8
    if shape == 0:
        return r.pick((None, 5, "x", []))
    delta: Any = {"content": r.pick(ODD_CONTENT)} if r.byte() % 4 else r.pick((None, "x", [], 3))
    if isinstance(delta, dict) and r.byte() % 3 == 0:
        delta["tool_calls"] = [_odd_entry(r)] if r.flag() else r.pick(ODD_TOOLS)
    choice = {"delta": delta, "finish_reason": r.pick(ODD_FINISH)}
    if r.byte() % 4:
        choice["index"] = r.pick(ODD_INDEX)
    return choice


def _odd_chunk(r: Reader) -> bytes:
    choices = [_odd_choice(r) for _ in range(r.byte() % 3)]
    shape = r.byte() % 10
    obj: Any = {"id": "c", "choices": choices}
    if shape == 0:
        obj = r.pick((choices, "x", 5, None, {"error": {"message": "boom"}}, {"choices": "x"}))
    return r.pick((b"", b"event: completion\n")) + b"data: " + json.dumps(obj).encode() + b"\n\n"


def _odd(r: Reader, data: bytes) -> None:
    """Chunks with fields of unexpected types: no exception, streamed or whole; the
    same answer whatever the byte split."""
    settings = _settings(r)
    stream = b"".join(_odd_chunk(r) for _ in range(1 + r.byte() % 6))
    _same_at_splits(stream, settings, data)
    message = _odd_choice(r)
    if isinstance(message, dict):
        message["message"] = message.pop("delta")
    ReplyInspector(settings).inspect_completion(json.dumps({"id": "c", "choices": [message]}).encode())


def _same_at_splits(stream: bytes, settings: InspectorSettings, data: bytes) -> None:
    """Whole and at derived byte splits: the same bytes out (callgate's ids masked)
    and commands; or InvalidChunk both times."""
    answers = []
    for cuts in ([], derived_cuts(data, len(stream))):
        try:
            out, cmds, _ = _inspect(stream, settings, cuts)
            answers.append((GENERATED_ID.sub(b'"call_new"', out), GENERATED_ID.sub(b"'call_new'", repr(cmds).replace("'", '"').encode())))
        except InvalidChunk:
            answers.append(None)
    assert answers[0] == answers[1]


def _raw(r: Reader, data: bytes) -> None:
    """Any bytes as the upstream's body (mutated recorded streams)."""
    settings = _settings(r)
    _same_at_splits(r.rest(), settings, data)


def inspector_target(data: bytes) -> None:
    """Three kinds of input, by the first byte: a structured reply (split
    independence), chunks with odd field types, or raw SSE bytes."""
    r = Reader(data)
    kind = r.byte() % 4
    if kind == 0:
        _raw(r, data)
    elif kind == 1:
        _odd(r, data)
    else:
        _structured(r, data)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "sse": sse_target,
    "parser": parser_target,
    "tool_calls": tool_calls_target,
    "inspector": inspector_target,
}

# -- seeds ------------------------------------------------------------------------

SSE_EDGE_CASES = (
    b": comment\r\ndata: first\r\ndata: second\r\n\r\nevent: ping\rdata: x\r\rid: 7\nretry: 1500\ndata:no-space\n\n",
    BOM + b"data: 1\n\ndata: [DONE]\n\n",
    "data: 你好，世界\n\ndata: [DONE]".encode(),
    b"id: a\x00b\nid\nretry: x\nevent\ndata\n\n\n\r\n\r",
    b"data: {\"a\":1}\n\ndata: [DONE]\n\n",
)


def _windows(blob: bytes, size: int) -> list[bytes]:
    """Pieces of a recorded stream, each starting at an event."""
    starts = [0] + [i + 2 for i in range(len(blob)) if blob[i : i + 2] == b"\n\n"][:-1]
    return [blob[s : s + size] for s in starts[:: max(1, len(starts) // 6)]]


def recorded(size: int = 1500) -> list[bytes]:
    """The recorded OpenAI streams, whole when short, else in windows of ``size``."""
    out = []
    for path in sorted(FIXTURES.glob("*.sse")) if FIXTURES.is_dir() else []:
        blob = path.read_bytes()
        out += [blob] if len(blob) <= size else _windows(blob, size)
    return out


# Upstream bodies that once made the inspector raise (kept as seeds: a regression
# fails on the seed itself).
REGRESSIONS = (
    b'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"id":["x"]}]}}]}\n\n',  # unhashable id
    # a lone surrogate (JSON escape) in a chunk that is re-encoded
    b'data: {"choices":[{"index":0,"delta":{"content":"\\ud83d <imsagent_hangup endword=\\"bye\\"/>"}}]}\n\n',
    # content that is no string in the chunk that finishes the choice while text is held
    b'data: {"choices":[{"index":0,"delta":{"content":"<ims"}}]}\n\n'
    b'data: {"choices":[{"index":0,"delta":{"content":5},"finish_reason":"stop"}]}\n\n',
)
# The inspector's choice of raw SSE input: strip, speak_closing, 1024 chars, no
# allow-list, the FunctionMap with end_call, one spoken rejection.
RAW = bytes([0, 0, 1, 2, 0, 1, 1])


def seeds(name: str) -> list[bytes]:
    """A starting corpus for target ``name``."""
    streams = recorded() + list(SSE_EDGE_CASES)
    numbered = [bytes([i]) + bytes(range(i, 256, 7)) for i in range(16)]
    if name == "sse":
        return streams
    if name == "inspector":
        return [RAW + s for s in streams + list(REGRESSIONS)] + [bytes([k]) + n for k in (1, 2, 3) for n in numbered]
    return numbered + [bytes(range(256))]


# Tokens a mutator inserts (the libFuzzer dictionary too).
DICTIONARY: tuple[bytes, ...] = (
    b"data: ", b"data:", b"event: ", b"id: ", b"retry: ", b": ", b"\n\n", b"\r\n", b"\r", b"\n", b"[DONE]", BOM,
    b'"content":"', b'"tool_calls":[', b'"finish_reason":"stop"', b'"index":0', b'"choices":[{', b"\\ud83d",
    b"<imsagent_hangup", b' endword="', b"<imsagent_transfer_call", b' callee="1001"', b"/>", b"\xe4\xbd\xa0", b"\xf0\x9f",
    b"<tool_call>", b"</tool_call>", b"[TOOL_CALLS]", b'{\\"name\\": \\"end_call\\", \\"arguments\\": {}}', b"functions.end_call(",
    b"</think>", b"<thinking>", b"<|python_tag|>", b"[end_call()]",
)
