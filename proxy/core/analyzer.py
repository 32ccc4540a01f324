"""Per-choice analysis of one reply (sans-IO): what the model wrote, as findings.

A :class:`ChoiceAnalyzer` is fed one choice's ``delta.content`` pieces
(:meth:`~ChoiceAnalyzer.feed`) and ``delta.tool_calls`` entries
(:meth:`~ChoiceAnalyzer.feed_tool`) in order, and :meth:`~ChoiceAnalyzer.close`d
once at its end. It answers with findings and never touches JSON:

* ``str``: text that is no part of a command, spoken as it is;
* :class:`Silenced`: text after a hangup in the same reply (only ``passthrough``
  lets it through);
* :class:`Found`: a control command, valid or rejected with its reason;
* :class:`ToolEntry`: a ``delta.tool_calls`` entry, assembled, marked ``mapped``
  when the FunctionMap names its function (it becomes a :class:`Found` when the
  choice finishes);
* :class:`~proxy.core.thinking.Thinking`: ``<think>…</think>`` inside the content
  (:mod:`proxy.core.thinking`): never scanned for commands, never speech;
* :class:`TextToolCall`: a tool call the model wrote as text (:mod:`proxy.core.text_tools`)
  whose function the FunctionMap does not map: the runtime gets it as a real tool
  call. One it maps is a :class:`Found` command (source ``text_tool_call``).

Content goes through three stages, each holding back only what could still be the
start of its own form: thinking first (never scanned further), then the text tool
calls a profile watches (``text_tool_calls``), then the text commands. A call written
as text that repeats a tool call the reply sent as ``tool_calls`` (same name, same
arguments) is that call again: neither spoken nor a second call. A text call also
flushes the command parser: a command cannot span it.

Goodbye phrases (``end_call_phrases``, :mod:`proxy.core.phrases`): at the end of a
reply that ended normally, with no command, no tool call and no transfer, whose
speech ends with a phrase, the analysis acts as on a hangup with that phrase as its
``endword`` (source ``phrase``; the phrase was already spoken).

Rules the analysis applies in every output mode: a command after a hangup in the
same reply is rejected, and so is a second transfer; a hangup asks the
:class:`HangupPolicy` (the call domain's "one hangup per call") and is rejected when
it refuses; of the rejected commands only the first ``spoken_rejections`` have their
``err_msg`` spoken.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .capped import CappedText
from .commands import (
    HANGUP,
    TRANSFER,
    AnyCommand,
    Command,
    RejectedCommand,
    RejectReason,
    reject,
    validate,
)
from .function_map import FunctionMap
from .ids import new_id
from .parser import CommandParser, ParsedTag, ParserEvent, UnterminatedTag
from .phrases import GoodbyePhrases
from .settings import InspectorSettings
from .text_tools import TextCall, TextToolScanner
from .thinking import DEFAULT_THINK_TAGS, ThinkSplitter, Thinking
from .tool_calls import Fed, ToolCall, ToolCallAssembler

__all__ = [
    "ChoiceAnalyzer",
    "Finding",
    "Found",
    "HangupPolicy",
    "NoCallPolicy",
    "Silenced",
    "TextToolCall",
    "Thinking",
    "ToolEntry",
]



@dataclass(frozen=True, slots=True)
class Silenced:
    """Text that came after a hangup in the same reply: never spoken (but in
    ``passthrough``)."""

    text: str


@dataclass(frozen=True, slots=True)
class Found:
    """A control command the model wrote, valid or rejected. ``spoken``: a rejected
    command's ``err_msg`` is spoken (only the first few of a reply are)."""

    command: AnyCommand
    spoken: bool = True


@dataclass(frozen=True, slots=True)
class ToolEntry:
    """A ``delta.tool_calls`` entry as it came; ``index``: the assembler's index of
    its call; ``mapped``: the FunctionMap names its function; ``fed``: what the
    entry did to its call; ``call_id``: the call's id when callgate made it up (the
    model sent ``""``), else ``None``."""

    entry: Mapping[str, Any] = field(hash=False)
    index: int
    mapped: bool
    fed: Fed = Fed.MORE
    call_id: str | None = None


