"""A scripted OpenAI-compatible upstream (aiohttp), for ``callgate demo``, the tests
and the benchmarks.

Each ``POST <prefix>/chat/completions`` is answered by the
:class:`~proxy.demo.behaviours.ScriptedReply` its script picks: from a sequence, in
order (the last one repeats), or by a function of the request (:class:`Seen`), such
as :func:`by_last_message`. ``GET <prefix>/models`` lists ``models``. The upstream
records each request (``requests``: method, path, query, headers, parsed body, raw
body) and counts what it served (``served``: pieces written, whether the
answer went out whole, whether its client left first; ``pieces_sent`` over all).
:func:`serve_app` runs an app on a free loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..core.json_codec import dumps, loads
from .behaviours import FOREVER, Cut, ScriptedReply, Stall, chunk_event, completion, error_body, stream_body

# The replies' data (proxy.demo.behaviours) is importable from here too.
__all__ = [
    "FOREVER", "OPENAI_FIELDS", "Cut", "Script", "ScriptedReply", "ScriptedUpstream", "Seen", "Served", "Stall",
    "by_last_message", "chunk_event", "completion", "serve_app", "stream_body",
]

# The top-level fields of OpenAI's chat completion request (API reference, "Create
# chat completion"); api.openai.com answers 400 for any other.
OPENAI_FIELDS = frozenset(
    """messages model audio frequency_penalty function_call functions logit_bias logprobs
    max_completion_tokens max_tokens metadata modalities n parallel_tool_calls prediction
    presence_penalty prompt_cache_key prompt_cache_retention reasoning_effort response_format
    safety_identifier seed service_tier stop store stream stream_options temperature
    tool_choice tools top_logprobs top_p user verbosity web_search_options""".split()
)


@dataclass(frozen=True)
class Seen:
    """One request as it arrived: ``index`` (0 for the first), ``method``, ``path``,
    ``query`` (the raw query string), ``headers`` (case-insensitive), ``body`` (the
    parsed JSON; ``None`` when it is not JSON) and ``raw`` (its bytes)."""

    index: int
    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: Any
    raw: bytes

    @property
    def said(self) -> str:
        """The last message's content when it is a string (else ``""``)."""
        messages = self.body.get("messages") if isinstance(self.body, dict) else None
        content = messages[-1].get("content") if isinstance(messages, list) and messages and isinstance(messages[-1], dict) else None
        return content if isinstance(content, str) else ""


@dataclass(slots=True)
class Served:
    """What one answer did: ``pieces`` written (counted at a stall and when the
    answer ends), ``whole`` (it reached its scripted end), ``gone`` (its client left
    before that); ``ended`` is set when the handler is done either way."""

    pieces: int = 0
    whole: bool = False
    gone: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)


Script = Sequence[ScriptedReply] | Callable[[Seen], ScriptedReply]


def by_last_message(table: Mapping[str, ScriptedReply], default: ScriptedReply) -> Callable[[Seen], ScriptedReply]:
    """A script answering by what the caller said last: ``table[said]``, else ``default``."""
    return lambda seen: table.get(seen.said, default)


@contextlib.asynccontextmanager
async def serve_app(app: web.Application, host: str = "127.0.0.1", port: int = 0, backlog: int = 128) -> AsyncIterator[str]:
    """Run ``app`` on ``host`` (a free port when ``port`` is 0) until the block ends;
    yields its base URL (``http://host:port``). A handler whose client leaves is
    cancelled; the shutdown waits 1 s for handlers in flight."""
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=backlog).start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield f"http://{bound_host}:{bound_port}"
    finally:
        await runner.cleanup()


