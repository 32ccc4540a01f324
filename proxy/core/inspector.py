"""One reply, inspected (sans-IO): SSE events in, the bytes to send and the commands out.

:class:`ReplyInspector` is fed the :class:`~proxy.core.sse.SSEEvent` objects of one
streamed chat completion (:meth:`~ReplyInspector.feed`, then
:meth:`~ReplyInspector.close`), or a whole non-streamed completion
(:meth:`~ReplyInspector.inspect_completion`). Each choice (``n`` > 1) has its own
:class:`~proxy.core.analyzer.ChoiceAnalyzer` (what the model wrote) and the output
mode's :class:`~proxy.core.render.Renderer` (what the runtime receives). Commands in
choice 0, the one a voice runtime speaks, are returned to act on; commands in other
choices are rendered the same way but not acted on.

A chunk that holds no part of a command comes back as its own ``raw`` bytes,
untouched; a chunk that changes is re-encoded from a copy (the upstream's JSON is
never edited in place) and keeps its SSE ``event:`` name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from . import json_codec
from .analyzer import ChoiceAnalyzer, Finding, Found, HangupPolicy, NoCallPolicy
from .capped import CappedText
from .commands import HANGUP, TRANSFER, AnyCommand
from .function_map import FunctionMap, FunctionSpec
from .render import ChoiceOutput, renderer_for
from .sse import SSEEvent

__all__ = ["InspectorSettings", "InvalidChunk", "OutputMode", "ReplyInspector"]


class InvalidChunk(ValueError):
    """The upstream sent a ``data:`` line that is not JSON (nor ``[DONE]``): the
    official client would fail on it, so the relay ends the stream with an error."""

OutputMode = Literal["strip", "passthrough", "tool_calls", "text"]


@dataclass(frozen=True)
class InspectorSettings:
    """Plain data the inspector needs (built from ``commands:`` in the config)."""

    hangup_tag: str = "imsagent_hangup"
    transfer_tag: str = "imsagent_transfer_call"
    function_map: tuple[FunctionSpec | tuple[str, str], ...] = (("hangup", "hangup"), ("transfer", "transfer_call"))
    output: OutputMode = "strip"
    speak_closing: bool = True
    max_command_chars: int = 1024
    transfer_allow: tuple[str, ...] = ()
    max_recorded_chars: int = 1 << 30  # raw_text/spoken_text keep this much (chars); the stream is never cut
    spoken_rejections: int = 1  # the err_msg of at most this many rejected commands per reply is spoken

    @property
    def tags(self) -> dict[str, str]:
        """built-in function -> tag name."""
        return {HANGUP: self.hangup_tag, TRANSFER: self.transfer_tag}


@dataclass(slots=True)
class _Choice:
    analyzer: ChoiceAnalyzer
    out: ChoiceOutput


# What one part of a choice became: ``(content text, tool calls callgate wrote)``;
# ``None`` when it goes on as it came.
_Rendered = tuple[str, list[dict[str, Any]]] | None


def _content_of(delta: dict[str, Any]) -> str:
    """The delta's content when it is text (the model's JSON may hold anything there)."""
    content = delta.get("content")
    return content if isinstance(content, str) else ""


def _patched(
    delta: dict[str, Any], tools: list[Any] | None, content: _Rendered, finish: _Rendered
) -> dict[str, Any] | None:
    """The delta to send: ``delta`` with the model's tool-call entries replaced by
    ``tools`` (when not ``None``), its content by ``content``'s, then what the
    choice's end added. ``None`` when content and tool calls are unchanged."""
    text = content[0] if content is not None else None
    added = (content[1] if content is not None else []) + (finish[1] if finish is not None else [])
    if finish is not None and finish[0]:
        text = (text if text is not None else _content_of(delta)) + finish[0]
    if text is None and tools is None and not added:
        return None
    new = dict(delta)
    if text is not None:
        new["content"] = text
    if tools is not None or added:
        calls = (tools if tools is not None else list(delta.get("tool_calls") or [])) + added
        if calls:
            new["tool_calls"] = calls
        else:
            new.pop("tool_calls", None)
    return new


