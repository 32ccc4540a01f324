"""One reply, inspected (sans-IO): SSE events in, typed outputs out (:mod:`proxy.core.outputs`).

:class:`ReplyInspector` is fed the :class:`~proxy.core.sse.SSEEvent` objects of one
streamed chat completion (:meth:`~ReplyInspector.feed`, then
:meth:`~ReplyInspector.close`), or a whole non-streamed completion
(:meth:`~ReplyInspector.inspect_completion`). Each choice (``n`` > 1) has its own
:class:`~proxy.core.analyzer.ChoiceAnalyzer` (what the model wrote) and the output
mode's :class:`~proxy.core.render.Renderer` (what the runtime receives). Commands in
choice 0, the one a voice runtime speaks, are returned to act on; commands in other
choices are rendered the same way but not acted on.

Each event's JSON is decoded once. A chunk that holds no part of a command comes
back as a :class:`~proxy.core.outputs.Forward` of its own ``raw`` bytes, untouched;
a chunk that changes comes back as a :class:`~proxy.core.outputs.Rewrite` of a copy
(the upstream's JSON is never edited in place) keeping its SSE ``event:`` name.
Choice 0's speakable text follows the chunks that carry it as
:class:`~proxy.core.outputs.Speech`, its commands as
:class:`~proxy.core.outputs.CommandFound`. The ``usage`` of a chunk that has one is
kept (:attr:`ReplyInspector.usage`); with ``hide_usage`` a usage-only chunk (one
callgate asked for, the runtime did not) does not go out.
"""

from __future__ import annotations

from typing import Any

from . import json_codec
from .analyzer import ChoiceAnalyzer, Finding, Found, HangupPolicy, NoCallPolicy
from .capped import CappedText
from .commands import AnyCommand
from .deltas import REASONING_FIELDS, THINKING_PARTS, Rendered, part_text, patched, same_text, separated, without_thinking
from .function_map import FunctionMap
from .outputs import CommandFound, Forward, Output, Rewrite, Speech, SpeechLog
from .settings import InspectorSettings, InvalidChunk, OutputMode
from .inspected import Choice as _Choice
from .inspected import InspectorResults
from .render import ChoiceOutput, renderer_for
from .routing import Usage, usage_of
from .sse import SSEEvent

__all__ = ["InspectorSettings", "InvalidChunk", "OutputMode", "ReplyInspector"]


