"""``GET /readyz`` in each state: ready; not ready because the database is gone (its
SQLite file removed or replaced, its PostgreSQL database dropped), because every
upstream of a profile's pool is cooling, or because the drain began. The 503 is
OpenAI's error shape; ``/healthz`` (liveness) stays 200 throughout."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.config import parse_config
from proxy.demo.scripted_upstream import ScriptedReply, ScriptedUpstream
from proxy.server.app import running
from proxy.server.services import SERVICES

from .conftest import serve_app

PLAIN = ScriptedReply(content=["Sure."])
DEAD = "http://127.0.0.1:1/v1"  # nothing listens: connect refused


async def probe(url: str) -> tuple[int, dict[str, Any], int]:
    """``GET /readyz``: its status and JSON, and ``/healthz``'s status."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/readyz") as r:
            status, body = r.status, await r.json()
        async with http.get(f"{url}/healthz") as h:
            return status, body, h.status


def not_ready(body: dict[str, Any], code: str) -> str:
    """The 503's message, after checking it is OpenAI's error shape with ``code``."""
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert (body["error"]["type"], body["error"]["code"], body["error"]["param"]) == ("server_error", code, None)
    message: str = body["error"]["message"]
    assert message.startswith("not ready: ")
    return message


@contextlib.asynccontextmanager
async def callgate(tmp_path: Path, **cfg: Any) -> AsyncIterator[tuple[Any, str]]:
    upstream = ScriptedUpstream([PLAIN] * 10)
    async with serve_app(upstream.app()) as up:
        data = {"upstream": {"base_url": f"{up}/v1", "timeout_s": 5}, "storage": {"path": str(tmp_path / "cg.db")}, **cfg}
        async with running(parse_config(data), host="127.0.0.1", port=0) as (app, url):
            yield app, url


async def test_ready_when_the_database_answers_and_every_profile_has_an_upstream(tmp_path: Path) -> None:
    async with callgate(tmp_path) as (_, url):
        status, body, health = await probe(url)
    assert (status, body, health) == (200, {"status": "ready"}, 200)


async def test_not_ready_while_every_upstream_of_a_profiles_pool_is_cooling(tmp_path: Path) -> None:
    """Profile ``vip`` goes to upstream ``a`` alone; ``a`` fails once and cools
    (``eject_after: 1``): ``vip`` can serve nothing, so the instance is not ready,
    though the default profile's ``b`` is fine."""
    upstream = ScriptedUpstream([PLAIN] * 5)
    async with serve_app(upstream.app()) as up:
        data = {
            "upstreams": [{"name": "a", "base_url": DEAD, "timeout_s": 2}, {"name": "b", "base_url": f"{up}/v1"}],
            "routing": {"order": ["b", "a"], "eject_after": 1, "cooldown_s": 60},
            "profiles": {"vip": {"upstreams": ["a"]}},
            "storage": {"path": str(tmp_path / "cg.db")},
        }
        async with running(parse_config(data), host="127.0.0.1", port=0) as (_, url):
            assert (await probe(url))[0] == 200
            async with aiohttp.ClientSession() as http:
                body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                async with http.post(f"{url}/vip/v1/chat/completions", json=body, headers={"X-Call-Id": "c1"}) as r:
                    assert r.status == 502
            status, body, health = await probe(url)
    assert (status, health) == (503, 200)
    message = not_ready(body, "upstreams_cooling")
    assert "every upstream of profile vip is cooling: a (" in message and " s left)" in message
    assert "openai" not in message  # the other profiles have b


async def test_not_ready_when_the_sqlite_file_is_removed_or_replaced(tmp_path: Path) -> None:
    async with callgate(tmp_path) as (_, url):
        db = tmp_path / "cg.db"
        os.rename(db, tmp_path / "moved.db")  # an operator's mv / rm: the server writes into a file nobody will open
        status, body, health = await probe(url)
        assert (status, health) == (503, 200)
        assert not_ready(body, "storage_unavailable") == (
            f"not ready: the database file is gone (storage.path={db}): No such file or directory (ENOENT)"
        )
        db.write_bytes(b"")  # another file in its place
        status, body, _ = await probe(url)
        assert status == 503 and "the database file was replaced while serving" in not_ready(body, "storage_unavailable")
        os.replace(tmp_path / "moved.db", db)  # the same file back: ready again
        assert (await probe(url))[0] == 200


async def test_not_ready_when_the_postgresql_database_is_gone(tmp_path: Path, pg_url: str) -> None:
    import psycopg

    async with callgate(tmp_path, storage={"url": pg_url, "pool_size": 2}) as (_, url):
        assert (await probe(url))[0] == 200
        server, name = pg_url.rsplit("/", 1)
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        status, body, health = await probe(url)
    assert (status, health) == (503, 200)
    assert "the database does not answer" in not_ready(body, "storage_unavailable")


async def test_not_ready_once_the_drain_began(tmp_path: Path) -> None:
    async with callgate(tmp_path) as (app, url):
        app[SERVICES].drain.closing = True  # what SIGTERM's quiesce sets before the drain
        status, body, _ = await probe(url)
        app[SERVICES].drain.closing = False
    assert status == 503
    assert not_ready(body, "shutting_down") == "not ready: callgate is shutting down: send new calls elsewhere"


@pytest.mark.parametrize("path", ["/readyz", "/healthz"])
async def test_needs_no_key(tmp_path: Path, path: str) -> None:
    keys = {"keys": [{"name": "rt", "key": "k" * 20, "scopes": ["relay"]}]}
    async with callgate(tmp_path, auth=keys) as (_, url):
        async with aiohttp.ClientSession() as http, http.get(f"{url}{path}") as r:
            assert r.status == 200
