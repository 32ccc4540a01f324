"""``front_doors.openai_sip.tool_webhook``: where a function call the FunctionMap does
not map is run.

callgate POSTs ``{"call_id": OpenAI's call id, "function_call_id", "name",
"arguments": the parsed arguments}`` and gives the model the answer: its JSON
``output`` field (a string as it is, anything else as JSON), else the whole body. A
non-2xx answer, none within ``tool_timeout_s``, or a failed connection is an error
output the model can speak (``{"ok": false, "error", "code": "tool_failed" |
"tool_timeout"}``), logged with the call id.
"""

from __future__ import annotations

import json
import logging

import aiohttp

from ....config import OpenAISipConfig
from ....core.openai_sip.client import error_output
from ....core.openai_sip.events import FunctionCall

__all__ = ["run_tool"]

log = logging.getLogger("callgate.sip")


async def run_tool(session: aiohttp.ClientSession, cfg: OpenAISipConfig, call_id: str, call: FunctionCall) -> str:
    """The output for ``call`` (its arguments a JSON object: the controller checked)."""
    assert cfg.tool_webhook is not None
    body = {"call_id": call_id, "function_call_id": call.call_id, "name": call.name, "arguments": json.loads(call.arguments or "{}")}
    try:
        async with session.post(cfg.tool_webhook, json=body, timeout=aiohttp.ClientTimeout(total=cfg.tool_timeout_s)) as r:
            text = await r.text(errors="replace")
            status = r.status
    except TimeoutError:
        log.warning("openai sip tool webhook timed out call_id=%s function=%s after %.1f s", call_id, call.name, cfg.tool_timeout_s)
        return error_output(f"the tool {call.name!r} did not answer in time", "tool_timeout")
    except aiohttp.ClientError as e:
        log.warning("openai sip tool webhook failed call_id=%s function=%s status=none: %s", call_id, call.name, e)
        return error_output(f"the tool {call.name!r} could not be reached", "tool_failed")
    if not 200 <= status < 300:
        log.warning("openai sip tool webhook failed call_id=%s function=%s status=%d", call_id, call.name, status)
        return error_output(f"the tool {call.name!r} failed", "tool_failed")
    return _output(text)


def _output(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict) and "output" in data:
        out = data["output"]
        return out if isinstance(out, str) else json.dumps(out, ensure_ascii=False)
    return text
