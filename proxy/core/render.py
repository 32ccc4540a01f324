"""One renderer per output mode (``commands.output``), sans-IO.

A renderer turns a choice's findings (:mod:`proxy.core.analyzer`) into what the
runtime receives: the content text and the tool calls of a delta, what happens to
the model's own tool-call entries, and the ``finish_reason``. One normalized
command, four renderings:

* ``strip``: the command is removed; with ``speak_closing`` its ``endword``/``msg``
  takes its place. Mapped tool calls are removed too.
* ``passthrough``: changes nothing; commands are only observed.
* ``tool_calls``: every command becomes an OpenAI tool call named by the
  FunctionMap's MatchFunction; ``finish_reason`` becomes ``"tool_calls"``; a delta
  never carries both content and a tool call (the text goes first, in a chunk of
  its own).
* ``text``: every command becomes a canonical text command in the content.

Thinking (``<think>…</think>`` in the content) is forwarded or removed as the
profile's ``thinking`` says, in every mode but ``passthrough`` (which forwards it).

In every mode but ``passthrough``: :class:`~proxy.core.analyzer.Silenced` text is
dropped, a rejected command's ``err_msg`` is spoken in its place, and a
``finish_reason`` of ``"tool_calls"`` becomes ``"stop"`` when every tool call was a
mapped one that was removed. A tool call written as text that the FunctionMap does
not map (:class:`~proxy.core.analyzer.TextToolCall`) becomes a real tool call (and
the ``finish_reason`` ``"tool_calls"``); content and tool calls never share a delta.
A goodbye phrase's hangup (source ``phrase``) is rendered without its ``endword``:
the phrase was spoken already.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .analyzer import Finding, Found, TextToolCall, Thinking, ToolEntry
from .capped import CappedText
from .commands import Command, render_text, render_tool_call
from .function_map import FunctionMap
from .tool_calls import Fed

__all__ = ["ChoiceOutput", "Renderer", "renderer_for"]


@dataclass(slots=True)
class ChoiceOutput:
    """What one choice has sent the runtime so far (a renderer's per-choice state).

    ``message``: a non-streamed completion (tool calls carry no ``index``);
    ``spoken``: the content sent, for the record.
    """

    message: bool = False
    spoken: CappedText = field(default_factory=CappedText)
    out_index: dict[int, int] = field(default_factory=dict)  # upstream tool index -> index sent
    next_index: int = 0
    kept_tools: bool = False  # an unmapped tool call went to the runtime
    dropped_tools: bool = False  # a mapped tool call was held back
    rendered_tools: bool = False  # callgate wrote a tool call itself

    def tool_index(self, upstream: int) -> int:
        """The index sent for the upstream's tool call ``upstream``."""
        i = self.out_index.get(upstream)
        if i is None:
            i = self.out_index[upstream] = self.next_index
            self.next_index += 1
        return i

    def new_tool_index(self) -> int:
        """An index for a tool call callgate writes."""
        i = self.next_index
        self.next_index += 1
        return i


class Renderer:
    """The rendering shared by ``strip``, ``text`` and ``tool_calls``; subclasses say
    what a valid command becomes (:meth:`command`)."""

    changes_nothing = False
    # Content and a tool call never share a delta: the text goes out first in a
    # chunk of its own (Pipecat skips a delta's content when it has tool calls;
    # livekit/agents-js#1339 speaks it beside the call).
    separate_tools = True

    def __init__(self, fmap: FunctionMap, tags: Mapping[str, str], speak_closing: bool, forward_thinking: bool = True) -> None:
        self.fmap = fmap
        self.tags = tags
        self.speak_closing = speak_closing
        self.forward_thinking = forward_thinking

    def render(self, findings: list[Finding], out: ChoiceOutput) -> tuple[str, list[dict[str, Any]]]:
        """``(content text, tool calls)`` for findings; the speech among them is
        added to ``out.spoken`` (thinking, even when forwarded, is not speech)."""
        parts: list[str] = []
        speech: list[str] = []
        tools: list[dict[str, Any]] = []
        for f in findings:
            if type(f) is str:
                parts.append(f)
                speech.append(f)
            elif isinstance(f, Thinking):
                if self.forward_thinking:
                    parts.append(f.raw)
            elif isinstance(f, TextToolCall):
                tools.append(self.text_tool(f, out))
            elif isinstance(f, Found):
                cmd = f.command
                if not isinstance(cmd, Command):
                    if f.spoken:
                        parts.append(cmd.closing)  # a rejected command: its err_msg, if any
                        speech.append(cmd.closing)
                    continue
                if cmd.source == "phrase":  # its endword was spoken already
                    cmd = dataclasses.replace(cmd, args={k: v for k, v in cmd.args.items() if k != "endword"})
                text, tool = self.command(cmd, out)
                parts.append(text)
                speech.append(text)
                if tool is not None:
                    tools.append(tool)
        out.spoken.append("".join(speech))
        return "".join(parts), tools

    def command(self, cmd: Command, out: ChoiceOutput) -> tuple[str, dict[str, Any] | None]:
        """What a valid command becomes: ``(text, tool call or None)``."""
        raise NotImplementedError

    @staticmethod
    def text_tool(f: TextToolCall, out: ChoiceOutput) -> dict[str, Any]:
        """An unmapped tool call written as text, as an OpenAI tool call entry at the
        choice's next free index (none in a non-streamed message)."""
        out.rendered_tools = True
        entry: dict[str, Any] = {} if out.message else {"index": out.new_tool_index()}
        entry.update(id=f.id, type="function", function={"name": f.name, "arguments": f.arguments})
        return entry

    def tool_entry(self, te: ToolEntry, out: ChoiceOutput) -> Mapping[str, Any] | None:
        """The model's own tool-call entry as it goes on, or ``None`` (held back: a
        mapped function, rendered when the choice finishes)."""
        if te.mapped:
            out.dropped_tools = True
            return None
        out.kept_tools = True
        fixes: dict[str, Any] = {}
        if te.call_id is not None and te.fed is Fed.NEW and te.entry.get("id") == "":
            fixes["id"] = te.call_id  # an empty id would make the runtime's calls one
        if not out.message:
            index = out.tool_index(te.index)
            if te.entry.get("index") != index:
                fixes["index"] = index
        return {**te.entry, **fixes} if fixes else te.entry

    def finish_reason(self, reason: str, out: ChoiceOutput) -> str:
        """The ``finish_reason`` the runtime sees."""
        if out.rendered_tools:
            return "tool_calls"
        if reason == "tool_calls" and out.dropped_tools and not out.kept_tools:
            return "stop"
        return reason


class Strip(Renderer):
    """The command leaves no trace but its closing words (with ``speak_closing``)."""

    def command(self, cmd: Command, out: ChoiceOutput) -> tuple[str, dict[str, Any] | None]:
        """``(closing words or "", None)``: nothing of the command is written."""
        return (cmd.closing if self.speak_closing else ""), None


class Text(Renderer):
    """The command as a canonical text command."""

    def command(self, cmd: Command, out: ChoiceOutput) -> tuple[str, dict[str, Any] | None]:
        """``(canonical text command, None)``, the tag named by the profile's ``tags``."""
        return render_text(cmd, self.tags[cmd.function]), None


class ToolCalls(Renderer):
    """The command as an OpenAI tool call named by the FunctionMap, in the runtime's
    argument shape when the entry gives one."""

    def command(self, cmd: Command, out: ChoiceOutput) -> tuple[str, dict[str, Any] | None]:
        """``("", tool call entry)``: the FunctionMap's Function for ``cmd.function``, at
        the choice's next free tool-call index (none in a non-streamed message)."""
        out.rendered_tools = True
        index = None if out.message else out.new_tool_index()
        spec = self.fmap.spec_for(cmd.function)
        return "", render_tool_call(cmd, spec.match, index, spec.write(cmd))


class Passthrough(Renderer):
    """Changes nothing: the inspector forwards every chunk as it came."""

    changes_nothing = True
    separate_tools = False

    def render(self, findings: list[Finding], out: ChoiceOutput) -> tuple[str, list[dict[str, Any]]]:
        """Never called: a passthrough inspector forwards chunks without rendering."""
        raise AssertionError("passthrough renders nothing")

    def tool_entry(self, te: ToolEntry, out: ChoiceOutput) -> Mapping[str, Any] | None:
        """The upstream's tool call entry, unchanged."""
        return te.entry

    def finish_reason(self, reason: str, out: ChoiceOutput) -> str:
        """The upstream's ``finish_reason``, unchanged."""
        return reason


_RENDERERS: dict[str, type[Renderer]] = {"strip": Strip, "text": Text, "tool_calls": ToolCalls, "passthrough": Passthrough}


def renderer_for(
    output: str, fmap: FunctionMap, tags: Mapping[str, str], speak_closing: bool, forward_thinking: bool = True
) -> Renderer:
    """The renderer of the output mode ``output`` (``KeyError`` for an unknown one);
    ``forward_thinking`` false: ``<think>`` blocks are removed from the content."""
    return _RENDERERS[output](fmap, tags, speak_closing, forward_thinking)