def _separated(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    """``chunk``, or two chunks when a choice's delta has both content and tool
    calls: the content first (no ``finish_reason``), then the tool calls."""
    choices = chunk["choices"]
    both = [
        i for i, c in enumerate(choices)
        if isinstance(c, dict) and isinstance(c.get("delta"), dict) and c["delta"].get("content") and c["delta"].get("tool_calls")
    ]
    if not both:
        return [chunk]
    first, second = list(choices), []
    for i in both:
        c = choices[i]
        delta = c["delta"]
        first[i] = {**c, "delta": {k: v for k, v in delta.items() if k != "tool_calls"}, "finish_reason": None}
        second.append({**c, "delta": {k: v for k, v in delta.items() if k not in ("content", "role", "refusal")}})
    text_chunk = {k: v for k, v in chunk.items() if k != "usage"}
    return [{**text_chunk, "choices": first}, {**chunk, "choices": second}]


class ReplyInspector:
    """Inspects one reply; see the module docstring.

    ``policy``: the call domain's answer to "may this reply hang up?" (one hangup
    per call); without one every hangup is allowed (but only one per reply).

    After :meth:`close`: ``tool_calls`` (every assembled tool call of choice 0),
    ``raw_text``/``spoken_text`` (choice 0's content as received / as sent, cut at
    ``max_recorded_chars``), ``upstream_error`` (an ``error`` object the upstream
    sent in the stream), ``saw_done`` (``[DONE]`` came), ``saw_finish`` (a choice
    got its ``finish_reason``).
    """

    def __init__(self, settings: InspectorSettings, *, policy: HangupPolicy | None = None) -> None:
        self.settings = settings
        self._fmap = FunctionMap(settings.function_map)
        self._tags = settings.tags
        self._renderer = renderer_for(settings.output, self._fmap, self._tags, settings.speak_closing)
        self._policy = policy or NoCallPolicy()
        self._choices: dict[int, _Choice] = {}
        self._template: dict[str, Any] | None = None
        self._message = False
        self.upstream_error: Any = None
        self.done = False
        self.saw_done = False
        self.saw_finish = False

    # -- streamed replies --------------------------------------------------------

    def feed(self, event: SSEEvent) -> tuple[bytes, list[AnyCommand]]:
        """One SSE event in; ``(bytes to send, commands of choice 0 it completed)`` out.
        Raises :class:`InvalidChunk` for a ``data:`` line that is not JSON."""
        data = event.data
        if data is None:
            return event.raw, []
        if data == "[DONE]":
            self.saw_done = True
            tail, last = self.close()
            return tail + event.raw, last
        try:
            obj = json_codec.loads(data)
        except ValueError:
            raise InvalidChunk(f"upstream sent a data: line that is not JSON: {data[:120]!r}") from None
        choices = obj.get("choices") if isinstance(obj, dict) else None
        if not choices or not isinstance(choices, list):
            if isinstance(obj, dict) and "error" in obj:
                self.upstream_error = obj["error"]
            return event.raw, []
        self._template = obj
        cmds: list[AnyCommand] = []
        new_choices = self._choices_out(choices, "delta", cmds, final=False)
        if new_choices is None:
            return event.raw, cmds
        chunks = [{**obj, "choices": new_choices}]
        if self._renderer.separate_tools:
            chunks = _separated(chunks[0])
        head = b"event: " + event.event.encode() + b"\n" if event.event is not None else b""  # keep a named event's name
        return b"".join(head + b"data: " + json_codec.dumps(c) + b"\n\n" for c in chunks), cmds

    def close(self) -> tuple[bytes, list[AnyCommand]]:
        """End of the stream ([DONE], EOF or an upstream failure): finish every choice
        that got no ``finish_reason``. Returns a last chunk carrying what was still
        held (or ``b""``) and the commands that completed."""
        if self.done:
            return b"", []
        self.done = True
        cmds: list[AnyCommand] = []
        out_choices = []
        for index, st in self._choices.items():
            if st.analyzer.finished:
                continue
            delta = _patched({}, None, None, self._finish(st, cmds))
            if delta:
                out_choices.append({"index": index, "delta": delta, "finish_reason": None})
        if not out_choices:
            return b"", cmds
        t = self._template or {}
        chunk = {
            "id": t.get("id", "chatcmpl-callgate"),
            "object": "chat.completion.chunk",
            "created": t.get("created", 0),
            "model": t.get("model", ""),
            "choices": out_choices,
        }
        chunks = _separated(chunk) if self._renderer.separate_tools else [chunk]
        return b"".join(b"data: " + json_codec.dumps(c) + b"\n\n" for c in chunks), cmds

    # -- whole replies -----------------------------------------------------------

    def inspect_completion(self, body: bytes) -> tuple[bytes, list[AnyCommand]]:
        """A non-streamed chat completion body in; ``(body to send, commands)`` out.
        A body with nothing to change comes back as the same bytes."""
        self._message = True
        self.done = True
        try:
            obj = json_codec.loads(body)
        except ValueError:
            return body, []
        choices = obj.get("choices") if isinstance(obj, dict) else None
        if not isinstance(choices, list):
            return body, []
        cmds: list[AnyCommand] = []
        new_choices = self._choices_out(choices, "message", cmds, final=True)
        if new_choices is None:
            return body, cmds
        return json_codec.dumps({**obj, "choices": new_choices}), cmds

    # -- results -------------------------------------------------------------------

    @property
    def raw_text(self) -> str:
        """Everything choice 0's content said so far, commands included (capped, for the record)."""
        st = self._choices.get(0)
        return st.analyzer.raw.text() if st else ""

    @property
    def spoken_text(self) -> str:
        """What choice 0 sent the runtime as content so far: the speakable output (capped)."""
        st = self._choices.get(0)
        return st.out.spoken.text() if st else ""

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """Choice 0's tool calls as the upstream sent them, assembled per index
        (``[{"id", "name", "arguments"}]``)."""
        st = self._choices.get(0)
        return st.analyzer.tool_calls() if st else []

    # -- internals -----------------------------------------------------------------

    def _state(self, index: Any) -> _Choice:
        if not isinstance(index, int):
            index = 0
        st = self._choices.get(index)
        if st is None:
            s = self.settings
            analyzer = ChoiceAnalyzer(
                index,
                tags=self._tags,
                fmap=self._fmap,
                policy=self._policy,
                max_command_chars=s.max_command_chars,
                transfer_allow=s.transfer_allow,
                max_recorded_chars=s.max_recorded_chars,
                spoken_rejections=s.spoken_rejections,
            )
            out = ChoiceOutput(message=self._message, spoken=CappedText(s.max_recorded_chars))
            st = self._choices[index] = _Choice(analyzer, out)
        return st

    def _choices_out(self, choices: list[Any], key: str, cmds: list[AnyCommand], *, final: bool) -> list[Any] | None:
        """The choices to send, or ``None`` when every one is unchanged."""
        new_choices = None
        for i, choice in enumerate(choices):
            if not isinstance(choice, dict):
                continue
            new = self._choice(choice, key, cmds, final)
            if new is not None:
                if new_choices is None:
                    new_choices = list(choices)
                new_choices[i] = new
        return new_choices

    def _choice(self, choice: dict[str, Any], key: str, cmds: list[AnyCommand], final: bool) -> dict[str, Any] | None:
        """One choice of one chunk (``key``: ``delta``, or ``message`` when whole);
        the choice to send instead, or ``None`` when it goes as it came. ``final``:
        this is the choice's last piece even without a ``finish_reason``."""
        st = self._state(choice.get("index", 0))
        delta = choice.get(key)
        if type(delta) is not dict:
            delta = {}
        tools, content = self._delta(st, delta, cmds) if delta else (None, None)
        finish = None
        reason = new_reason = choice.get("finish_reason")
        if reason is not None:
            self.saw_finish = True
        if (reason is not None or final) and not st.analyzer.finished:
            finish = self._finish(st, cmds)
            if reason is not None:
                new_reason = self._renderer.finish_reason(reason, st.out)
        if tools is None and content is None and finish is None and new_reason == reason:
            return None
        new_delta = _patched(delta, tools, content, finish)
        if new_delta is None and new_reason == reason:
            return None
        new = {**choice, key: new_delta if new_delta is not None else delta}
        if new_reason != reason:
            new["finish_reason"] = new_reason
        return new

    def _delta(self, st: _Choice, delta: dict[str, Any], cmds: list[AnyCommand]) -> tuple[list[Any] | None, _Rendered]:
        """A delta's tool-call entries and content: ``(entries to send, content)``."""
        tools = content = None
        entries = delta.get("tool_calls")
        if entries and type(entries) is list:
            tools = self._tool_entries(st, entries)
        text = delta.get("content")
        if text and type(text) is str:
            content = self._content(st, text, cmds)
        return tools, content

    def _content(self, st: _Choice, content: str, cmds: list[AnyCommand]) -> _Rendered:
        findings = st.analyzer.feed(content)
        if findings is None:  # the hot path: plain speech
            st.out.spoken.append(content)
            return None
        self._collect(st, findings, cmds)
        if self._renderer.changes_nothing:
            st.out.spoken.append(content)
            return None
        text, tools = self._renderer.render(findings, st.out)
        st.out.spoken.append(text)
        if text == content and not tools:
            return None  # a `<` that was no command changes nothing
        return text, tools

    def _tool_entries(self, st: _Choice, entries: list[Any]) -> list[Any] | None:
        """The model's tool-call entries to send, or ``None`` when they go as they came."""
        kept: list[Any] = []
        changed = False
        for entry in entries:
            if not isinstance(entry, dict):
                kept.append(entry)
                continue
            sent = self._renderer.tool_entry(st.analyzer.feed_tool(entry), st.out)
            if sent is not entry:
                changed = True
            if sent is not None:
                kept.append(sent)
        return kept if changed else None

    def _finish(self, st: _Choice, cmds: list[AnyCommand]) -> _Rendered:
        """The choice ended: what was held, and the mapped tool calls' commands."""
        findings = st.analyzer.close()
        self._collect(st, findings, cmds)
        if not findings or self._renderer.changes_nothing:
            return None
        text, tools = self._renderer.render(findings, st.out)
        st.out.spoken.append(text)
        return (text, tools) if text or tools else None

    @staticmethod
    def _collect(st: _Choice, findings: list[Finding], cmds: list[AnyCommand]) -> None:
        if findings and st.analyzer.index == 0:
            cmds += [f.command for f in findings if type(f) is Found]
