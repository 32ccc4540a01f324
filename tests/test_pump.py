"""The pump (proxy/server/relay/pump.py): an adopted attempt's reads forwarded from the
upstream connection's callback, with everything the task's way of reading kept: the
keep-alive pool, a slow runtime's backpressure, the log context, the stall timer and
the upstream's read timeout."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy import logs
from proxy.demo.scripted_upstream import FOREVER, ScriptedReply, ScriptedUpstream, Stall, serve_app
from proxy.server.relay import stream
from proxy.server.relay.pump import Pump
from proxy.server.services import SERVICES

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def _contents(raw: bytes) -> list[str]:
    out = []
    for event in raw.split(b"\n\n"):
        if event.startswith(b"data: {"):
            for choice in json.loads(event[6:]).get("choices", []):
                out.append(choice.get("delta", {}).get("content") or "")
    return [c for c in out if c]


async def _upstream_with_peers(up: ScriptedUpstream, peers: list[Any]) -> AsyncIterator[str]:
    @web.middleware
    async def seen(request: web.Request, handler: Any) -> web.StreamResponse:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return await handler(request)  # type: ignore[no-any-return]

    app = web.Application(middlewares=[seen])
    app.add_routes(up.routes())
    async with serve_app(app) as url:
        yield url


async def test_pumped_replies_give_their_connection_back_to_the_pool(stack: Any) -> None:
    """The connection's protocol is aiohttp's again when a pumped body ends: the next
    reply goes on the same keep-alive connection, whole."""
    pieces = [f"piece {i}. " for i in range(30)]
    up = ScriptedUpstream([ScriptedReply(content=pieces, interval_s=0.002)] * 3)
    peers: list[Any] = []
    gen = _upstream_with_peers(up, peers)
    url = await gen.__anext__()
    try:
        s = await stack([], upstream_url=url + "/v1")
        async with aiohttp.ClientSession() as http:
            for i in range(3):
                async with http.post(f"{s.url}/v1/chat/completions", json=BODY, headers={"X-Call-Id": f"pool-{i}"}) as r:
                    assert r.status == 200
                    got = await r.read()
                assert _contents(got) == pieces and got.endswith(b"data: [DONE]\n\n")
        assert len(peers) == 3 and len(set(peers)) == 1
        pooled = [proto for conns in s.app[SERVICES].session.connector._conns.values() for proto, _ in conns]
        assert pooled and all(p.transport.get_protocol() is p for p in pooled)  # aiohttp's own protocol again
        turns = [(await s.record(f"pool-{i}"))["turns"][0] for i in range(3)]
        assert [t["status"] for t in turns] == ["ok"] * 3 and all(t["spoken_text"] == "".join(pieces) for t in turns)
    finally:
        await gen.aclose()


async def test_a_runtime_that_reads_slowly_gets_every_chunk_in_order(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write the runtime's full buffer holds up is finished by a task, and every
    later read waits for it: nothing lost, nothing reordered."""
    waited = []
    held_back = asyncio.Event()
    real = stream.write_now

    def counting(coro: Any, done: Any) -> Any:
        task = real(coro, done)
        if task is not None:
            waited.append(task)
            held_back.set()
        return task

    monkeypatch.setattr(stream, "write_now", counting)
    pieces = [f"{i:05d} " + "x" * 450 for i in range(12000)]  # about 7 MB of SSE: more than the kernel's buffers hold
    s = await stack([ScriptedReply(content=pieces, interval_s=0)])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    host, port = s.url.removeprefix("http://").split(":")
    await loop.sock_connect(sock, (host, int(port)))
    body = json.dumps(BODY).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Call-Id: slow-1\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    await loop.sock_sendall(sock, head + body)
    await s.upstream.wait_requests(1)
    async with asyncio.timeout(10):
        await held_back.wait()  # the runtime reads nothing until a write of callgate's had to wait
    raw = b""
    while chunk := await loop.sock_recv(sock, 65536):
        raw += chunk
    sock.close()
    parser = aiohttp.http_parser.HttpResponseParser(_Proto(), loop, 1 << 24)  # type: ignore[arg-type]  # the body, by aiohttp's parser
    ((_, payload),), _, _ = parser.feed_data(raw)
    got = await payload.read()
    assert _contents(got) == pieces and got.endswith(b"data: [DONE]\n\n")
    assert waited, "no write had to wait: the test did not hold the runtime back"
    turn = (await s.record("slow-1"))["turns"][0]
    assert turn["status"] == "ok" and turn["spoken_text"].startswith(pieces[0] + pieces[1])  # the stored text is capped


class _Proto:
    """What aiohttp's parser asks of a protocol, for parsing bytes already read."""

    def __init__(self) -> None:
        self.transport = None
        self.connected = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass


