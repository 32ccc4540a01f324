"""Schema migrations on both engines: from the first released layout (one JSON record
per call) and from every numbered version to today, the data read back; a newer
schema refused; each step logged; SQLite backed up first; read-only commands never
migrate (and leave the file byte for byte as it was)."""

from __future__ import annotations

import functools

import hashlib
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.cli import main
from proxy.errors import SchemaTooNew, SchemaTooOld
from proxy.storage import CallStatus, DeliveryStatus, EventType, JobStatus, OpenMode, TurnStatus, ops, open_store
from proxy.storage.statuses import SipApi, SipCallStatus, SipFunctionStatus, SipLatch
from proxy.storage.db import Conn
from proxy.storage.migrations import LATEST, MIGRATIONS, version_of
from proxy.storage.migrations.ddl import statements

# The first layout, as callgate wrote it before schema v1 (git 8aa9f3d~1:
# proxy/storage/sqlite.py), with the types of each engine.
V0 = """
CREATE TABLE calls (id TEXT PRIMARY KEY, call_id TEXT, generation INTEGER NOT NULL DEFAULT 1, status TEXT NOT NULL,
    end_reason TEXT, started_at {real} NOT NULL, ended_at {real}, updated_at {real} NOT NULL, record TEXT NOT NULL);
CREATE INDEX calls_by_start ON calls (started_at);
CREATE INDEX calls_by_status ON calls (status, started_at);
CREATE TABLE jobs (id {serial}, call_id TEXT NOT NULL, step TEXT NOT NULL, kind TEXT NOT NULL,
    after TEXT NOT NULL DEFAULT '[]', status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at {real} NOT NULL,
    last_error TEXT, response_code INTEGER, duration_ms {real}, output TEXT, idempotency_key TEXT NOT NULL,
    created_at {real} NOT NULL, updated_at {real} NOT NULL, UNIQUE (call_id, step));
CREATE INDEX jobs_due ON jobs (status, next_at);
CREATE TABLE deliveries (event_id TEXT PRIMARY KEY, call_id TEXT NOT NULL, seq INTEGER NOT NULL, payload TEXT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, created_at {real} NOT NULL,
    updated_at {real} NOT NULL);
CREATE INDEX deliveries_pending ON deliveries (status, call_id, seq);
CREATE INDEX jobs_by_call ON jobs (call_id)
"""

RECORD = {
    "id": "old-1", "status": "ended", "started_at": "2026-11-01T10:00:00+00:00", "ended_at": "2026-11-01T10:01:00+00:00",
    "end_reason": "agent_hangup", "end_source": "text_command", "state": {"k": 1}, "metadata": {"callerNumber": "+1"},
    "turns": [{"request_id": "r1", "started_at": "2026-11-01T10:00:01+00:00", "stream": True, "user_text": "hi",
               "raw_text": "Bye", "spoken_text": "Bye", "status": "ok"}],
    "events": [{"id": "e1", "seq": 1, "type": "hangup", "source": "text_command"},
               {"id": "e2", "seq": 2, "type": "call.ended", "source": "text_command", "reason": "agent_hangup"}],
}


class Engine:
    """One engine's database for a test: raw access before callgate opens it."""

    def __init__(self, dialect: str, path: Path, url: str | None) -> None:
        self.dialect, self.path, self.url = dialect, path, url

    def run(self, fn: Any) -> Any:
        if self.url:
            import psycopg
            from psycopg.rows import dict_row

            with psycopg.connect(self.url, row_factory=dict_row) as raw, raw.transaction():
                return fn(Conn(raw, "postgres"))
        raw = sqlite3.connect(self.path, isolation_level=None)
        raw.row_factory = sqlite3.Row
        try:
            raw.execute("BEGIN")
            out = fn(Conn(raw, "sqlite"))
            raw.execute("COMMIT")
            return out
        finally:
            raw.close()

    def open(self, mode: OpenMode = OpenMode.SERVE) -> Any:
        return open_store(self.path, url=self.url, mode=mode, pool_size=1)

    def at_version(self, version: int) -> None:
        """The schema of ``version`` as the migrations made it (0: the first layout)."""

        def make(c: Conn) -> None:
            if version == 0:
                for statement in statements(V0, self.dialect):
                    c.execute(statement)
                return
            c.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            for m in MIGRATIONS[:version]:
                m.apply(c)
                c.execute("INSERT INTO schema_version (version) VALUES (:v)", {"v": m.version})

        self.run(make)


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    yield Engine(request.param, tmp_path / "cg.db", url)


