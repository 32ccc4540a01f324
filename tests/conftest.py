"""Shared fixtures: real aiohttp servers on 127.0.0.1 and callgate in front of them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from proxy.config import parse_config
from proxy.demo.scripted_upstream import Script, ScriptedUpstream, serve_app
from proxy.server.app import running

from .process import kill_leftovers

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "openai-streams"


def default_database_files(folder: Path) -> dict[str, tuple[int, int]]:
    """The default database's files in ``folder`` (``callgate.db`` and its ``-wal``,
    ``-shm``, ``.lock`` and ``.bak-v<N>`` files): name -> (size, mtime in ns)."""
    out = {}
    for p in folder.glob("callgate.db*"):
        st = p.stat()
        out[p.name] = (st.st_size, st.st_mtime_ns)
    return out


def database_writes(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    """The default database's files that appeared or changed between two readings."""
    return sorted(name for name, seen in after.items() if before.get(name) != seen)


@pytest.fixture(autouse=True, scope="session")
def no_database_left_in_the_working_directory() -> Iterator[None]:
    """Tests keep their databases in tmp_path: no test may create or touch the default
    ./callgate.db or its lock file, even where they already exist."""
    before = default_database_files(Path.cwd())
    yield
    written = database_writes(before, default_database_files(Path.cwd()))
    assert not written, f"a test wrote {written} in the working directory (set storage.path)"


@pytest.fixture(autouse=True)
def no_server_left_running() -> Iterator[None]:
    """A test that fails half-way leaves no ``callgate serve`` process behind."""
    yield
    kill_leftovers()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A PostgreSQL server for the whole run (see proxy/demo/pgtemp.py)."""
    from proxy.demo.pgtemp import cluster

    with cluster() as url:
        yield url


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A database of its own on the test run's PostgreSQL server."""
    from proxy.demo.pgtemp import database

    with database(pg_server) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """A started store on each engine (SQLite in tmp_path, a database of its own on the
    run's PostgreSQL): the conformance suite's and the views' tests."""
    from proxy.storage import open_store

    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    s = open_store(tmp_path / "cg.db", url=url)
    await s.start()
    try:
        yield s
    finally:
        await s.close()


def fixture_stream(name: str) -> bytes:
    """A recorded OpenAI stream from ../shared/fixtures/openai-streams/."""
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"recorded streams not found at {FIXTURES}")
    return path.read_bytes()


def fixture_names() -> list[str]:
    return sorted(p.name for p in FIXTURES.glob("*.sse")) if FIXTURES.is_dir() else []


class Receiver:
    """A webhook receiver on loopback, for control events and end-function steps.

    ``statuses``: answers for any path, in turn (then 200); ``script[path]``: the same
    for one path. ``hold[path]``: an Event each request on that path waits for; a held
    request whose sender is gone when released is not answered, so it never counts as
    delivered. ``got``: every request (``path``, ``headers``, ``body`` bytes);
    ``delivered``: those answered 200; ``bodies``/``headers``: their JSON and headers.
    """

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.script: dict[str, list[int]] = {}
        self.hold: dict[str, asyncio.Event] = {}
        self.got: list[dict[str, Any]] = []
        self.delivered: list[dict[str, Any]] = []
        self.answered: list[str] = []  # paths in the order they were answered
        self._changed = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        return app

    @property
    def bodies(self) -> list[Any]:
        return [json.loads(g["body"]) for g in self.delivered]

    @property
    def headers(self) -> list[dict[str, str]]:
        return [g["headers"] for g in self.delivered]

    def on(self, path: str) -> list[dict[str, Any]]:
        return [g for g in self.got if g["path"] == path]

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        item = {"path": path, "headers": dict(request.headers), "body": await request.read()}
        self.got.append(item)
        self._change()
        if path in self.hold:
            await self.hold[path].wait()
            if request.transport is None or request.transport.is_closing():
                raise ConnectionResetError  # the sender died meanwhile: nothing was delivered
        queue = self.script.get(path) if path in self.script else self.statuses
        status = queue.pop(0) if queue else 200
        self.answered.append(path)
        if status == 200:
            self.delivered.append(item)
        self._change()
        return web.json_response({"status": status}, status=status)

    def _change(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, predicate: Callable[[Receiver], bool], timeout: float = 10) -> None:
        """Until ``predicate(self)`` holds, woken by each request; ``TimeoutError`` after ``timeout`` s."""

        async def until() -> None:
            while not predicate(self):
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)

    async def wait_for(self, n: int, timeout: float = 10) -> list[Any]:
        """Until ``n`` bodies were delivered; returns them."""
        await self.wait(lambda r: len(r.delivered) >= n, timeout)
        return self.bodies


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await stack(script, strict=False, **config)`` starts a scripted upstream
    (:class:`ScriptedUpstream`; ``strict``: it rejects unknown request fields as
    api.openai.com does) and
    callgate in front of it; returns an object with ``upstream``, ``url``
    (callgate), ``app`` and ``registry``."""
    exits = contextlib.AsyncExitStack()
    dbs: list[str] = []

    async def start(script: Script, upstream_url: str | None = None, strict: bool = False, **cfg: Any) -> Any:
        upstream = ScriptedUpstream(script, strict=strict)
        if upstream_url is None:
            upstream_url = await exits.enter_async_context(serve_app(upstream.app())) + "/v1"
        data: dict[str, Any] = {
            "upstream": {"base_url": upstream_url, "timeout_s": 5},
            "storage": {"path": str(tmp_path / f"callgate-{len(dbs)}.db")},
            "end_function": {"poll_s": 0.05, "after_hangup_s": 0, "sweep_s": 0.2},
        }
        dbs.append(data["storage"]["path"])
        for key, value in cfg.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        app, url = await exits.enter_async_context(running(parse_config(data), host="127.0.0.1", port=0))
        from proxy.server.services import SERVICES

        class Stack:
            pass

        s = Stack()
        s.upstream, s.url, s.app = upstream, url, app  # type: ignore[attr-defined]
        s.registry = app[SERVICES].registry  # type: ignore[attr-defined]
        s.pipeline = app[SERVICES].pipeline  # type: ignore[attr-defined]
        s.store = app[SERVICES].store  # type: ignore[attr-defined]
        s.delivery = app[SERVICES].delivery  # type: ignore[attr-defined]

        async def record(call_id: str) -> dict[str, Any]:
            """The call record once the lifecycle work in flight is done."""
            await s.registry.drain()
            rec = await s.registry.record(call_id)
            assert rec is not None, f"no call {call_id!r}"
            return rec

        s.record = record  # type: ignore[attr-defined]
        return s

    async with exits:
        yield start


@pytest.fixture
async def otlp() -> AsyncIterator[Any]:
    """A real OTLP/HTTP trace receiver on loopback (:mod:`tests.otlp`); ``otlp.url``
    is what ``telemetry.otlp_endpoint`` takes."""
    from .otlp import otlp_receiver

    async with otlp_receiver() as receiver:
        yield receiver
