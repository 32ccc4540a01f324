"""Control events: what callgate tells the call layer (one pydantic model per kind).

Kinds (``type``, :class:`~proxy.storage.statuses.EventType`): ``hangup``,
``transfer``, ``command.rejected``, ``call.ended``. Every event has ``id`` (``evt_``
+ 24 hex, unique), ``seq`` (1, 2, ... within the call; the SSE ``id:``),
``call_id`` (the runtime's id), ``generation`` (1, or 2, 3, ... for a later call
under an id whose call had ended), ``created_at`` (UTC, ISO 8601) and ``source``:
``text_command`` | ``tool_call`` | ``text_tool_call`` (a tool call written as text) |
``phrase`` (a goodbye phrase) | ``call_layer`` | ``idle_timeout`` |
``response_finished`` | ``limits`` | ``retell`` | ``conversation_relay`` | ``openai_sip``
(a front door's own end of a call). A ``command.rejected`` event's ``code`` is a
:class:`~proxy.core.commands.RejectReason`; its ``reason`` says it in words.

``closing_text`` is what the call layer must let finish playing before it acts (the
hangup ``endword``, the transfer ``msg``); ``reply_text`` is everything the runtime
was sent to speak in that reply up to and including it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from ..core.commands import HANGUP, AnyCommand, Command, RejectReason
from ..core.ids import new_id
from .model import Call

__all__ = [
    "CallEndedEvent",
    "CommandRejectedEvent",
    "ControlEvent",
    "HangupEvent",
    "Source",
    "TransferEvent",
    "control_event_adapter",
    "event_for_command",
]

Source = Literal[
    "text_command", "tool_call", "text_tool_call", "phrase", "call_layer", "idle_timeout", "response_finished", "limits", "retell",
    "conversation_relay", "openai_sip",
]


def _id() -> str:
    return new_id("evt_")


def _now() -> datetime:
    return datetime.now(UTC)


class _Event(BaseModel):
    id: str = Field(default_factory=_id)
    seq: int = 0
    call_id: str
    generation: int = 1
    created_at: datetime = Field(default_factory=_now)
    source: Source


class HangupEvent(_Event):
    """Hang up once ``closing_text`` has played."""

    type: Literal["hangup"] = "hangup"
    endword: str = ""
    closing_text: str = ""
    reply_text: str = ""
    attrs: dict[str, str] = Field(default_factory=dict, description="every attribute/argument as written")
    tool_call_id: str | None = None
    raw: str = ""


class TransferEvent(_Event):
    """Transfer to ``callee`` once ``closing_text`` has played; play ``err_msg`` if it fails."""

    type: Literal["transfer"] = "transfer"
    caller: str = ""
    callee: str
    msg: str = ""
    err_msg: str = ""
    closing_text: str = ""
    reply_text: str = ""
    attrs: dict[str, str] = Field(default_factory=dict)
    tool_call_id: str | None = None
    raw: str = ""


class CommandRejectedEvent(_Event):
    """A control command that was not carried out; ``spoken`` is what was said instead.
    ``count`` > 1: that many commands of one reply, rejected past the first few."""

    type: Literal["command.rejected"] = "command.rejected"
    function: str | None = None
    code: RejectReason
    reason: str
    count: int = 1
    spoken: str = ""
    attrs: dict[str, str] = Field(default_factory=dict)
    raw: str = ""


class CallEndedEvent(_Event):
    """The call is over; the end function runs next. Always the call's last event."""

    type: Literal["call.ended"] = "call.ended"
    reason: str


ControlEvent = Annotated[
    HangupEvent | TransferEvent | CommandRejectedEvent | CallEndedEvent, Field(discriminator="type")
]
control_event_adapter: TypeAdapter[Any] = TypeAdapter(ControlEvent)


def event_for_command(cmd: AnyCommand, call: Call, reply_text: str) -> HangupEvent | TransferEvent | CommandRejectedEvent:
    """The control event a command found in a reply of ``call`` stands for."""
    attrs = dict(cmd.args)
    if not isinstance(cmd, Command):
        return CommandRejectedEvent(
            call_id=call.call_id,
            generation=call.generation,
            source=cmd.source,  # type: ignore[arg-type]
            function=cmd.function,
            code=cmd.code,
            reason=cmd.reason,
            spoken=cmd.closing,
            attrs=attrs,
            raw=cmd.raw,
        )
    common: dict[str, Any] = {
        "call_id": call.call_id,
        "generation": call.generation,
        "source": cmd.source,
        "closing_text": cmd.closing,
        "reply_text": reply_text,
        "attrs": attrs,
        "tool_call_id": cmd.tool_call_id,
        "raw": cmd.raw,
    }
    if cmd.function == HANGUP:
        return HangupEvent(endword=attrs.get("endword", ""), **common)
    return TransferEvent(
        caller=attrs.get("caller", ""),
        callee=attrs.get("callee", ""),
        msg=attrs.get("msg", ""),
        err_msg=attrs.get("err_msg", ""),
        **common,
    )