def _v0_rows(c: Conn) -> None:
    c.execute(
        "INSERT INTO calls (id, call_id, status, end_reason, started_at, ended_at, updated_at, record) "
        "VALUES ('old-1', 'old-1', 'ended', 'agent_hangup', 1, 2, 2, :r)",
        {"r": json.dumps(RECORD)},
    )
    c.execute(
        "INSERT INTO jobs (call_id, step, kind, status, next_at, idempotency_key, created_at, updated_at) "
        "VALUES ('old-1', 'crm', 'webhook', 'done', 0, 'old-1:crm', 1, 1)"
    )
    c.execute(
        "INSERT INTO deliveries VALUES ('e1', 'old-1', 1, :p, 'done', 1, NULL, 1, 1)", {"p": json.dumps(RECORD["events"][0])}
    )


def test_the_first_layout_moves_forward_to_today(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    engine.at_version(0)
    engine.run(_v0_rows)
    with caplog.at_level(logging.INFO, "callgate.storage"):
        store = engine.open()
    try:
        got = store.run_sync(ops.call_record, "old-1")
        assert store.run_sync(version_of) == LATEST
        new_job = store.run_sync(ops.put_record, {**RECORD, "id": "new-1"}, [("crm", "webhook", [])], 3.0)
        jobs = store.run_sync(ops.jobs_for_call, "old-1") + store.run_sync(ops.jobs_for_call, new_job)
    finally:
        store.close_sync()
    assert (got["status"], got["end_reason"], got["state"]) == ("ended", "agent_hangup", {"k": 1})
    assert got["transcript"] == [{"role": "user", "text": "hi"}, {"role": "assistant", "text": "Bye"}]
    assert [e["type"] for e in got["events"]] == ["hangup", "call.ended"]
    assert got["end_function"]["steps"][0]["status"] == "done" and got["control_deliveries"][0]["status"] == "done"
    assert [(j.call_key, j.step, j.id) for j in jobs] == [("old-1", "crm", 1), ("new-1", "crm", 2)]  # ids go on
    steps = [m.message for m in caplog.records if "schema v" in m.message]
    assert [s.split(": schema ")[1].split(":")[0] for s in steps] == [f"v{v - 1} -> v{v}" for v in range(1, LATEST + 1)]


def _v1_rows(c: Conn, version: int = 1) -> None:
    """Two calls under one id (the second a later generation whose events named its
    record key), a turn, an event each, a job and a delivery, in the columns of
    schema ``version`` (v1's: ``jobs.call_id``; from v3: ``jobs.call_key``)."""
    job_key = "call_key" if version >= 3 else "call_id"
    for key, generation in (("g", 1), ("g~2", 2)):
        c.execute(
            "INSERT INTO calls (id, call_id, generation, status, started_at, last_activity, ended_at, end_reason, "
            "end_source, last_seq, turns, state, metadata, updated_at) VALUES (:k, 'g', :g, 'ended', 1, 2, 3, "
            "'agent_hangup', 'text_command', 1, 1, '{\"a\": 1}', '{}', 3)",
            {"k": key, "g": generation},
        )
        c.execute(
            "INSERT INTO turns (call_key, idx, request_id, instance, started_at, stream, status, user_text, spoken_text) "
            "VALUES (:k, 1, :r, 'x', 1, 1, 'ok', 'hi', 'Bye')",
            {"k": key, "r": f"r-{key}"},
        )
        named = {"call_id": "g", "generation": generation} if version >= 3 else {"call_id": key}  # v3 wrote the runtime's id
        payload = json.dumps({"id": f"e-{key}", "seq": 1, "type": "call.ended", **named, "source": "text_command",
                              "reason": "agent_hangup"})
        c.execute(
            "INSERT INTO events (call_key, seq, id, type, created_at, payload) VALUES (:k, 1, :e, 'call.ended', 3, :p)",
            {"k": key, "e": f"e-{key}", "p": payload},
        )
        c.execute(
            "INSERT INTO deliveries (event_id, call_key, seq, type, payload, status, attempts, next_at, created_at, "
            "updated_at) VALUES (:e, :k, 1, 'call.ended', :p, 'pending', 1, 3, 3, 3)",
            {"e": f"e-{key}", "k": key, "p": payload},
        )
        c.execute(
            f"INSERT INTO jobs ({job_key}, step, kind, status, attempts, next_at, idempotency_key, created_at, updated_at) "
            "VALUES (:k, 'crm', 'webhook', 'failed', 3, 0, :i, 1, 1)",
            {"k": key, "i": f"{key}:crm"},
        )


@pytest.mark.parametrize("version", range(1, LATEST))
def test_every_numbered_version_moves_forward_to_today(engine: Engine, version: int) -> None:
    engine.at_version(version)
    engine.run(functools.partial(_v1_rows, version=version))
    store = engine.open()
    try:
        first = store.run_sync(ops.call_record, "g")
        second = store.run_sync(ops.call_record, "g~2")
        failed = store.run_sync(ops.list_jobs, status=JobStatus.FAILED)
        retried = store.run_sync(ops.retry_jobs, None, 5.0)
    finally:
        store.close_sync()
    assert (first["id"], first["generation"], first["state"]) == ("g", 1, {"a": 1})
    assert (second["id"], second["call_id"], second["generation"], second["key"]) == ("g", "g", 2, "g~2")
    assert second["events"][0]["call_id"] == "g" and second["events"][0]["generation"] == 2
    assert first["events"][0]["call_id"] == "g"
    assert [d["status"] for d in second["control_deliveries"]] == ["pending"]
    assert sorted(j.call_key for j in failed) == ["g", "g~2"] and retried == 2
    assert [(t["spoken_text"], t["reasoning_text"], t["attempts"]) for t in second["turns"]] == [("Bye", "", [])]
    assert (second["usage"], second["cost_usd"]) == (None, None)  # turns before v5: unknown, not zero


def test_a_newer_schema_refuses_to_open_naming_both_versions(engine: Engine) -> None:
    engine.open().close_sync()
    engine.run(lambda c: c.execute("INSERT INTO schema_version (version) VALUES (:v)", {"v": LATEST + 5}))
    for mode in OpenMode:
        with pytest.raises(SchemaTooNew, match=f"schema v{LATEST + 5}, newer than this callgate's v{LATEST}"):
            engine.open(mode)


def test_a_read_only_open_never_migrates(engine: Engine) -> None:
    engine.at_version(1)
    for mode in (OpenMode.READ, OpenMode.WRITE):
        with pytest.raises(SchemaTooOld, match=f"schema v1; this callgate uses v{LATEST}"):
            engine.open(mode)
    assert engine.run(version_of) == 1


def test_sqlite_is_copied_before_it_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "cg.db"
    engine = Engine("sqlite", path, None)
    engine.at_version(1)
    engine.run(_v1_rows)
    before = path.read_bytes()
    engine.open().close_sync()
    backup = tmp_path / "cg.db.bak-v1"
    assert backup.read_bytes() == before or _same_rows(backup, before, tmp_path)
    with sqlite3.connect(backup) as old:
        assert old.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == 1
        assert old.execute("SELECT COUNT(*) FROM jobs WHERE call_id = 'g~2'").fetchone()[0] == 1
    engine.open().close_sync()  # already today's: no second copy
    assert sorted(p.name for p in tmp_path.glob("cg.db.bak-*")) == ["cg.db.bak-v1"]


def _same_rows(backup: Path, before: bytes, tmp: Path) -> bool:
    copy = tmp / "before.db"
    copy.write_bytes(before)
    dump = lambda p: list(sqlite3.connect(p).iterdump())  # noqa: E731
    return dump(backup) == dump(copy)


def _digest(path: Path) -> dict[str, str]:
    """The database file and its WAL (the -shm file is shared memory readers mark)."""
    files = [path, path.with_name(path.name + "-wal")]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.exists()}


