"""The grammar of adversarial replies (seeded): what a model writes, and what the
runtime must get of it.

A reply is a list of events (content text, a reasoning field, a real tool call, a
delta carrying content beside a tool call or reasoning) that a provider shape
(:mod:`tests.leaks.shapes`) streams. The grammar knows, for the output mode it picks
(``strip`` or ``tool_calls``, thinking removed, the voice FunctionMap
``end_call``/``transfer_call``): the exact speech, the commands (function, source,
endword or callee) and the unmapped tool calls (name, arguments).

Speakable: words in Latin script, CJK and emoji, and look-alike markup spoken as it
is (``a < b``, ``<b>``, ``[1]``, ``{curly}``, "call functions later"). Unspeakable:
IMS commands in the docs' syntax, tool calls in every text form callgate reads
(mapped and unmapped) and as real ``tool_calls``, thinking in every shape (the four
tags, reasoning fields, thinking parts, opened in the prompt), echoes of a real
tool call written beside it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FORMS", "Content", "Mixed", "Reasoning", "Reply", "Tool", "generate"]

WORDS = [
    "Sure", "your order", "ships on Monday", "thanks", "one moment", "I can help with that", "the weather", "is sunny",
    "好的", "感谢您的来电", "您的订单", "已经发货", "请稍等", "😀", "👋", "🎉", "Café", "naïve", "Straße", "ok!", "yes,", "no.",
    "¿Qué tal?", "ДА", "مرحبا",
]
LOOK_ALIKES = [
    "a < b", "<b>bold</b>", "[1]", "{curly}", "call functions later", "x<y", "[note](https://example.com)", "<3",
    "[TOOL]", '{"query": "test"}', "functions.py", "e.g. [a, b]", "5 > 4", "<imsagent", "<thinking about it>",
    "{'a': 1}", "[see page 2]", "end_call later", "<|", "<｜", "[TOOL_CALL]", "{ }", "[]", "()", "<tool>",
]
TAGS = ("think", "thinking", "reasoning", "thought")
FORMS = (
    "hermes", "mistral_list", "mistral_v11", "mistral_args", "llama3_json", "python_tag", "pythonic", "llama4_pythonic",
    "deepseek_v3", "deepseek_v31", "kimi_k2", "glm45", "qwen3_coder", "qwen3_coder_bare", "functions_paren",
    "functions_colon",
)
UNMAPPED = [
    ("get_weather", [("city", ["Paris", "San Francisco", "北京", "São Paulo"])]),
    ("lookup_order", [("order_id", ["A-17", "B-2026", "ZX-9"]), ("detail", ["full", "short"])]),
    ("book_table", [("guests", ["two", "four"]), ("time", ["seven pm", "noon"])]),
]
ENDWORDS = ["Goodbye!", "Thanks for calling, goodbye.", "再见！", "Bye 👋"]
MSGS = ["Transferring you now.", "正在为您转接。", "One moment please."]
CALLEES = ["+14155550123", "+8613800000000", "1001", "sip:agent@example.com"]



@dataclass(frozen=True)
class Content:
    """``delta.content`` text (cut into pieces by the shape)."""

    text: str


@dataclass(frozen=True)
class Reasoning:
    """Thinking in a reasoning field (or a thinking part, in the Mistral shape)."""

    text: str


@dataclass(frozen=True)
class Tool:
    """A real tool call (``delta.tool_calls``)."""

    name: str
    arguments: str
    id: str


@dataclass(frozen=True)
class Mixed:
    """One delta with content beside a tool call or reasoning."""

    text: str
    tool: Tool | None = None
    reasoning: str = ""


Event = Content | Reasoning | Tool | Mixed


@dataclass
class Reply:
    """One reply and what the runtime must get of it (choice 0)."""

    mode: str
    thinking_open: bool = False
    events: list[Event] = field(default_factory=list)
    speech: str = ""
    commands: list[tuple[str, str, str]] = field(default_factory=list)  # (function, source, endword|callee)
    tools: list[tuple[str, Any]] = field(default_factory=list)  # unmapped calls: (name, arguments parsed)
    closing_at_end: str = ""  # a real mapped call's closing words, spoken when the reply ends (strip)
    written: int = 0  # unmapped calls written as text (callgate writes them as tool calls)
    hung_up: bool = False

    def say(self, text: str) -> None:
        """Speech, written as content and heard (unless after a hangup)."""
        self.events.append(Content(text))
        if not self.hung_up:
            self.speech += text

    def unspoken(self, text: str) -> None:
        """Content that is not speech (thinking, a form, a command)."""
        self.events.append(Content(text))


def _args(rng: random.Random, spec: list[tuple[str, list[str]]]) -> dict[str, str]:
    return {k: rng.choice(values) for k, values in spec}


def _py(args: dict[str, str]) -> str:
    return ", ".join(f"{k}='{v}'" for k, v in args.items())


def form_text(form: str, name: str, args: dict[str, str], rng: random.Random) -> str:
    """A call to ``name`` written as text in ``form`` (the shapes of vLLM's parsers)."""
    js = json.dumps(args, ensure_ascii=False)
    nl = rng.choice(["", "\n"])
    if form == "hermes":
        return f'<tool_call>{nl}{{"name": "{name}", "arguments": {js}}}{nl}</tool_call>'
    if form == "mistral_list":
        return f'[TOOL_CALLS]{rng.choice(["", " "])}[{{"name": "{name}", "arguments": {js}}}]'
    if form == "mistral_v11":
        return f"[TOOL_CALLS]{name}{js}"
    if form == "mistral_args":
        return f"[TOOL_CALLS]{name}[ARGS]{js}"
    if form == "llama3_json":
        return f'{{"name": "{name}", "parameters": {js}}}'
    if form == "python_tag":
        return f'<|python_tag|>{{"name": "{name}", "arguments": {js}}}'
    if form == "pythonic":
        return f"[{name}({_py(args)})]"
    if form == "llama4_pythonic":
        return f"<|python_start|>[{name}({_py(args)})]<|python_end|>"
    if form == "deepseek_v3":
        return f"<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>{name}\n```json\n{js}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"
    if form == "deepseek_v31":
        return f"<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>{name}<｜tool▁sep｜>{js}<｜tool▁call▁end｜><｜tool▁calls▁end｜>"
    if form == "kimi_k2":
        return f"<|tool_calls_section_begin|>{nl}<|tool_call_begin|>functions.{name}:0<|tool_call_argument_begin|>{js}<|tool_call_end|>{nl}<|tool_calls_section_end|>"
    if form == "glm45":
        pairs = "".join(f"<arg_key>{k}</arg_key>{nl}<arg_value>{v}</arg_value>{nl}" for k, v in args.items())
        return f"<tool_call>{name}{nl}{pairs}</tool_call>"
    if form in ("qwen3_coder", "qwen3_coder_bare"):
        params = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in args.items())
        body = f"<function={name}>\n{params}</function>"
        return f"<tool_call>\n{body}\n</tool_call>" if form == "qwen3_coder" else body
    if form == "functions_paren":
        return f"functions.{name}({js})"
    return f"functions.{name}:{js}"


