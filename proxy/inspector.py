"""Chunk inspection for one reply (sans-IO): find control commands, render the output mode.

:class:`ReplyInspector` is fed the :class:`~proxy.sse.SSEEvent` objects of one
streamed chat completion (``feed``), or a whole non-streamed completion
(``inspect_completion``). It returns the bytes to send to the agent runtime and the
control commands found. A chunk that holds no part of a command comes back as its
own ``raw`` bytes, untouched.

Every choice (``n`` > 1) has its own parser and tool-call assembler. Commands in
choice 0, the one a voice runtime speaks, are returned to act on; commands in other
choices are rendered the same way but not acted on.

Output modes (``commands.output``), one normalized command, four renderings:

* ``strip``: the command is removed; with ``speak_closing`` its ``endword``/``msg``
  takes its place in the content. Mapped tool calls are removed too.
* ``passthrough``: everything as the LLM sent it; commands are only observed.
* ``tool_calls``: every command becomes an OpenAI tool call named by the
  FunctionMap's MatchFunction; ``finish_reason`` becomes ``"tool_calls"``.
* ``text``: every command becomes a canonical text command in the content.

In every mode but ``passthrough``: nothing is spoken after a hangup in the same
reply, a rejected command's ``err_msg`` is spoken in its place, and a
``finish_reason`` of ``"tool_calls"`` becomes ``"stop"`` when every tool call was a
mapped one that was removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from . import json_codec
from .commands import (
    HANGUP,
    AnyCommand,
    Command,
    RejectedCommand,
    reject,
    render_text,
    render_tool_call,
    validate,
)
from .parser import CommandParser, ParsedTag, UnterminatedTag
from .sse import SSEEvent
from .tool_calls import FunctionMap, ToolCallAssembler

OutputMode = Literal["strip", "passthrough", "tool_calls", "text"]


@dataclass(frozen=True)
class InspectorSettings:
    """Plain data the inspector needs (built from ``commands:`` in the config)."""

    hangup_tag: str = "imsagent_hangup"
    transfer_tag: str = "imsagent_transfer_call"
    function_map: tuple[tuple[str, str], ...] = (("hangup", "hangup"), ("transfer", "transfer_call"))
    output: OutputMode = "strip"
    speak_closing: bool = True
    max_command_chars: int = 1024
    transfer_allow: tuple[str, ...] = ()

    @property
    def tags(self) -> dict[str, str]:
        """built-in function -> tag name."""
        return {HANGUP: self.hangup_tag, "transfer": self.transfer_tag}


@dataclass(slots=True)
class _Choice:
    index: int
    parser: CommandParser
    tools: ToolCallAssembler = field(default_factory=ToolCallAssembler)
    hung_up: bool = False
    finished: bool = False
    out_index: dict[int, int] = field(default_factory=dict)  # upstream tool index -> index sent
    next_index: int = 0
    kept_tools: bool = False  # an unmapped tool call went to the runtime
    dropped_tools: bool = False  # a mapped tool call was held back
    rendered_tools: bool = False  # callgate wrote a tool call itself
    raw: list[str] = field(default_factory=list)
    spoken: list[str] = field(default_factory=list)

    def tool_index(self, upstream: int) -> int:
        i = self.out_index.get(upstream)
        if i is None:
            i = self.out_index[upstream] = self.next_index
            self.next_index += 1
        return i

    def new_tool_index(self) -> int:
        i = self.next_index
        self.next_index += 1
        return i


class ReplyInspector:
    """Inspects one reply; see the module docstring.

    ``call_hung_up``: the call already had a hangup in an earlier reply, so another
    one is rejected as a duplicate (at most one hangup per call).

    After :meth:`close`: ``tool_calls`` (every assembled tool call of choice 0),
    ``raw_text``/``spoken_text`` (choice 0's content as received / as sent),
    ``upstream_error`` (an ``error`` object the upstream sent in the stream).
    """

    def __init__(self, settings: InspectorSettings, *, call_hung_up: bool = False) -> None:
        self.settings = settings
        self._fmap = FunctionMap(settings.function_map)
        self._tag_function = {settings.hangup_tag: HANGUP, settings.transfer_tag: "transfer"}
        self._passthrough = settings.output == "passthrough"
        self._choices: dict[int, _Choice] = {}
        self._template: dict[str, Any] | None = None
        self._message_mode = False
        self.call_hung_up = call_hung_up
        self.upstream_error: Any = None
        self.done = False

    # -- streamed replies --------------------------------------------------------

    def feed(self, event: SSEEvent) -> tuple[bytes, list[AnyCommand]]:
        """One SSE event in; ``(bytes to send, commands of choice 0 it completed)`` out."""
        data = event.data
        if data is None:
            return event.raw, []
        if data == "[DONE]":
            tail, cmds = self.close()
            return tail + event.raw, cmds
        try:
            obj = json_codec.loads(data)
        except ValueError:
            return event.raw, []
        choices = obj.get("choices") if isinstance(obj, dict) else None
        if not choices or not isinstance(choices, list):
            if isinstance(obj, dict) and "error" in obj:
                self.upstream_error = obj["error"]
            return event.raw, []
        self._template = obj
        cmds: list[AnyCommand] = []
        changed = False
        for choice in choices:
            if isinstance(choice, dict) and self._choice_chunk(choice, choice.get("delta"), "delta", cmds):
                changed = True
        if not changed:
            return event.raw, cmds
        out = b"data: " + json_codec.dumps(obj) + b"\n\n"
        if event.event is not None:  # keep a named event's name
            out = b"event: " + event.event.encode() + b"\n" + out
        return out, cmds

    def close(self) -> tuple[bytes, list[AnyCommand]]:
        """End of the stream ([DONE], EOF or an upstream failure): finish every choice
        that got no ``finish_reason``. Returns a last chunk carrying what was still
        held (or ``b""``) and the commands that completed."""
        if self.done:
            return b"", []
        self.done = True
        cmds: list[AnyCommand] = []
        out_choices = []
        for st in self._choices.values():
            if st.finished:
                continue
            delta: dict[str, Any] = {}
            self._finish(st, delta, cmds)
            if delta:
                out_choices.append({"index": st.index, "delta": delta, "finish_reason": None})
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
        return b"data: " + json_codec.dumps(chunk) + b"\n\n", cmds

    # -- whole replies -----------------------------------------------------------

    def inspect_completion(self, body: bytes) -> tuple[bytes, list[AnyCommand]]:
        """A non-streamed chat completion body in; ``(body to send, commands)`` out.
        A body with nothing to change comes back as the same bytes."""
        self._message_mode = True
        try:
            obj = json_codec.loads(body)
        except ValueError:
            return body, []
        choices = obj.get("choices") if isinstance(obj, dict) else None
        if not isinstance(choices, list):
            return body, []
        cmds: list[AnyCommand] = []
        changed = False
        for choice in choices:
            if isinstance(choice, dict) and isinstance(choice.get("message"), dict):
                if self._choice_chunk(choice, choice["message"], "message", cmds, final=True):
                    changed = True
        self.done = True
        if not changed:
            return body, cmds
        return json_codec.dumps(obj), cmds

    # -- results -------------------------------------------------------------------

    @property
    def raw_text(self) -> str:
        st = self._choices.get(0)
        return "".join(st.raw) if st else ""

    @property
    def spoken_text(self) -> str:
        st = self._choices.get(0)
        return "".join(st.spoken) if st else ""

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        st = self._choices.get(0)
        if not st:
            return []
        return [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in st.tools.calls()]

    # -- internals -----------------------------------------------------------------

    def _state(self, index: int) -> _Choice:
        st = self._choices.get(index)
        if st is None:
            tags = (self.settings.hangup_tag, self.settings.transfer_tag)
            st = self._choices[index] = _Choice(index, CommandParser(tags, self.settings.max_command_chars))
        return st

    def _choice_chunk(
        self, choice: dict[str, Any], delta: Any, key: str, cmds: list[AnyCommand], *, final: bool = False
    ) -> bool:
        """Process one choice of one chunk in place; ``True`` when it changed.
        ``final``: this is the choice's last piece even without a ``finish_reason``."""
        index = choice.get("index", 0)
        st = self._state(index if isinstance(index, int) else 0)
        changed = False
        if isinstance(delta, dict):
            entries = delta.get("tool_calls")
            if isinstance(entries, list) and entries:
                kept = self._tool_entries(st, entries)
                if kept is not entries:
                    changed = True
                    if kept:
                        delta["tool_calls"] = kept
                    else:
                        del delta["tool_calls"]
            content = delta.get("content")
            if isinstance(content, str) and content:
                st.raw.append(content)
                items = st.parser.feed(content)
                unchanged = len(items) == 1 and items[0] is content
                if self._passthrough:
                    st.spoken.append(content)
                    if not unchanged:
                        self._render(st, items, cmds)  # observe the commands only
                elif unchanged and not st.hung_up:
                    st.spoken.append(content)
                else:
                    text, tools = self._render(st, items, cmds)
                    if text != content or tools:  # a `<` that was no command changes nothing
                        delta["content"] = text
                        if tools:
                            self._append_tools(delta, tools)
                        changed = True
        finish_reason = choice.get("finish_reason")
        if (finish_reason is not None or final) and not st.finished:
            if not isinstance(delta, dict):
                delta = choice[key] = {}
            if self._finish(st, delta, cmds):
                changed = True
            if not self._passthrough and finish_reason is not None:
                new_reason = finish_reason
                if st.rendered_tools:
                    new_reason = "tool_calls"
                elif finish_reason == "tool_calls" and st.dropped_tools and not st.kept_tools:
                    new_reason = "stop"
                if new_reason != finish_reason:
                    choice["finish_reason"] = new_reason
                    changed = True
        return changed

    def _finish(self, st: _Choice, delta: dict[str, Any], cmds: list[AnyCommand]) -> bool:
        """Flush the parser and turn finished mapped tool calls into commands;
        add what that renders to ``delta``. ``True`` when ``delta`` changed."""
        st.finished = True
        items: list[Any] = list(st.parser.flush())
        for call in st.tools.calls():
            cmd = self._fmap.command(call, self.settings.transfer_allow)
            if cmd is not None:
                items.append(cmd)
        if not items:
            return False
        text, tools = self._render(st, items, cmds)
        if self._passthrough:
            return False
        changed = False
        if text:
            delta["content"] = (delta.get("content") or "") + text
            changed = True
        if tools:
            self._append_tools(delta, tools)
            changed = True
        return changed

    @staticmethod
    def _append_tools(delta: dict[str, Any], tools: list[dict[str, Any]]) -> None:
        delta["tool_calls"] = (delta.get("tool_calls") or []) + tools

    def _tool_entries(self, st: _Choice, entries: list[Any]) -> list[Any]:
        """Assemble ``delta.tool_calls`` entries; return what goes on to the runtime
        (the same list object when nothing changed)."""
        kept: list[Any] = []
        changed = False
        for entry in entries:
            if not isinstance(entry, dict):
                kept.append(entry)
                continue
            call = st.tools.feed(entry)
            if self._passthrough:
                kept.append(entry)
                continue
            if self._fmap.function_for(call.name) is not None:
                st.dropped_tools = True  # held; rendered when the choice finishes
                changed = True
                continue
            st.kept_tools = True
            if self._message_mode:
                kept.append(entry)
                continue
            out = st.tool_index(call.index)
            if entry.get("index") != out:
                entry = dict(entry, index=out)
                changed = True
            kept.append(entry)
        return kept if changed else entries

    def _render(self, st: _Choice, items: list[Any], cmds: list[AnyCommand]) -> tuple[str, list[dict[str, Any]]]:
        """Parser events and commands in; ``(content text, tool calls)`` to send out."""
        out: list[str] = []
        tools: list[dict[str, Any]] = []
        mode = self.settings.output
        for item in items:
            if isinstance(item, str):
                if not st.hung_up or self._passthrough:
                    out.append(item)
                continue
            cmd = self._command(item)
            if st.hung_up:
                cmd = reject(cmd, "command after a hangup in the same reply")
            elif isinstance(cmd, Command) and cmd.function == HANGUP:
                st.hung_up = True  # even a duplicate: nothing is spoken after it
                if self.call_hung_up:
                    cmd = reject(cmd, "duplicate hangup: the call already hung up")
                elif st.index == 0:
                    self.call_hung_up = True
            if st.index == 0:
                cmds.append(cmd)
            if self._passthrough:
                continue
            if isinstance(cmd, RejectedCommand):
                out.append(cmd.closing)
            elif mode == "strip":
                if self.settings.speak_closing:
                    out.append(cmd.closing)
            elif mode == "text":
                out.append(render_text(cmd, self.settings.tags[cmd.function]))
            else:  # tool_calls
                index = None if self._message_mode else st.new_tool_index()
                tools.append(render_tool_call(cmd, self._fmap.match_for(cmd.function), index))
                st.rendered_tools = True
        text = "".join(out)
        if not self._passthrough:
            st.spoken.append(text)
        return text, tools

    def _command(self, item: ParsedTag | UnterminatedTag | AnyCommand) -> AnyCommand:
        if isinstance(item, (Command, RejectedCommand)):
            return item
        function = self._tag_function.get(item.tag)
        if isinstance(item, UnterminatedTag):
            return RejectedCommand(function, {}, "text_command", item.raw, "command not closed before the reply ended")
        return validate(
            function or item.tag,
            item.attrs,
            source="text_command",
            raw=item.raw,
            transfer_allow=self.settings.transfer_allow,
        )