@pytest.mark.parametrize("older_server", [False, True], ids=["closed", "older-server-running"])
@pytest.mark.parametrize(
    "argv",
    [["calls", "list"], ["calls", "show", "g"], ["jobs", "list"], ["deliveries", "list"], ["jobs", "retry", "--all-failed"]],
)
def test_cli_commands_leave_an_older_database_byte_for_byte_unchanged(
    tmp_path: Path, argv: list[str], older_server: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server of the older version may still be writing to it: no command but
    ``serve`` and ``migrate`` changes it (with the older server's connection open in
    WAL mode and a write of its not yet checkpointed)."""
    path = tmp_path / "cg.db"
    engine = Engine("sqlite", path, None)
    engine.at_version(2)
    engine.run(_v1_rows)
    server = None
    if older_server:
        server = sqlite3.connect(path, isolation_level=None)
        server.execute("PRAGMA journal_mode=WAL")
        server.execute("PRAGMA wal_autocheckpoint=0")
        server.execute("UPDATE calls SET turns = 2 WHERE id = 'g'")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage: {{path: '{path}'}}\n")
    before = _digest(path)
    try:
        assert main([*argv, "--config", str(cfg)]) == 2
        err = capsys.readouterr().err
        assert f"schema v2; this callgate uses v{LATEST}" in err and "callgate migrate" in err
        assert _digest(path) == before
    finally:
        if server is not None:
            server.close()


def test_callgate_migrate_applies_the_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cg.db"
    Engine("sqlite", path, None).at_version(1)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"storage: {{path: '{path}'}}\n")
    assert main(["migrate", "--config", str(cfg)]) == 0
    assert f"schema v{LATEST}" in capsys.readouterr().out
    assert main(["calls", "list", "--config", str(cfg)]) == 0


def _checks(engine: Engine) -> dict[str, str]:
    """Each table's CHECK constraints as written in the schema."""
    if engine.url:
        rows = engine.run(lambda c: c.all(
            "SELECT conrelid::regclass::text AS t, pg_get_constraintdef(oid) AS d FROM pg_constraint WHERE contype = 'c'"
        ))
        out: dict[str, str] = {}
        for r in rows:
            out[r["t"]] = out.get(r["t"], "") + " " + r["d"]
        return out
    rows = engine.run(lambda c: c.all("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    return {r["name"]: r["sql"] for r in rows}


def test_the_schema_checks_exactly_the_enums_values(engine: Engine) -> None:
    """The statuses the code knows and the values the schema admits are the same."""
    engine.open().close_sync()
    checks = _checks(engine)
    for table, column, enum in (
        ("calls", "status", CallStatus), ("turns", "status", TurnStatus), ("jobs", "status", JobStatus),
        ("deliveries", "status", DeliveryStatus), ("deliveries", "type", EventType), ("events", "type", EventType),
        ("sip_calls", "api", SipApi), ("sip_calls", "status", SipCallStatus), ("sip_calls", "hangup", SipLatch),
        ("sip_calls", "refer", SipLatch), ("sip_function_calls", "status", SipFunctionStatus),
    ):
        assert _values(checks[table], column) == {e.value for e in enum}, (table, column)


def _values(text: str, column: str) -> set[str]:
    """The values of a column's CHECK (SQLite's ``IN (...)``, PostgreSQL's
    ``= ANY (ARRAY[...])``)."""
    import re

    m = re.search(rf"\b{column}\)? IN \(([^)]*)\)", text) or re.search(rf"\b{column}\)? = ANY \(+ARRAY\[([^\]]*)\]", text)
    assert m, text
    return set(re.findall(r"'([^']*)'", m.group(1)))


def test_v6_splits_interrupted_into_what_each_meant(engine: Engine) -> None:
    """``interrupted`` meant three things before v6: the caller spoke over a front door's
    reply, callgate's drain ran out, the serving process stopped. Each keeps its meaning."""
    engine.at_version(5)

    def rows(c: Conn) -> None:
        c.execute(
            "INSERT INTO calls (id, call_id, status, started_at, last_activity, updated_at) VALUES ('i', 'i', 'active', 1, 1, 1)"
        )
        for idx, error in enumerate(("the caller spoke again", "callgate shut down: the drain (30.0 s) was over",
                                     "the process serving it stopped"), 1):
            c.execute(
                "INSERT INTO turns (call_key, idx, request_id, instance, started_at, stream, status, error) "
                "VALUES ('i', :idx, :r, 'x', 1, 1, 'interrupted', :e)",
                {"idx": idx, "r": f"r{idx}", "e": error},
            )

    engine.run(rows)
    store = engine.open()
    try:
        record = store.run_sync(ops.call_record, "i")
    finally:
        store.close_sync()
    assert [(t["status"], t["heard_text"]) for t in record["turns"]] == [
        ("barged_in", None), ("shut_down", None), ("interrupted", None),
    ]