def _thought(rng: random.Random) -> str:
    """Thinking text: words, look-alikes, even forms and commands (never acted on);
    never a closing tag."""
    bits = [rng.choice(WORDS + LOOK_ALIKES) for _ in range(rng.randint(1, 5))]
    if rng.random() < 0.3:
        bits.append(rng.choice(['<imsagent_hangup endword="bye"/>', '<tool_call>{"name": "end_call", "arguments": {}}</tool_call>', "[end_call()]"]))
    return " ".join(bits).replace("</", "< /")


def _speech(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))) + rng.choice(["", " ", ". ", "\n"])


class _Builder:
    """Builds one reply event by event, keeping the expectation."""

    def __init__(self, rng: random.Random, mode: str) -> None:
        self.rng = rng
        self.r = Reply(mode)
        self.ids = 0

    def new_call(self) -> tuple[str, dict[str, str]]:
        """An unmapped call unlike the reply's others (the same call twice would be
        an echo of itself), expected as a tool call."""
        while True:
            name, spec = self.rng.choice(UNMAPPED)
            args = _args(self.rng, spec)
            if (name, args) not in self.r.tools:
                self.r.tools.append((name, args))
                return name, args

    def word_start(self, form: str) -> None:
        """The free-text form starts a word: after an ASCII letter or digit in the
        speech (a tool call or thinking cuts it), a space first."""
        if not form.startswith("functions"):
            return
        for ev in reversed(self.r.events):
            if isinstance(ev, (Tool, Reasoning)) or isinstance(ev, Mixed) and ev.reasoning:
                return
            if isinstance(ev, (Content, Mixed)) and ev.text:
                if ev.text[-1] == "_" or (ev.text[-1] < "\u2e80" and ev.text[-1].isalnum()):
                    self.r.say(self.rng.choice([" ", "\n", ", "]))
                return

    def tool_id(self) -> str:
        self.ids += 1
        return f"call_{self.ids}x{self.rng.randrange(1 << 30):08x}"

    def segment(self) -> None:
        rng, r = self.rng, self.r
        kind = rng.choices(
            ["speech", "look", "think", "reasoning", "form", "real", "echo", "mixed", "mixed_reasoning"],
            [30, 12, 10, 7, 12, 6, 4, 4, 3],
        )[0]
        if kind in ("speech", "look"):
            r.say(_speech(rng) if kind == "speech" else rng.choice(LOOK_ALIKES) + " ")  # a space: "functions.py" + "()" would be a call
        elif kind == "think":
            tag = rng.choice(TAGS)
            r.unspoken(f"<{rng.choice([tag, tag.upper(), tag.title()])}>{_thought(rng)}</{tag}>")
        elif kind == "reasoning":
            r.events.append(Reasoning(_thought(rng)))
        elif r.hung_up:
            r.say(_speech(rng))  # after a hangup only speech, which is silenced
        elif kind == "form":
            name, args = self.new_call()
            form = rng.choice(FORMS)
            self.word_start(form)
            r.unspoken(form_text(form, name, args, rng))
            r.written += 1
        elif kind in ("real", "echo", "mixed"):
            name, args = self.new_call()
            tool = Tool(name, json.dumps(args, ensure_ascii=False), self.tool_id())
            if kind == "real":
                r.events.append(tool)
            elif kind == "echo":  # livekit/agents-js#1339: the call written beside itself
                echo = rng.choice([f"{name}({tool.arguments})", f"functions.{name}({tool.arguments})"])
                r.events.append(Mixed(echo, tool))
            else:
                text = _speech(rng)
                r.events.append(Mixed(text, tool))
                r.speech += text
        else:
            text = _speech(rng)
            r.events.append(Mixed(text, reasoning=_thought(rng)))
            r.speech += text

    def command(self, hangup: bool | None = None, how: str | None = None) -> None:
        """A command; ``hangup``/``how`` (``ims``, ``form``, ``real``) picked when not given."""
        rng, r = self.rng, self.r
        hangup = rng.random() < 0.6 if hangup is None else hangup
        how = how or rng.choice(["ims", "form", "real"])
        if hangup:
            endword = rng.choice(ENDWORDS)
            args: dict[str, str] = {"endword": endword}
            closing, key, name, tag = endword, endword, "end_call", f'<imsagent_hangup endword="{endword}"/>'
        else:
            callee, msg = rng.choice(CALLEES), rng.choice(MSGS)
            args = {"callee": callee, "msg": msg}
            closing, key, name = msg, callee, "transfer_call"
            tag = f'<imsagent_transfer_call caller="111111", callee="{callee}", err_msg="Sorry, the line is busy.", msg="{msg}"/>'
        spoken = closing if r.mode == "strip" else ""
        function = "hangup" if hangup else "transfer"
        if how == "real":
            r.events.append(Tool(name, json.dumps(args, ensure_ascii=False), self.tool_id()))
            r.commands.append((function, "tool_call", key))
            r.closing_at_end = spoken
            return
        form = rng.choice(FORMS)
        if how == "form":
            self.word_start(form)
        r.unspoken(tag if how == "ims" else form_text(form, name, args, rng))
        r.commands.append((function, "text_command" if how == "ims" else "text_tool_call", key))
        r.speech += spoken
        r.hung_up = hangup


def generate(rng: random.Random) -> Reply:
    """One reply of the grammar."""
    b = _Builder(rng, rng.choice(["strip", "strip", "tool_calls"]))
    if rng.random() < 0.1:  # a model whose template opened <think> in the prompt
        b.r.thinking_open = True
        b.r.unspoken(_thought(rng) + "</think>")
    segments = rng.randint(1, 6)
    at = rng.randint(0, segments) if rng.random() < 0.5 else -1
    twice = at >= 0 and rng.random() < 0.2  # a transfer written as text, then a hangup
    for i in range(segments + 1):
        if i == at:
            if twice:
                b.command(hangup=False, how=rng.choice(["ims", "form"]))
                b.segment()
                b.command(hangup=True, how=rng.choice(["ims", "form"]))
            else:
                b.command()
        if i < segments:
            b.segment()
    b.r.speech += b.r.closing_at_end
    return b.r
