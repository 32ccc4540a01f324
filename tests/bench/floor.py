"""``make bench``, the floor: the least an aiohttp relay costs on this machine.

A relay of a dozen lines on the same stack as callgate (aiohttp's server and client,
uvloop): each request's body sent to the upstream, its reply written back read by
read, nothing parsed, nothing stored. ``--inspect`` also runs each read through
callgate's sans-IO stages (SSE decode, the reply inspector with default settings,
the SSE encoder), as the relay does, but without anything else callgate does (no
call, no turn, no race, no database). ``tests/bench/versus.py`` runs it as the targets
``aiohttp`` and ``aiohttp+inspect``: what is left between them and callgate is
callgate's own per-request and per-chunk work.

Run: ``python -m tests.bench.floor --upstream URL --port PORT [--inspect]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import aiohttp
from aiohttp import web

from proxy.core.inspector import InspectorSettings, ReplyInspector
from proxy.core.outputs import Output, encode
from proxy.core.sse import SSEDecoder

from . import run_process

_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=60, sock_read=60)  # as callgate's upstream timeout_s


def app(upstream: str, inspect: bool) -> web.Application:
    """The relay: ``POST /v1/chat/completions`` to ``upstream`` (its base URL, ``.../v1``)."""

    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        session: aiohttp.ClientSession = request.app[SESSION]
        async with session.post(upstream + "/chat/completions", data=body, headers={"Content-Type": "application/json"},
                                timeout=_TIMEOUT) as up:
            resp = web.StreamResponse(status=up.status, headers={"Content-Type": up.headers.get("Content-Type", "text/event-stream")})
            await resp.prepare(request)
            decoder, inspector = SSEDecoder(), ReplyInspector(InspectorSettings())
            async for data in up.content.iter_any():
                if inspect:
                    out: list[Output] = []
                    for event in decoder.feed(data):
                        out += inspector.feed(event)
                    data = encode(out)
                if data:
                    await resp.write(data)
            await resp.write_eof()
            return resp

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await app[SESSION].close()

    a = web.Application()
    a.router.add_post("/v1/chat/completions", relay)
    a.cleanup_ctx.append(lifecycle)
    return a


SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("floor_session", aiohttp.ClientSession)


async def serve(upstream: str, port: int, inspect: bool) -> None:
    """Serve until cancelled (SIGTERM ends the process)."""
    runner = web.AppRunner(app(upstream, inspect), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    print(f"floor relay on port {port}", flush=True)
    await asyncio.Event().wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", required=True, help="the upstream's base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--inspect", action="store_true", help="each read through callgate's SSE decoder, inspector and encoder")
    args = p.parse_args()
    run_process(serve(args.upstream, args.port, args.inspect))
    return 0


if __name__ == "__main__":
    sys.exit(main())
