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
from .deltas import REASONING_FIELDS, THINKING_PARTS, Rendered, part_text, patched, same_text, separated, without_thinking
from .function_map import FunctionMap, FunctionSpec
from .render import ChoiceOutput, renderer_for
from .sse import SSEEvent
from .thinking import DEFAULT_THINK_TAGS

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
    thinking: Literal["forward", "remove"] = "forward"  # what the runtime gets of thinking (not in passthrough)
    think_tags: tuple[str, ...] = DEFAULT_THINK_TAGS  # <name>…</name> in content is thinking
    text_tool_calls: tuple[str, ...] = ()  # tool-call forms written as text that are tool calls (text_tools.FORMS)
    end_call_phrases: tuple[str, ...] = ()  # a reply with no command ending with one hangs up (source "phrase")
    # The reply starts inside thinking: its upstream model's chat template opened it in
    # the prompt (the pool entry's thinking_open_models; the relay sets it per attempt).
    thinking_open: bool = False

    @property
    def tags(self) -> dict[str, str]:
        """built-in function -> tag name."""
        return {HANGUP: self.hangup_tag, TRANSFER: self.transfer_tag}


@dataclass(slots=True)
class _Choice:
    analyzer: ChoiceAnalyzer
    out: ChoiceOutput


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
        self._renderer = renderer_for(
            settings.output, self._fmap, self._tags, settings.speak_closing, settings.thinking == "forward"
        )
        self._drop_reasoning = settings.thinking == "remove" and settings.output != "passthrough"
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
        if isinstance(obj, dict) and obj.get("error") is not None:
            self.upstream_error = obj["error"]  # OpenRouter: mid-stream, beside a choice finishing "error"
        choices = obj.get("choices") if isinstance(obj, dict) else None
        if not choices or not isinstance(choices, list):
            return event.raw, []
        self._template = obj
        cmds: list[AnyCommand] = []
        new_choices = self._choices_out(choices, "delta", cmds, final=False)
        if new_choices is None:
            return event.raw, cmds
        chunks = [{**obj, "choices": new_choices}]
        if self._renderer.separate_tools:
            chunks = separated(chunks[0])
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
            delta = patched({}, None, None, self._finish(st, cmds))
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
        chunks = separated(chunk) if self._renderer.separate_tools else [chunk]
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
    def reasoning_text(self) -> str:
        """Choice 0's thinking so far: ``<think>`` blocks in its content (without the
        tags) and its ``reasoning_content``/``reasoning`` deltas (capped)."""
        st = self._choices.get(0)
        return st.analyzer.reasoning.text() if st else ""

    @property
    def thinking_unopened(self) -> bool:
        """Choice 0 had a thinking closing tag with no opening one while not
        ``thinking_open``: its upstream's model probably opens thinking in the prompt
        (the speech before the tag was thinking, already sent)."""
        st = self._choices.get(0)
        return st.analyzer.thinking_unopened if st else False

    @property
    def chunk_id(self) -> str | None:
        """The ``id`` the upstream's chunks carry (the last one's), or ``None``."""
        return self._template.get("id") if self._template else None

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
                think_tags=s.think_tags,
                text_tool_calls=s.text_tool_calls,
                thinking_open=s.thinking_open,
                end_call_phrases=s.end_call_phrases,
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
        tools, content, drop = self._delta(st, delta, cmds) if delta else (None, None, ())
        finish = None
        reason = new_reason = choice.get("finish_reason")
        if reason is not None:
            self._finished(choice, reason)
        if (reason is not None or final) and not st.analyzer.finished:
            finish = self._finish(st, cmds)
            if reason is not None:
                new_reason = self._renderer.finish_reason(reason, st.out)
        if tools is None and content is None and finish is None and not drop and new_reason == reason:
            return None
        new_delta = patched(delta, tools, content, finish, drop)
        if new_delta is None and new_reason == reason:
            return None
        new = {**choice, key: new_delta if new_delta is not None else delta}
        if new_reason != reason:
            new["finish_reason"] = new_reason
        if new_delta is not None:
            same_text(new, delta, new_delta)
        return new

    def _finished(self, choice: dict[str, Any], reason: Any) -> None:
        """A choice got its ``finish_reason``; ``"error"`` (OpenRouter) is the
        upstream's error, with the chunk's ``error`` object when it has one."""
        self.saw_finish = True
        if reason == "error" and self.upstream_error is None:
            self.upstream_error = choice.get("error") or {"message": 'the upstream ended the reply with finish_reason "error"'}

    def _delta(
        self, st: _Choice, delta: dict[str, Any], cmds: list[AnyCommand]
    ) -> tuple[list[Any] | None, Rendered, tuple[str, ...]]:
        """A delta's tool-call entries, content and thinking: ``(entries to send,
        content, fields to drop)``."""
        tools = None
        content: Rendered = None
        entries = delta.get("tool_calls")
        text = delta.get("content")
        if entries and type(entries) is list:
            tools = self._tool_entries(st, entries)
            if tools is None and text and self._renderer.separate_tools:
                tools = list(entries)  # content beside tool calls: re-encoded, so it goes in a chunk of its own
        if text and type(text) is str:
            content = self._content(st, text, cmds)
        elif text and type(text) is list:
            content = self._parts(st, text, cmds)
        drop: tuple[str, ...] = ()
        thinks = False  # a field with thinking in it (DeepSeek sends "reasoning_content": null on every content delta)
        for name in REASONING_FIELDS:
            thought = delta.get(name)
            if thought:
                thinks = True
                if isinstance(thought, str):
                    st.analyzer.feed_reasoning(thought)
        if thinks and self._drop_reasoning:
            drop = REASONING_FIELDS
        return tools, content, drop

    def _parts(self, st: _Choice, parts: list[Any], cmds: list[AnyCommand]) -> Rendered:
        """``content`` given as a list of parts (Mistral): text parts as content, thinking
        parts recorded (and removed when the profile says so); the same shape back."""
        new: list[Any] | None = None
        added: list[dict[str, Any]] = []
        for i, part in enumerate(parts):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str) and part["text"]:
                rendered = self._content(st, part["text"], cmds)
                if rendered is not None:
                    new = new if new is not None else list(parts)
                    new[i] = {**part, "text": rendered[0]}
                    added += rendered[1]
            elif kind in THINKING_PARTS:
                st.analyzer.feed_reasoning(part_text(part.get(kind)))
                if self._drop_reasoning:
                    new = new if new is not None else list(parts)
                    new[i] = None
        if new is None and not added:
            return None
        return [p for p in (new if new is not None else parts) if p is not None], added

    def _content(self, st: _Choice, content: str, cmds: list[AnyCommand]) -> tuple[str, list[dict[str, Any]]] | None:
        findings = st.analyzer.feed(content)
        if findings is None:  # the hot path: plain speech
            st.out.spoken.append(content)
            return None
        self._collect(st, findings, cmds)
        if self._renderer.changes_nothing:
            st.out.spoken.append(without_thinking(findings))
            return None
        text, tools = self._renderer.render(findings, st.out)
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

    def _finish(self, st: _Choice, cmds: list[AnyCommand]) -> Rendered:
        """The choice ended: what was held, and the mapped tool calls' commands. It
        ended normally (a goodbye phrase may count) unless the stream closed without
        ``[DONE]`` or a ``finish_reason`` (an upstream cut)."""
        findings = st.analyzer.close(ended=not self.done or self.saw_done or self._message)
        self._collect(st, findings, cmds)
        if self._renderer.changes_nothing:
            st.out.spoken.append(without_thinking(findings))
        if not findings or self._renderer.changes_nothing:
            return None
        text, tools = self._renderer.render(findings, st.out)
        return (text, tools) if text or tools else None

    @staticmethod
    def _collect(st: _Choice, findings: list[Finding], cmds: list[AnyCommand]) -> None:
        if findings and st.analyzer.index == 0:
            cmds += [f.command for f in findings if type(f) is Found]
