"""WebSocket frames from the platforms' front doors, read as JSON objects.

The WebSocket platforms (Retell's custom LLM, Twilio and Telnyx ConversationRelay)
send one JSON object per text frame. :func:`read_object` reads one frame; a frame
that is too big, not JSON or not an object raises :class:`FrameError`, whose
:class:`FrameCode` the server turns into its close code and log line.

Exceptions::

    ValueError
    └── FrameError        .code: FrameCode (too_big, invalid_json, not_object, bad_field, protocol_error)
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

__all__ = ["FrameCode", "FrameError", "read_object", "text_field"]


class FrameCode(StrEnum):
    """Why a frame was refused (a metric label and the close reason)."""

    TOO_BIG = "too_big"  # over server.max_body_bytes
    INVALID_JSON = "invalid_json"  # not UTF-8 JSON
    NOT_OBJECT = "not_object"  # JSON, but not an object
    BAD_FIELD = "bad_field"  # a field of the wrong type
    PROTOCOL_ERROR = "protocol_error"  # the socket broke the WebSocket protocol (a bad opcode, text that is not UTF-8, ...)


class FrameError(ValueError):
    """A frame callgate cannot read: ``code`` says why, the message says where."""

    def __init__(self, code: FrameCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def read_object(frame: str | bytes, max_bytes: int) -> dict[str, Any]:
    """One text frame (``max_bytes``: the most it may hold, in UTF-8 bytes) as a JSON
    object. Raises :class:`FrameError`."""
    size = len(frame) if isinstance(frame, bytes) else len(frame.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise FrameError(FrameCode.TOO_BIG, f"the frame holds {size} bytes, over the {max_bytes} allowed")
    try:
        data = json.loads(frame)
    except (ValueError, UnicodeDecodeError) as e:
        raise FrameError(FrameCode.INVALID_JSON, f"the frame is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise FrameError(FrameCode.NOT_OBJECT, f"the frame is JSON {type(data).__name__}, not an object")
    return data


def text_field(data: dict[str, Any], name: str, default: str = "") -> str:
    """``data[name]`` as a string (``default`` when absent or null). Raises
    :class:`FrameError` (``bad_field``) for another type."""
    value = data.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise FrameError(FrameCode.BAD_FIELD, f"{name!r} must be a string, not {type(value).__name__}")
    return value
