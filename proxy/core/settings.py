"""What the reply inspector is told (sans-IO): plain settings, built from the
profile and ``commands:`` in the config, and the one error it raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .commands import HANGUP, TRANSFER
from .function_map import FunctionSpec
from .thinking import DEFAULT_THINK_TAGS

__all__ = ["InspectorSettings", "InvalidChunk", "OutputMode"]


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
