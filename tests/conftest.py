"""Shared fixtures: real aiohttp servers on 127.0.0.1 and callgate in front of them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from proxy.app import running
from proxy.config import parse_config
from proxy.scripted_upstream import RawReply, ScriptedReply, ScriptedUpstream

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "openai-streams"


@pytest.fixture(autouse=True, scope="session")
def no_database_left_in_the_working_directory() -> Iterator[None]:
    """Tests keep their databases in tmp_path: the default ./callgate.db must not appear."""
    before = Path("callgate.db").exists()
    yield
    assert before or not Path("callgate.db").exists(), "a test wrote ./callgate.db (set storage.path)"


def fixture_stream(name: str) -> bytes:
    """A recorded OpenAI stream from ../shared/fixtures/openai-streams/."""
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"recorded streams not found at {FIXTURES}")
    return path.read_bytes()


def fixture_names() -> list[str]:
    return sorted(p.name for p in FIXTURES.glob("*.sse")) if FIXTURES.is_dir() else []


@contextlib.asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """Run ``app`` on a free loopback port; yields its base URL."""
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` holds, checking on each loop turn; fail after ``timeout`` s."""
    import asyncio

    async def check() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(check(), timeout)


class Recorder:
    """A webhook receiver: records every JSON body POSTed; answers ``statuses`` in
    turn (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.bodies: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.statuses = list(statuses or [])
        self._waiters: list[tuple[int, Any]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            self.bodies.append(await request.json())
            self.headers.append(dict(request.headers))
            for n, fut in list(self._waiters):
                if len(self.bodies) >= n and not fut.done():
                    fut.set_result(None)
        return web.json_response({"status": status}, status=status)

    async def wait_for(self, n: int, timeout: float = 10) -> list[Any]:
        """Wait until ``n`` bodies arrived; returns them."""
        import asyncio

        if len(self.bodies) < n:
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append((n, fut))
            await asyncio.wait_for(fut, timeout)
        return self.bodies


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await stack(replies, **config)`` starts a scripted upstream and callgate in
    front of it; returns an object with ``upstream``, ``url`` (callgate),
    ``app`` and ``registry``."""
    exits = contextlib.AsyncExitStack()
    dbs: list[str] = []

    async def start(replies: list[ScriptedReply | RawReply], upstream_url: str | None = None, **cfg: Any) -> Any:
        upstream = ScriptedUpstream(list(replies))
        if upstream_url is None:
            upstream_url = await exits.enter_async_context(serve_app(upstream.app())) + "/v1"
        data: dict[str, Any] = {
            "upstream": {"base_url": upstream_url, "timeout_s": 5},
            "storage": {"path": str(tmp_path / f"callgate-{len(dbs)}.db")},
            "end_function": {"poll_s": 0.05},
        }
        dbs.append(data["storage"]["path"])
        for key, value in cfg.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        app, url = await exits.enter_async_context(running(parse_config(data), host="127.0.0.1", port=0))
        from proxy.services import SERVICES

        class Stack:
            pass

        s = Stack()
        s.upstream, s.url, s.app = upstream, url, app  # type: ignore[attr-defined]
        s.registry = app[SERVICES].registry  # type: ignore[attr-defined]
        s.pipeline = app[SERVICES].pipeline  # type: ignore[attr-defined]
        s.storage = app[SERVICES].storage  # type: ignore[attr-defined]
        return s

    async with exits:
        yield start