@dataclass(frozen=True, slots=True)
class TextToolCall:
    """A tool call written as text whose function the FunctionMap does not map: the
    runtime gets it as a tool call with ``id`` (made up, ``call_...``), ``name`` and
    ``arguments`` (a JSON object's text). ``form``: how it was written
    (:data:`~proxy.core.text_tools.FORMS`); ``raw``: the text as written."""

    id: str
    name: str
    arguments: str
    form: str
    raw: str


Finding = str | Silenced | Found | Thinking | TextToolCall


class HangupPolicy(Protocol):
    """What the call domain says about a hangup (``proxy.calls`` implements it)."""

    def refuse_hangup(self, source: str, act: bool) -> RejectReason | None:
        """Why a hangup may not happen now, or ``None``. With ``act`` (choice 0, the
        one the runtime speaks) an allowed hangup is recorded as the call's, with its
        ``source`` (``text_command`` or ``tool_call``)."""
        ...


class NoCallPolicy:
    """The policy when there is no call to ask: every hangup is allowed."""

    def refuse_hangup(self, source: str, act: bool) -> RejectReason | None:
        """Never a refusal."""
        return None


class ChoiceAnalyzer:
    """One choice of one reply; see the module docstring.

    ``tags``: built-in function -> tag name; ``max_command_chars``: the most chars
    held back as a possible command; ``transfer_allow``: callee patterns.
    """

    __slots__ = (
        "index", "parser", "tools", "hung_up", "transferred", "rejections", "finished", "raw", "reasoning", "_think",
        "_fmap", "_by_tag", "_allow", "_policy", "_spoken_rejections", "_texts", "_text_calls", "_tool_names",
        "_acted", "_phrases", "_commanded",
    )

    def __init__(
        self,
        index: int,
        *,
        tags: Mapping[str, str],
        fmap: FunctionMap,
        policy: HangupPolicy,
        max_command_chars: int = 1024,
        transfer_allow: tuple[str, ...] = (),
        max_recorded_chars: int = 1 << 30,
        spoken_rejections: int = 1,
        think_tags: tuple[str, ...] = DEFAULT_THINK_TAGS,
        text_tool_calls: tuple[str, ...] = (),
        thinking_open: bool = False,
        end_call_phrases: tuple[str, ...] = (),
    ) -> None:
        self.index = index
        self.parser = CommandParser(tags.values(), max_command_chars)
        self._think = ThinkSplitter(think_tags, opened=thinking_open)
        self._texts = TextToolScanner(text_tool_calls, max_command_chars) if text_tool_calls else None
        self._text_calls: list[TextToolCall] = []  # unmapped calls written as text, for the record
        self._tool_names: set[str] = set()  # names of the reply's tool_calls: their text is an echo
        self._acted: set[str] = set()  # built-in functions a text tool call already stood for
        self._phrases = GoodbyePhrases(end_call_phrases) if end_call_phrases else None
        self._commanded = False  # a command or a tool call came: no goodbye phrase
        self.reasoning = CappedText(max_recorded_chars)  # the thinking, in content or reasoning fields
        self.tools = ToolCallAssembler()
        self.hung_up = False
        self.transferred = False
        self.rejections = 0
        self.finished = False
        self._spoken_rejections = spoken_rejections
        self.raw = CappedText(max_recorded_chars)  # the content as received, for the record
        self._fmap = fmap
        self._by_tag = {tag: function for function, tag in tags.items()}
        self._allow = transfer_allow
        self._policy = policy

    @classmethod
    def for_settings(
        cls, index: int, s: InspectorSettings, *, tags: Mapping[str, str], fmap: FunctionMap, policy: HangupPolicy
    ) -> ChoiceAnalyzer:
        """The analyzer of choice ``index`` under a profile's inspector settings."""
        return cls(
            index, tags=tags, fmap=fmap, policy=policy, max_command_chars=s.max_command_chars, transfer_allow=s.transfer_allow,
            max_recorded_chars=s.max_recorded_chars, spoken_rejections=s.spoken_rejections, think_tags=s.think_tags,
            text_tool_calls=s.text_tool_calls, thinking_open=s.thinking_open, end_call_phrases=s.end_call_phrases,
        )

    def quiet(self) -> bool:
        """Whether nothing is held (no thinking, no command begun, no hangup yet): only
        then can a piece be plain speech (:meth:`take_plain`)."""
        return self._think.quiet and self.parser.quiet and not self.hung_up

    def take_plain(self, text: str) -> bool:
        """The hot path of :meth:`feed`: when ``text`` is plain speech that
        every stage would give back as it is, it is taken (recorded, heard) and this is
        ``True``; else ``False``, and nothing changed."""
        texts = self._texts
        if "<" not in text and self._think.quiet and self.parser.quiet and not self.hung_up and (texts is None or texts.plain(text)):
            self.raw.append(text)
            if self._phrases is not None:
                self._phrases.hear(text)
            return True
        return False

    def feed(self, text: str) -> list[Finding] | None:
        """A piece of ``delta.content``; ``None`` when it is plain speech that goes
        on exactly as it came (the hot path, :meth:`take_plain`)."""
        if self.take_plain(text):
            return None
        self.raw.append(text)
        pieces = self._think.feed(text)
        if len(pieces) == 1 and pieces[0] is text:
            if self._texts is not None:
                calls = self._texts.feed(text)
                if not (len(calls) == 1 and calls[0] is text):
                    return self._speech(calls)
            items = self.parser.feed(text)
            if len(items) == 1 and items[0] is text and not self.hung_up:
                if self._phrases is not None:
                    self._phrases.hear(text)
                return None
            return [self._finding(item) for item in items]
        return self._split(pieces)

    def feed_reasoning(self, text: str) -> None:
        """A piece of a ``reasoning_content``/``reasoning`` delta (or a thinking part):
        recorded, never scanned. Before any content, it says the server sends thinking
        apart: content is speech from its start (see ``thinking_open``)."""
        self._think.sent_apart()
        self.reasoning.append(text)
        if self._texts is not None:
            self._texts.word_break()

    def feed_tool(self, entry: Mapping[str, Any]) -> ToolEntry:
        """One ``delta.tool_calls`` entry."""
        call, fed = self.tools.feed(entry)
        self._commanded = True
        if self._texts is not None:
            self._texts.word_break()
        if call.name and call.name not in self._tool_names:
            self._tool_names.add(call.name)
            if self._texts is not None:
                self._texts.add_name(call.name)
        made_up = call.id if call.generated_id else None
        return ToolEntry(entry, call.index, self._fmap.function_for(call.name) is not None, fed, made_up)

    def close(self, *, ended: bool = True) -> list[Finding]:
        """The choice ended: what the stages still held, the commands of the mapped
        tool calls, and (``ended``: the reply ended normally, not cut) a goodbye phrase."""
        self.finished = True
        found = self._split(self._think.close())
        if self._texts is not None:
            found += self._speech(self._texts.close())
        found += [self._finding(item) for item in self.parser.close()]
        for call in self.tools.calls():
            cmd = self._fmap.command(call, self._allow)
            if cmd is not None and cmd.function not in self._acted:
                found.append(self._found(self._decide(cmd)))
        if ended and self._phrases is not None and not (self._commanded or self.hung_up or self.transferred):
            found += self._phrase()
        return found

    def tool_calls(self) -> list[dict[str, Any]]:
        """Every assembled tool call, then the unmapped ones written as text:
        ``[{"id", "name", "arguments"}]``."""
        calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in self.tools.calls()]
        return calls + [{"id": t.id, "name": t.name, "arguments": t.arguments} for t in self._text_calls]

    @property
    def thinking_unopened(self) -> bool:
        """A thinking closing tag came with no opening one (not opened in the prompt)."""
        return self._think.unopened > 0

    def _split(self, pieces: list[str | Thinking]) -> list[Finding]:
        """Speech through the later stages; thinking recorded and passed on as it is."""
        found: list[Finding] = []
        for piece in pieces:
            if isinstance(piece, Thinking):
                self.reasoning.append(piece.text)
                found.append(piece)
                if self._texts is not None:
                    self._texts.word_break()  # speech after thinking starts a word
            elif self._texts is not None:
                found += self._speech(self._texts.feed(piece))
            else:
                found += [self._finding(item) for item in self.parser.feed(piece)]
        return found

    def _speech(self, items: list[str | TextCall]) -> list[Finding]:
        """Speech through the command parser; calls written as text to findings."""
        found: list[Finding] = []
        for item in items:
            if isinstance(item, TextCall):
                found += [self._finding(i) for i in self.parser.close()]  # what it held cannot go on past the call
                found += self._text_call(item)
            else:
                found += [self._finding(i) for i in self.parser.feed(item)]
        return found

    def _text_call(self, tc: TextCall) -> list[Finding]:
        """A call written as text: an echo of a tool call is nothing; a mapped one a
        command; an unmapped one a tool call for the runtime (none after a hangup)."""
        if tc.name in self._tool_names and self._echoes(tc):
            return []
        self._commanded = True
        call = ToolCall(-1, None, tc.name, tc.arguments)
        cmd = self._fmap.command(call, self._allow, source="text_tool_call", raw=tc.raw)
        if cmd is not None:
            if cmd.function is not None:
                self._acted.add(cmd.function)
            return [self._found(self._decide(cmd))]
        if self.hung_up:
            return []
        unmapped = TextToolCall(new_id("call_"), tc.name, tc.arguments, tc.form, tc.raw)
        self._text_calls.append(unmapped)
        return [unmapped]

    def _echoes(self, tc: TextCall) -> bool:
        """``tc`` is a tool call of this reply written again: same name, same arguments."""
        args = _parsed(tc.arguments)
        return any(c.name == tc.name and _parsed(c.arguments or "{}") == args for c in self.tools.calls())

    def _phrase(self) -> list[Finding]:
        """A hangup for the goodbye phrase the speech ends with (none when the call
        domain refuses it: the phrase is no command the model wrote)."""
        phrase = self._phrases.ending() if self._phrases is not None else None
        if phrase is None:
            return []
        cmd = self._decide(Command(HANGUP, {"endword": phrase}, "phrase", phrase))
        return [Found(cmd)] if isinstance(cmd, Command) else []

    def _finding(self, item: ParserEvent) -> Finding:
        if isinstance(item, str):
            if self.hung_up:
                return Silenced(item)
            if self._phrases is not None:
                self._phrases.hear(item)
            return item
        self._commanded = True
        return self._found(self._decide(self._command(item)))

    def _found(self, cmd: AnyCommand) -> Found:
        if isinstance(cmd, Command):
            return Found(cmd)
        self.rejections += 1
        return Found(cmd, spoken=self.rejections <= self._spoken_rejections)

    def _command(self, item: ParsedTag | UnterminatedTag) -> AnyCommand:
        function = self._by_tag.get(item.tag)
        if isinstance(item, UnterminatedTag):
            return RejectedCommand(function, {}, "text_command", item.raw, RejectReason.UNTERMINATED)
        return validate(function or item.tag, item.attrs, source="text_command", raw=item.raw, transfer_allow=self._allow)

    def _decide(self, cmd: AnyCommand) -> AnyCommand:
        """The reply's and the call's rules on top of the command's own validity."""
        if self.hung_up:
            return reject(cmd, RejectReason.AFTER_HANGUP)
        if isinstance(cmd, Command) and cmd.function == TRANSFER:
            if self.transferred:
                return reject(cmd, RejectReason.SECOND_TRANSFER)
            self.transferred = True
        if isinstance(cmd, Command) and cmd.function == HANGUP:
            self.hung_up = True  # even a refused one: nothing is spoken after it
            refusal = self._policy.refuse_hangup(cmd.source, self.index == 0)
            if refusal is not None:
                return reject(cmd, refusal)
        return cmd



_UNPARSED = object()


def _parsed(text: str) -> Any:
    """JSON ``text`` as a value, or a marker no value equals."""
    try:
        return json.loads(text)
    except ValueError:
        return _UNPARSED
