"""A scripted OpenAI for the SIP front door's tests and ``callgate demo``: the REST
calls on a call, its sideband, and signed incoming-call webhooks, on loopback.

* ``POST /v1/{realtime/calls|live/sessions}/{id}/{accept|reject|hangup|refer}``
  (``Authorization: Bearer`` the configured key, else 401): each is counted exactly
  (:meth:`ScriptedOpenAI.count`) and kept with its body; an accept answers the call's
  ``accept_status`` (404: the caller is gone). After ``/hangup`` the call ends: Live
  sends ``session.closed`` (``close_requested``, the session's seconds) on the
  sideband, Realtime drops the socket (and later attaches get 404).
* The sideband, ``GET /v1/realtime?call_id=`` and ``GET /v1/live/sessions/{id}/attach``
  (404 for a call not accepted, or gone): it plays the call's script
  (:mod:`.sip_scripts`) from where the last attach left it; a newer attach replaces
  an older socket. Every client event is kept (``ScriptedCall.received``).
* ``timeline``: what happened, in order (``("sent", type, response_id)``,
  ``("got", type)``, ``("rest", verb)``, ``("attach",)``, ``("drop",)``), to check that
  a goodbye played before ``/hangup``.
* :meth:`ScriptedOpenAI.deliver` POSTs a signed webhook (several times, with a bad
  or stale signature if asked).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from .sip_scripts import CallerHangup, Drop, Emit, Expect, Gate, Pause, Step, incoming, signed

__all__ = ["SECRET", "ScriptedCall", "ScriptedOpenAI"]

SECRET = "whsec_" + "c2NyaXB0ZWQtb3BlbmFpLXdlYmhvb2stc2VjcmV0"  # base64 of a made-up key


@dataclass
class ScriptedCall:
    """One call: its API, script and where the script is (``pos``); what the client sent."""

    api: str
    call_id: str
    script: list[Step]
    accept_status: int = 200
    seconds: float = 42.0  # Live: the session's seconds in session.closed
    close_gate: str = ""  # after /hangup, session.closed (or the drop) waits for this gate
    refuse_attaches: int = 0  # the first attaches answered 404 (a sideband not ready yet)
    pos: int = 0
    accepted: bool = False
    gone: bool = False
    attaches: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    last: dict[str, Any] = field(default_factory=dict)
    inbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    ws: web.WebSocketResponse | None = None
    request: web.Request | None = None

    def got(self, kind: str) -> list[dict[str, Any]]:
        """The client events of ``kind`` received."""
        return [e for e in self.received if e.get("type") == kind]


class ScriptedOpenAI:
    """See the module docstring."""

    def __init__(self, api_key: str = "sk-scripted-openai", secret: str = SECRET) -> None:
        self.api_key = api_key
        self.secret = secret
        self.calls: dict[str, ScriptedCall] = {}
        self.rest: list[tuple[str, str, Any]] = []  # (verb, call id, body)
        self.timeline: list[tuple[str, ...]] = []
        self.gates: dict[str, asyncio.Event] = {}
        self._changed = asyncio.Event()

    def add(self, api: str, call_id: str, script: list[Step], **kw: Any) -> ScriptedCall:
        """A call the scripted OpenAI will announce and serve."""
        call = self.calls[call_id] = ScriptedCall(api, call_id, list(script), **kw)
        return call

    def gate(self, name: str) -> asyncio.Event:
        """The gate ``name`` (:class:`~.sip_scripts.Gate`); ``.set()`` opens it."""
        return self.gates.setdefault(name, asyncio.Event())

    def count(self, verb: str, call_id: str | None = None) -> int:
        """How many ``verb`` REST calls arrived (for ``call_id``, or any)."""
        return Counter(v for v, c, _ in self.rest if call_id is None or c == call_id)[verb]

    def mark(self, *entry: str) -> None:
        """Add to the timeline; wake :meth:`wait`."""
        self.timeline.append(entry)
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Until ``predicate()`` holds (woken by every change); ``TimeoutError`` after ``timeout`` s."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_post("/v1/realtime/calls/{id}/{verb}", self._rest)
        app.router.add_post("/v1/live/sessions/{id}/{verb}", self._rest)
        app.router.add_get("/v1/realtime", self._sideband)
        app.router.add_get("/v1/live/sessions/{id}/attach", self._sideband)
        return app

    async def deliver(
        self, url: str, call_id: str, *, times: int = 1, msg_id: str | None = None, at: float | None = None,
        secret: str | None = None, kind: str = "", session: aiohttp.ClientSession | None = None,
    ) -> list[int]:
        """POST the call's incoming-call webhook to ``url`` ``times`` times (one
        ``webhook-id``: a redelivery); the statuses answered."""
        call = self.calls[call_id]
        raw, headers = signed(secret or self.secret, incoming(call.api, call_id, kind=kind), msg_id or f"wh_{call_id}", at)
        out = []
        async with contextlib.AsyncExitStack() as stack:
            http = session if session is not None else await stack.enter_async_context(aiohttp.ClientSession())
            for _ in range(times):
                async with http.post(url, data=raw, headers=headers) as r:
                    out.append(r.status)
        return out

    # -- REST --------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": {"message": "bad key", "type": "invalid_request_error"}}, status=401)
        call_id, verb = request.match_info["id"], request.match_info["verb"]
        raw = await request.read()
        self.rest.append((verb, call_id, json.loads(raw) if raw else None))
        self.mark("rest", verb, call_id)
        call = self.calls.get(call_id)
        if call is None or call.gone:
            return web.json_response({"error": {"message": "call not found", "type": "invalid_request_error"}}, status=404)
        if verb == "accept":
            if call.accept_status != 200:
                return web.json_response({"error": {"message": "no such call"}}, status=call.accept_status)
            call.accepted = True
        elif verb == "hangup":
            asyncio.ensure_future(self._end(call))
        return web.Response(status=200)

    async def _end(self, call: ScriptedCall, reason: str = "close_requested") -> None:
        """The call ends: Live says so on the sideband and closes it; Realtime drops it."""
        if call.close_gate:
            await self.gate(call.close_gate).wait()
        call.gone = True
        ws, request = call.ws, call.request
        if ws is None or ws.closed:
            return
        if call.api == "live":
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_json({"type": "session.closed", "reason": reason, "usage": {"seconds": call.seconds}})
                self.mark("sent", "session.closed", "")
            await ws.close()
        elif request is not None and request.transport is not None:
            request.transport.abort()

    # -- the sideband ------------------------------------------------------------------------------

    async def _sideband(self, request: web.Request) -> web.StreamResponse:
        call_id = request.match_info.get("id") or request.query.get("call_id", "")
        call = self.calls.get(call_id)
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.Response(status=401)
        if call is None or not call.accepted or call.gone or call.refuse_attaches > 0:
            if call is not None and call.refuse_attaches > 0:
                call.refuse_attaches -= 1
                self.mark("refused", call_id)
            return web.Response(status=404)
        old = call.ws
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if old is not None and not old.closed:
            await old.close()
        call.ws, call.request = ws, request
        call.attaches += 1
        self.mark("attach", call_id)
        reader = asyncio.ensure_future(self._read(call, ws))
        try:
            await self._play(call, ws, request)
            await reader
        finally:
            reader.cancel()
        return ws

    async def _read(self, call: ScriptedCall, ws: web.WebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                event = json.loads(msg.data)
                call.received.append(event)
                self.mark("got", str(event.get("type")), call.call_id)
                call.inbox.put_nowait(event)

    async def _play(self, call: ScriptedCall, ws: web.WebSocketResponse, request: web.Request) -> None:
        """The script from ``call.pos``, one step at a time, while this socket is the call's."""
        while call.pos < len(call.script) and call.ws is ws and not ws.closed:
            step = call.script[call.pos]
            try:
                done = await self._step(call, step, ws, request)
            except (ConnectionError, RuntimeError, TimeoutError):
                return
            if not done:
                return
            call.pos += 1

    async def _emit(self, call: ScriptedCall, step: Emit, ws: web.WebSocketResponse) -> None:
        if isinstance(step.event, str):
            await ws.send_str(step.event)
            self.mark("sent", "(raw)", "")
            return
        event = step.event(call.last) if callable(step.event) else step.event
        await ws.send_json(event)
        self.mark("sent", str(event.get("type")), str(event.get("response_id") or (event.get("response") or {}).get("id") or ""))

    async def _step(self, call: ScriptedCall, step: Step, ws: web.WebSocketResponse, request: web.Request) -> bool:
        """One step; ``False`` when the socket is gone (the step runs again at the next attach)."""
        if isinstance(step, Emit):
            await self._emit(call, step, ws)
        elif isinstance(step, Expect):
            async with asyncio.timeout(step.timeout_s):
                while (got := await call.inbox.get()).get("type") != step.type:
                    pass
            call.last = got
        elif isinstance(step, Gate):
            await self.gate(step.name).wait()
        elif isinstance(step, Pause):
            await asyncio.sleep(step.seconds)
        elif isinstance(step, Drop):
            call.pos += 1
            self.mark("drop", call.call_id)
            if request.transport is not None:
                request.transport.abort()
            return False
        elif isinstance(step, CallerHangup):
            call.pos += 1
            await self._end(call, "remote_hangup")
            return False
        return not ws.closed