class ScriptedUpstream:
    """See the module docstring. ``name``: in the default error message
    (``"<name> says 503"``); ``models``: the ids ``GET /models`` lists, or a reply it
    answers with (an error); ``strict``: unknown top-level request fields get a 400
    as api.openai.com gives (``"Unrecognized request argument supplied: ..."``);
    ``record``: keep ``requests`` and ``served`` (a benchmark turns it off and reads
    ``count`` and ``pieces_sent``)."""

    def __init__(self, script: Script, *, name: str = "scripted", models: Sequence[str] | ScriptedReply = ("scripted-1",),
                 strict: bool = False, record: bool = True) -> None:
        self.script = script if callable(script) else list(script)
        self.name, self.models, self.strict, self.record = name, models, strict, record
        self.requests: list[Seen] = []
        self.served: list[Served] = []
        self.count = 0  # requests arrived
        self.pieces_sent = 0  # pieces written, over all answers
        self._released = asyncio.Event()
        self._arrival = asyncio.Event()

    def routes(self, prefix: str = "/v1") -> list[web.RouteDef]:
        """``POST <prefix>/chat/completions`` and ``GET <prefix>/models``, to add to an app."""
        return [web.post(f"{prefix}/chat/completions", self._chat), web.get(f"{prefix}/models", self._models)]

    def app(self, prefix: str = "/v1") -> web.Application:
        """An aiohttp app with :meth:`routes` at ``prefix``."""
        app = web.Application()
        app.add_routes(self.routes(prefix))
        return app

    def release(self) -> None:
        """Every wait of :data:`~proxy.demo.behaviours.FOREVER` ends, now and later."""
        self._released.set()

    async def wait_requests(self, n: int, timeout: float = 5) -> None:
        """Until ``n`` requests arrived; ``TimeoutError`` after ``timeout`` s."""
        async with asyncio.timeout(timeout):
            while self.count < n:
                self._arrival.clear()
                await self._arrival.wait()

    async def wait_gone(self, i: int, timeout: float = 5) -> bool:
        """Whether the client of request ``i`` left before its answer ended (waits up to
        ``timeout`` s for the end; ``False`` when it did not come)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.served[i].ended.wait()
        return self.served[i].gone

    async def _models(self, request: web.Request) -> web.Response:
        if isinstance(self.models, ScriptedReply):
            return self._whole(self.models, True)
        data = [{"id": m, "object": "model", "owned_by": "callgate"} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    def _pick(self, seen: Seen) -> ScriptedReply:
        if callable(self.script):
            return self.script(seen)
        return self.script[min(seen.index, len(self.script) - 1)]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic_ns()
        raw = await request.read()
        try:
            body = loads(raw)
        except ValueError:
            body = None
        seen = Seen(self.count, request.method, request.path, request.query_string, request.headers, body, raw)
        served = Served()
        self.count += 1
        if self.record:
            self.requests.append(seen)
            self.served.append(served)
        self._arrival.set()
        fields = body if isinstance(body, dict) else {}
        unknown = sorted(set(fields) - OPENAI_FIELDS) if self.strict else []
        try:
            if unknown:
                served.whole = True
                return web.json_response({"error": {"message": f"Unrecognized request argument supplied: {', '.join(unknown)}",
                                                    "type": "invalid_request_error", "param": None, "code": None}}, status=400)
            return await self._answer(request, fields, self._pick(seen), served, arrived)
        except (asyncio.CancelledError, ConnectionError):
            served.gone = not served.whole
            raise
        finally:
            served.ended.set()

    async def _wait(self, seconds: float) -> None:
        if seconds == FOREVER:
            await self._released.wait()
        elif seconds > 0:
            await asyncio.sleep(seconds)

    def _whole(self, reply: ScriptedReply, error: bool) -> web.Response:
        data = error_body(reply, self.name) if error else dumps(completion(reply))
        headers = {"Content-Type": reply.content_type or "application/json", **reply.headers}
        return web.Response(body=data, status=reply.status, headers=headers)

    async def _answer(self, request: web.Request, body: dict[str, Any], reply: ScriptedReply, served: Served, arrived: int) -> web.StreamResponse:
        if reply.head_delay_s:
            await self._wait(reply.head_delay_s)
        streamed = reply.raw is not None or (bool(body.get("stream")) and not reply.whole)
        if reply.status != 200 or not streamed:
            await self._wait(reply.ttft_s)
            served.whole = True
            return self._whole(reply, reply.status != 200)
        usage_asked = bool((body.get("stream_options") or {}).get("include_usage"))
        resp = web.StreamResponse(status=reply.status, headers={"Content-Type": reply.content_type or "text/event-stream", **reply.headers})
        await resp.prepare(request)
        await self._stream(resp, reply, usage_asked, served, arrived)
        served.whole = True
        if reply.cut is not None and reply.cut.close:
            assert request.transport is not None
            request.transport.close()  # no chunked terminator: a broken transfer
            return resp
        await resp.write_eof()
        return resp

    async def _stream(self, resp: web.StreamResponse, reply: ScriptedReply, usage_asked: bool, served: Served, arrived: int) -> None:
        """The head's bytes, each piece at its time (stamped when asked), the tail.
        The benchmarks' hot loop: names bound once, no encoding, one branch for the
        stamp, pieces counted at a stall and at the end."""
        body = reply.body(usage_asked)
        if body.head:
            await resp.write(body.head)
        if reply.ttft_s == FOREVER:
            await self._wait(FOREVER)
        loop = asyncio.get_running_loop()
        now, write, mono, interval, stamp = loop.time, resp.write, time.monotonic_ns, reply.interval_s, reply.stamp
        start = now() + (0.0 if reply.ttft_s == FOREVER else reply.ttft_s)
        stall_at, stall_s = (reply.stall.after, reply.stall.seconds) if reply.stall is not None else (-1, 0.0)
        arrival, parts, i = b"r%d " % arrived, body.parts, 0
        try:
            for i, (a, b) in enumerate(parts):  # after a failed write, i pieces went out
                if i == stall_at:
                    served.pieces = i
                    await self._wait(stall_s)
                    start = now() - i * interval  # the next pieces keep the interval from here
                delay = start + i * interval - now()
                if delay > 0:
                    await asyncio.sleep(delay)
                await write(a + b"t%d " % mono() + (b if i else arrival + b) if stamp else a)
            i = len(parts)
        finally:
            served.pieces = i
            self.pieces_sent += i
        if not parts:
            await asyncio.sleep(max(0.0, start - now()))
        if stall_at >= len(parts):
            await self._wait(stall_s)
        if body.tail:
            await resp.write(body.tail)
