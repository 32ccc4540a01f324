"""The normalized control command, its validation and its renderings (sans-IO).

A control command is what the model writes: a text command (``<imsagent_hangup
endword=".."/>``) or a tool call that the FunctionMap maps to a built-in function.
Both become one :class:`Command` with ``function`` ``"hangup"`` or ``"transfer"``
and string ``args``: ``endword`` (hangup), ``caller``, ``callee``, ``msg``,
``err_msg`` (transfer; names from the IMS doc), plus any unknown attribute the
model added (kept as written, e.g. ``outcome``).

A command that cannot be carried out becomes a :class:`RejectedCommand` with a
``code`` (:class:`RejectReason`: what travels to events, metrics and records) and a
``reason`` (a sentence for people); its text is never spoken, only its ``err_msg``
when it has one.

Renderings (``commands.output``): :func:`render_text` gives the canonical tag
(serialized by lxml, so values are escaped correctly); :func:`render_tool_call`
gives an OpenAI ``tool_calls`` delta entry (OpenAI API reference, chat completion
chunk).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any

from lxml import etree

from .ids import new_id

__all__ = [
    "HANGUP",
    "REASONS",
    "TRANSFER",
    "AnyCommand",
    "Command",
    "RejectReason",
    "RejectedCommand",
    "callee_allowed",
    "callee_shape_ok",
    "new_tool_call_id",
    "normalize_args",
    "ordered_args",
    "reject",
    "render_text",
    "render_tool_call",
    "validate",
]

HANGUP = "hangup"
TRANSFER = "transfer"

# Attribute order of the canonical rendering, as in the IMS doc.
_ORDER = {HANGUP: ("endword",), TRANSFER: ("caller", "callee", "err_msg", "msg")}


class RejectReason(StrEnum):
    """Why a control command was not carried out: the ``code`` of its
    ``command.rejected`` event and of ``callgate_commands_total{reason}``."""

    NO_CALLEE = "no_callee"  # a transfer without callee
    BAD_CALLEE = "bad_callee"  # a callee that is no phone number or sip:/tel: URI
    NOT_ALLOWED = "not_allowed"  # a callee outside commands.transfer_allow
    UNKNOWN_FUNCTION = "unknown_function"  # a tag or tool call no built-in function has
    BAD_ARGUMENTS = "bad_arguments"  # a transfer tool call whose arguments are not a JSON object
    UNTERMINATED = "unterminated"  # a text command not closed before the reply ended
    AFTER_HANGUP = "after_hangup"  # a command after a hangup in the same reply
    SECOND_TRANSFER = "second_transfer"  # a second transfer in the same reply
    DUPLICATE_HANGUP = "duplicate_hangup"  # the call hung up already
    CALL_ENDED = "call_ended"  # the call ended while the reply was still streaming
    OVER_LIMIT = "over_limit"  # past limits.rejected_events_per_reply: counted on one event


# The sentence each code stands for (a few add what they found).
REASONS: Mapping[RejectReason, str] = {
    RejectReason.NO_CALLEE: "transfer without callee",
    RejectReason.BAD_CALLEE: "callee is not a phone number (E.164: +, digits, * #) or a sip:/tel: URI",
    RejectReason.NOT_ALLOWED: "callee is not in commands.transfer_allow",
    RejectReason.UNKNOWN_FUNCTION: "unknown function",
    RejectReason.BAD_ARGUMENTS: "tool call arguments are not a JSON object",
    RejectReason.UNTERMINATED: "command not closed before the reply ended",
    RejectReason.AFTER_HANGUP: "command after a hangup in the same reply",
    RejectReason.SECOND_TRANSFER: "a second transfer in the same reply",
    RejectReason.DUPLICATE_HANGUP: "duplicate hangup: the call already hung up",
    RejectReason.CALL_ENDED: "the call has ended",
    RejectReason.OVER_LIMIT: "more commands rejected in this reply",
}


@dataclass(frozen=True, slots=True)
class Command:
    """A valid control command.

    ``source``: ``"text_command"`` or ``"tool_call"``; ``raw``: the tag as written or
    the tool call's arguments string; ``tool_call_id``: the model's id (tool calls);
    ``tool_extra``: the model's tool call's fields callgate does not read
    (``extra_content``, ...), kept when it is rendered as a tool call again.
    """

    function: str
    args: Mapping[str, str] = field(hash=False)
    source: str
    raw: str
    tool_call_id: str | None = None
    tool_extra: Mapping[str, Any] | None = field(default=None, hash=False, compare=False)

    @property
    def closing(self) -> str:
        """The words the caller hears as the command takes effect: hangup ``endword``,
        transfer ``msg``."""
        return self.args.get("endword" if self.function == HANGUP else "msg", "")


@dataclass(frozen=True, slots=True)
class RejectedCommand:
    """A control command that will not be carried out: ``code`` says why, ``reason``
    in words (:data:`REASONS`, sometimes with what was found).

    ``function`` is ``None`` when it is not even known which function was meant.
    """

    function: str | None
    args: Mapping[str, str] = field(hash=False)
    source: str
    raw: str
    code: RejectReason
    reason: str = ""
    tool_call_id: str | None = None

    def __post_init__(self) -> None:
        if not self.reason:
            object.__setattr__(self, "reason", REASONS[self.code])

    @property
    def closing(self) -> str:
        """What the caller hears instead: the command's ``err_msg``, if any."""
        return self.args.get("err_msg", "")