async def test_commands_found_in_the_callback_log_with_the_request_context(stack: Any) -> None:
    """What a pumped read logs carries the request's ``request_id`` and ``call_id``,
    also on a connection an earlier request opened (its callbacks run in that one's context)."""
    seen: list[tuple[str, dict[str, Any]]] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.getMessage(), dict(logs.CONTEXT.get() or {})))

    content = ["Sure, ", "I can help ", "with that. ", "Goodbye. ", '<imsagent_hangup endword="Bye."/>']
    s = await stack([ScriptedReply(content=content, interval_s=0.01)] * 2)
    handler = Capture()
    calls = logging.getLogger("callgate.calls")
    calls.addHandler(handler)
    level = calls.level
    calls.setLevel(logging.INFO)
    try:
        async with aiohttp.ClientSession() as http:
            for call_id in ("ctx-1", "ctx-2"):
                async with http.post(f"{s.url}/v1/chat/completions", json=BODY, headers={"X-Call-Id": call_id}) as r:
                    await r.read()
    finally:
        calls.removeHandler(handler)
        calls.setLevel(level)
    lines = [ctx for msg, ctx in seen if msg.startswith("control event")]
    want = [{"call_id": c, "request_id": (await s.record(c))["turns"][0]["request_id"]} for c in ("ctx-1", "ctx-2")]
    assert [{k: ctx.get(k) for k in ("call_id", "request_id")} for ctx in lines] == want


async def test_a_stall_after_speech_is_seen_while_pumping(stack: Any) -> None:
    """The stall timer runs while the task sleeps: speech, then silence past
    ``stall_ms`` with no other upstream: the runtime gets the error event."""
    s = await stack(
        [ScriptedReply(content=["One. ", "Two. ", "Three. ", "Four."], interval_s=0.01, stall=Stall(after=3, seconds=FOREVER))],
        routing={"stall_ms": 200, "on_stall": "error"},
    )
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.post(f"{s.url}/v1/chat/completions", json=BODY, headers={"X-Call-Id": "stall-1"}) as r:
            got = await r.read()
    assert _contents(got) == ["One. ", "Two. ", "Three. "] and got.endswith(b"data: [DONE]\n\n")
    s.upstream.release()
    turn = (await s.record("stall-1"))["turns"][0]
    assert turn["status"] == "upstream_error" and "silent" in turn["error"]


async def test_an_upstream_silent_past_its_read_timeout_while_pumping_is_a_broken_reply(stack: Any) -> None:
    """Speech, more reads, then silence past ``upstream.timeout_s`` (no ``stall_ms``):
    the watchdog raises aiohttp's read timeout; the runtime gets the error event."""
    s = await stack([ScriptedReply(content=["One. ", "Two. ", "Three. ", "Four."], interval_s=0.01, stall=Stall(after=3))],
                    upstream={"timeout_s": 0.3})
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.post(f"{s.url}/v1/chat/completions", json=BODY, headers={"X-Call-Id": "quiet-1"}) as r:
            got = await r.read()
    s.upstream.release()
    assert _contents(got) == ["One. ", "Two. ", "Three. "] and got.endswith(b"data: [DONE]\n\n")
    assert b'"code":"upstream_stream_error"' in got.replace(b" ", b"")
    turn = (await s.record("quiet-1"))["turns"][0]
    assert turn["status"] == "upstream_error" and "0.3" in turn["error"] and "Timeout on reading" in turn["attempts"][0]["error"]


def _self_signed(folder: Any) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, made by the ``openssl`` CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


async def _pump_over_tls(cert: str, key: str) -> None:
    events = [b"data: " + json.dumps({"n": i, "pad": "x" * (i % 7) * 100}).encode() + b"\n\n" for i in range(60)]
    peers: list[Any] = []

    async def sse(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for event in events:
            await resp.write(event)
            await asyncio.sleep(0.001)
        await resp.write_eof()
        return resp

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    app = web.Application()
    app.router.add_get("/sse", sse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    client_ctx = ssl.create_default_context(cafile=cert)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx)) as http:
            for _ in range(2):
                got: list[bytes] = []
                forwarded: list[bytes] = []

                def forward(data: bytes) -> bool:
                    got.append(data)
                    forwarded.append(data)
                    return True

                async with http.get(f"https://127.0.0.1:{port}/sse") as resp:
                    pump = Pump(resp, forward, stall_s=None, spoke=lambda: True, read_timeout_s=5)
                    try:
                        while data := await pump.read():
                            got.append(data)
                    finally:
                        pump.stop()
                assert b"".join(got) == b"".join(events) and forwarded  # most reads taken in the TLS layer's callback
            pooled = [proto for conns in http.connector._conns.values() for proto, _ in conns]  # type: ignore[union-attr]
            assert pooled and all(p.transport.get_protocol() is p for p in pooled)
        assert len(peers) == 2 and len(set(peers)) == 1
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_pump_reads_a_tls_connection_and_gives_it_back(loop: str, tmp_path: Any) -> None:
    """Over TLS the pump stands in for the TLS layer's application protocol, on
    either event loop; the body arrives whole and the connection is pooled again."""
    cert, key = _self_signed(tmp_path)
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(_pump_over_tls(cert, key))
    else:
        asyncio.run(_pump_over_tls(cert, key))
