"""SQLite's group commit (``storage.group_commit_ms``, :mod:`proxy.storage.batch`):
posted writes of many calls share one commit, in the order they were queued; a write
someone awaits commits at once, with the writes queued before it; a failing write in
a group is undone alone."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from proxy.storage import SqliteStore, TurnStatus, ops

from .rows import NOW, call, outcome, turn


async def _store(path: Path, group_commit_ms: float) -> SqliteStore:
    store = SqliteStore(path, group_commit_ms=group_commit_ms)
    store.migrate()
    await store.start()
    return store


async def test_posted_writes_of_many_calls_share_one_commit_in_order(tmp_path: Path) -> None:
    store = await _store(tmp_path / "g.db", group_commit_ms=60_000)  # only an awaited write ends the group
    try:
        before = store.commits
        for i in range(50):
            store.post(ops.begin_turn, call(f"c{i}"), turn(f"r{i}"), None, NOW, order_key=f"c{i}")
            store.post(ops.finish_turn, f"c{i}", f"r{i}", outcome(raw="Hi", spoken="Hi"), [], [], NOW, order_key=f"c{i}")
        events = store.submit(ops.add_events, "c7", [], False, NOW, order_key="c7")
        await asyncio.sleep(0.05)
        assert store.commits == before and not events.done()  # still gathering
        t0 = time.monotonic()
        await store.settled()  # awaited: the group goes now, not after a minute
        assert time.monotonic() - t0 < 10
        assert store.commits == before + 1 and events.done()
        record = await store.read(ops.call_record, "c49")
        assert [(t["request_id"], t["status"]) for t in record["turns"]] == [("r49", TurnStatus.OK)]  # finish after begin
    finally:
        await store.close()


async def test_a_lone_posted_write_commits_after_the_linger(tmp_path: Path) -> None:
    store = await _store(tmp_path / "g.db", group_commit_ms=30)
    try:
        store.post(ops.begin_turn, call("c1"), turn("r1"), None, NOW, order_key="c1")
        async with asyncio.timeout(10):
            while await store.read(ops.find_call, "c1", False) is None:
                await asyncio.sleep(0.01)
        assert store.commits == 1
    finally:
        await store.close()


async def test_a_failing_write_in_a_group_is_undone_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = await _store(tmp_path / "g.db", group_commit_ms=60_000)
    try:
        store.post(ops.begin_turn, call("a"), turn("ra"), None, NOW, order_key="a")
        failing = store.submit(ops.add_events, "nobody", [], False, NOW)  # fine: no events, no lookup
        store.post(ops.begin_turn, call("b"), turn("ra"), None, NOW, order_key="b")  # the same request id: refused
        store.post(ops.begin_turn, call("c"), turn("rc"), None, NOW, order_key="c")
        await store.settled()
        assert failing.done() and failing.exception() is None
        assert await store.read(ops.find_call, "a", False) is not None
        assert await store.read(ops.find_call, "b", False) is None
        assert await store.read(ops.find_call, "c", False) is not None
        assert "a database write failed: begin_turn" in caplog.text
    finally:
        await store.close()


async def test_close_commits_what_is_still_gathering(tmp_path: Path) -> None:
    store = await _store(tmp_path / "g.db", group_commit_ms=60_000)
    store.post(ops.begin_turn, call("c1"), turn("r1"), None, NOW, order_key="c1")
    async with asyncio.timeout(10):
        await store.close()
    again = await _store(tmp_path / "g.db", group_commit_ms=0)
    try:
        assert await again.read(ops.find_call, "c1", False) is not None
    finally:
        await again.close()