AnyCommand = Command | RejectedCommand


def normalize_args(args: Mapping[str, Any]) -> dict[str, str]:
    """Lower-case names; values to ``str`` (JSON for lists/objects); ``None`` dropped."""
    out: dict[str, str] = {}
    for k, v in args.items():
        if v is None:
            continue
        if isinstance(v, str):
            out[str(k).lower()] = v
        elif isinstance(v, (dict, list)):
            out[str(k).lower()] = json.dumps(v, ensure_ascii=False)
        elif isinstance(v, bool):
            out[str(k).lower()] = "true" if v else "false"
        else:
            out[str(k).lower()] = str(v)
    return out


# A callee is a phone number (E.164 digits, an optional +, and * and # for
# extensions) or a sip:/sips:/tel: URI: never text a call layer could run or inject.
_CALLEE = re.compile(r"^(?:\+?[0-9*#]{1,32}|(?:sips?|tel):[A-Za-z0-9+*#@._;=%:-]{1,200})$")


def callee_shape_ok(callee: str) -> bool:
    """Whether ``callee`` is a phone number or a ``sip:``/``tel:`` URI."""
    return bool(_CALLEE.match(callee))


def callee_allowed(callee: str, patterns: Sequence[str]) -> bool:
    """``True`` when ``patterns`` is empty or ``callee`` matches one of them
    (exact number or shell-style pattern such as ``+86571*``)."""
    return not patterns or any(fnmatchcase(callee, p) for p in patterns)


def validate(
    function: str,
    args: Mapping[str, str],
    *,
    source: str,
    raw: str,
    transfer_allow: Sequence[str] = (),
    tool_call_id: str | None = None,
) -> AnyCommand:
    """Build the command, or reject it with a reason.

    A hangup needs nothing. A transfer needs a ``callee`` that is a phone number or
    a ``sip:``/``tel:`` URI, and that the allow-list admits.
    """
    if function == TRANSFER:
        callee = args.get("callee", "").strip()
        if not callee:
            return RejectedCommand(function, args, source, raw, RejectReason.NO_CALLEE, tool_call_id=tool_call_id)
        if not callee_shape_ok(callee):
            return RejectedCommand(function, args, source, raw, RejectReason.BAD_CALLEE, tool_call_id=tool_call_id)
        if not callee_allowed(callee, transfer_allow):
            reason = f"callee {callee!r} is not in commands.transfer_allow"
            return RejectedCommand(function, args, source, raw, RejectReason.NOT_ALLOWED, reason, tool_call_id)
    elif function != HANGUP:
        reason = f"unknown function {function!r}"
        return RejectedCommand(None, args, source, raw, RejectReason.UNKNOWN_FUNCTION, reason, tool_call_id)
    return Command(function, args, source, raw, tool_call_id)


def reject(cmd: AnyCommand, code: RejectReason) -> RejectedCommand:
    """The same command, rejected for ``code``."""
    return RejectedCommand(cmd.function, cmd.args, cmd.source, cmd.raw, code, tool_call_id=cmd.tool_call_id)


def _ordered(cmd: Command) -> list[tuple[str, str]]:
    known = _ORDER.get(cmd.function, ())
    items = [(k, cmd.args[k]) for k in known if k in cmd.args]
    items += [(k, v) for k, v in cmd.args.items() if k not in known]
    return items


def ordered_args(cmd: Command) -> dict[str, str]:
    """The command's fields in the IMS doc's order, then the unknown ones."""
    return dict(_ordered(cmd))


def render_text(cmd: Command, tag: str) -> str:
    """The canonical text command, e.g. ``<imsagent_hangup endword="Bye &amp; thanks"/>``."""
    el = etree.Element(tag)
    for k, v in _ordered(cmd):
        try:
            el.set(k, v)
        except ValueError:  # a name that is not a valid XML name is left out
            continue
    return etree.tostring(el, encoding="unicode")


def new_tool_call_id() -> str:
    """An id in OpenAI's ``call_...`` form for tool calls callgate writes itself."""
    return new_id("call_")


def render_tool_call(cmd: Command, name: str, index: int | None, arguments: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An OpenAI tool call named ``name`` (the FunctionMap's MatchFunction), arguments
    as a JSON string: ``arguments`` when given (the runtime's shape), else the
    command's fields. ``index`` is set for streamed deltas, ``None`` for a message."""
    entry: dict[str, Any] = {}
    if index is not None:
        entry["index"] = index
    entry["id"] = cmd.tool_call_id or new_tool_call_id()
    entry["type"] = "function"
    args = dict(arguments) if arguments is not None else ordered_args(cmd)
    entry["function"] = {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}
    for key, value in (cmd.tool_extra or {}).items():
        entry.setdefault(key, value)
    return entry