class ReplyInspector(InspectorResults):
    """Inspects one reply; see the module docstring.

    ``policy``: the call domain's answer to "may this reply hang up?" (one hangup
    per call); without one every hangup is allowed (but only one per reply).

    After :meth:`close`: ``tool_calls`` (every assembled tool call of choice 0),
    ``raw_text``/``spoken_text`` (choice 0's content as received / as sent, cut at
    ``max_recorded_chars``), ``upstream_error`` (an ``error`` object the upstream
    sent in the stream), ``saw_done`` (``[DONE]`` came), ``saw_finish`` (a choice
    got its ``finish_reason``).
    """

    def __init__(self, settings: InspectorSettings, *, policy: HangupPolicy | None = None, hide_usage: bool = False) -> None:
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
        self._said: list[str] = []  # choice 0's speech not yet handed on as a Speech output
        self._transferred = False  # a transfer was acted on before this inspector (a continuation's)
        self.hide_usage = hide_usage
        self.usage: Usage | None = None
        self.last_chunk: Any = None  # the decoded JSON of the last event fed (None: it had none)
        self.finish_reasons: list[str] = []  # every finish_reason the upstream sent, in order
        self.upstream_error: Any = None
        self.done = False
        self.saw_done = False
        self.saw_finish = False

    def after_transfer(self) -> None:
        """A transfer of this reply was acted on before this inspector began (it
        continues a stalled attempt): a transfer it finds is a second one, rejected."""
        self._transferred = True

    # -- streamed replies --------------------------------------------------------

    def feed(self, event: SSEEvent) -> list[Output]:
        """One SSE event in; its :mod:`~proxy.core.outputs` out, in the order the runtime
        receives them (empty: nothing goes out). Decodes the event's JSON once (then
        :attr:`last_chunk`). Raises :class:`InvalidChunk` for a ``data:`` line that is
        not JSON."""
        data = event.data
        if data is None:
            self.last_chunk = None
            return [Forward(event)]
        if data == "[DONE]":
            self.saw_done = True
            self.last_chunk = None
            return self.close(last=Forward(event))
        try:
            obj = json_codec.loads(data)
        except ValueError:
            raise InvalidChunk(f"upstream sent a data: line that is not JSON: {data[:120]!r}") from None
        return self.feed_chunk(event, obj)

    def feed_chunk(self, event: SSEEvent, obj: Any) -> list[Output]:
        """:meth:`feed` for an event whose JSON ``obj`` was decoded already (an attempt's
        held events, inspected again under the call's live hangup policy)."""
        self.last_chunk = obj
        if type(obj) is not dict:
            return [Forward(event, obj)]
        spoken = self._plain(event, obj)
        if spoken is not None:
            return spoken
        choices = obj.get("choices")
        if obj.get("usage") is not None:
            usage = usage_of(obj)
            if usage is not None:
                self.usage = usage
                if self.hide_usage and not choices:
                    return []  # the usage chunk callgate asked for: the runtime did not
        if obj.get("error") is not None:
            self.upstream_error = obj["error"]  # OpenRouter: mid-stream, beside a choice finishing "error"
        if not choices or type(choices) is not list:
            return [Forward(event, obj)]
        self._template = obj
        cmds: list[AnyCommand] = []
        new_choices = self._choices_out(choices, "delta", cmds, final=False)
        if new_choices is None:
            out: list[Output] = [Forward(event, obj)]
        else:
            chunk = {**obj, "choices": new_choices}
            out = [Rewrite(c, event.event) for c in (separated(chunk) if self._renderer.separate_tools else [chunk])]
        if self._said or cmds:
            self._hand_on(out, cmds)
        return out

    def close(self, last: Forward | None = None) -> list[Output]:
        """End of the stream ([DONE], EOF or an upstream failure): finish every choice
        that got no ``finish_reason``. Returns a last chunk carrying what was still
        held (or nothing), then ``last`` (the ``[DONE]`` event), then its speech and
        the commands that completed."""
        if self.done:
            return [last] if last is not None else []
        self.done = True
        cmds: list[AnyCommand] = []
        out_choices = []
        for index, st in self._choices.items():
            if st.analyzer.finished:
                continue
            delta = patched({}, None, None, self._finish(st, cmds))
            if delta:
                out_choices.append({"index": index, "delta": delta, "finish_reason": None})
        out: list[Output] = []
        if out_choices:
            t = self._template or {}
            chunk = {
                "id": t.get("id", "chatcmpl-callgate"),
                "object": "chat.completion.chunk",
                "created": t.get("created", 0),
                "model": t.get("model", ""),
                "choices": out_choices,
            }
            out = [Rewrite(c) for c in (separated(chunk) if self._renderer.separate_tools else [chunk])]
        if last is not None:
            out.append(last)
        self._hand_on(out, cmds)
        return out

    def _plain(self, event: SSEEvent, obj: dict[str, Any]) -> list[Output] | None:
        """The common chunk, the short way: one choice 0 whose delta is plain speech and
        nothing else (no finish, usage or error) comes back as the general way gives it;
        ``None`` (nothing changed) for any other chunk."""
        choices, st = obj.get("choices"), self._choices.get(0)
        if st is None or not st.analyzer.quiet() or type(choices) is not list or len(choices) != 1:
            return None  # choice 0 is in the middle of something: the general way
        choice = choices[0]
        if type(choice) is not dict or obj.get("usage") is not None or obj.get("error") is not None or choice.get("finish_reason") is not None or self._said:
            return None
        index, delta = choice.get("index", 0), choice.get("delta")
        if (index != 0 and isinstance(index, int)) or type(delta) is not dict or len(delta) != 1:
            return None
        text = delta.get("content")
        if type(text) is not str or not text or not st.analyzer.take_plain(text):
            return None
        self._template = obj
        st.out.spoken.append(text)
        out: list[Output] = [Forward(event, obj)]
        self._hand_on(out, [])
        return out

    def _hand_on(self, out: list[Output], cmds: list[AnyCommand]) -> None:
        """Choice 0's speech since the last output, then its commands, after the chunks."""
        if self._said:
            out.append(Speech("".join(self._said)))
            self._said.clear()
        out += [CommandFound(c) for c in cmds]

    # -- whole replies -----------------------------------------------------------

    def inspect_completion(self, body: bytes, obj: Any = None) -> tuple[bytes, list[AnyCommand]]:
        """A non-streamed chat completion body in (``obj``: its JSON when decoded
        already); ``(body to send, commands)`` out; its ``usage`` kept. A body with
        nothing to change comes back as the same bytes."""
        self._message = True
        self.done = True
        if obj is None:
            try:
                obj = json_codec.loads(body)
            except ValueError:
                return body, []
        self.usage = usage_of(obj)
        self._template = obj if isinstance(obj, dict) else None
        choices = obj.get("choices") if isinstance(obj, dict) else None
        if not isinstance(choices, list):
            return body, []
        cmds: list[AnyCommand] = []
        new_choices = self._choices_out(choices, "message", cmds, final=True)
        self._said.clear()
        if new_choices is None:
            return body, cmds
        return json_codec.dumps({**obj, "choices": new_choices}), cmds

    # -- internals -----------------------------------------------------------------

    def _state(self, index: Any) -> _Choice:
        if not isinstance(index, int):
            index = 0
        st = self._choices.get(index)
        if st is None:
            s = self.settings
            analyzer = ChoiceAnalyzer.for_settings(index, s, tags=self._tags, fmap=self._fmap, policy=self._policy)
            spoken = SpeechLog(s.max_recorded_chars, self._said) if index == 0 else CappedText(s.max_recorded_chars)
            out = ChoiceOutput(message=self._message, spoken=spoken)
            if index == 0 and self._transferred:
                analyzer.transferred = True
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
        self.finish_reasons.append(str(reason))
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
        if entries and type(entries) is list:  # beside content: re-encoded, so each goes in a chunk of its own
            tools = self._tool_entries(st, entries, beside=bool(text) and self._renderer.separate_tools)
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

    def _tool_entries(self, st: _Choice, entries: list[Any], *, beside: bool = False) -> list[Any] | None:
        """The model's tool-call entries to send, or ``None`` when they go as they came
        (``beside``: never, the chunk is rewritten)."""
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
        return kept if changed or beside else None

    def _finish(self, st: _Choice, cmds: list[AnyCommand]) -> Rendered:
        """The choice ended: what was held, the mapped tool calls' commands, a goodbye
        phrase unless the stream was cut (no ``[DONE]``, no ``finish_reason``)."""
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
