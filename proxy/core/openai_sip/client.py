"""Client events callgate sends on the sideband, and the function outputs it writes.

Source: ``shared/reference/realtime-sip.md`` §5.

* A function call's result: Realtime ``conversation.item.create`` with a
  ``function_call_output`` item; Live ``response.item.create`` with the same item.
  Then one ``response.create`` per batch (Live never continues by itself).
* A closing phrase (a hangup's ``endword``, a transfer's ``msg``): Realtime asks for a
  response of its own, ``response.create`` with ``instructions`` to say it,
  ``tool_choice: "none"`` and ``metadata: {"callgate": "closing"}`` (its
  ``response.created`` is known by that tag); Live has the voice model say it,
  ``session.commentary.append`` for the delegation.

Every event carries an ``event_id`` (``cg_…``) so an ``error`` naming it is traced
back (Live echoes it as ``client_event_id``).
"""

from __future__ import annotations

import json
from typing import Any

from .api import Api

__all__ = ["CLOSING_TAG", "commentary", "encode", "error_output", "function_output", "ok_output", "response_create"]

CLOSING_TAG = "closing"


def function_output(api: Api, call_id: str, output: str) -> dict[str, Any]:
    """The output of function call ``call_id`` (``output``: a string, JSON by convention)."""
    item = {"type": "function_call_output", "call_id": call_id, "output": output}
    kind = "response.item.create" if api is Api.LIVE else "conversation.item.create"
    return {"type": kind, "event_id": f"cg_out_{call_id}"[:64], "item": item}


def response_create(api: Api, say: str = "", n: int = 0) -> dict[str, Any]:
    """``response.create`` (``n`` numbers its ``event_id``); with ``say`` (Realtime
    only), a response that says those words and calls no tool, tagged
    :data:`CLOSING_TAG`."""
    event: dict[str, Any] = {"type": "response.create", "event_id": f"cg_resp_{n}"}
    if say and api is Api.REALTIME:
        event["response"] = {
            "instructions": f"Say exactly this to the caller, and nothing else: {say}",
            "tool_choice": "none",
            "metadata": {"callgate": CLOSING_TAG},
        }
    return event


def commentary(delegation_id: str, text: str, n: int = 0) -> dict[str, Any]:
    """Live: ``session.commentary.append``: the voice model says ``text`` (paraphrased)."""
    return {"type": "session.commentary.append", "event_id": f"cg_say_{n}", "content": text, "delegation_id": delegation_id}


def ok_output(result: str) -> str:
    """A mapped function's success output: ``{"ok": true, "result": …}``."""
    return json.dumps({"ok": True, "result": result}, ensure_ascii=False)


def error_output(error: str, code: str) -> str:
    """A function's error output, for the model to speak: ``{"ok": false, "error": …,
    "code": …}`` (``code``: a :class:`~proxy.core.commands.RejectReason` or
    callgate's own, e.g. ``no_tool``, ``tool_failed``)."""
    return json.dumps({"ok": False, "error": error, "code": code}, ensure_ascii=False)


def encode(event: dict[str, Any]) -> str:
    """A client event as its text frame (JSON)."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))
