"""A throwaway PostgreSQL server: ``callgate demo --cluster`` and the tests.

``CALLGATE_TEST_PG_URL`` (``postgresql://user@host:port``) uses a server you run;
otherwise a cluster is made in a temporary folder with ``initdb`` and started with
``pg_ctl`` on a free port (as the ``postgres`` user when running as root, since
PostgreSQL refuses root), with ``fsync=off``: fast, and thrown away afterwards.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["available", "cluster", "database"]


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def available() -> bool:
    """Whether ``initdb`` and ``pg_ctl`` are installed (or a server is given)."""
    return bool(os.environ.get("CALLGATE_TEST_PG_URL") or (_tool("initdb") and _tool("pg_ctl")))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str], as_postgres: bool) -> None:
    cmd = ["runuser", "-u", "postgres", "--", *args] if as_postgres else args
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stderr or done.stdout}")


@contextlib.contextmanager
def cluster() -> Iterator[str]:
    """A running PostgreSQL server; yields its URL without a database name."""
    url = os.environ.get("CALLGATE_TEST_PG_URL")
    if url:
        yield url.rstrip("/")
        return
    initdb, pg_ctl = _tool("initdb"), _tool("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError("PostgreSQL is not installed (initdb not found): `.ci/run` installs it; "
                           "or set CALLGATE_TEST_PG_URL")
    as_postgres = os.geteuid() == 0
    home = Path(tempfile.mkdtemp(prefix="callgate-pg-"))
    if as_postgres:
        shutil.chown(home, "postgres")
    data, port = home / "data", _free_port()
    _run([initdb, "-D", str(data), "-U", "callgate", "--auth", "trust", "--no-sync", "-E", "UTF8"], as_postgres)
    options = (f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
               "-c full_page_writes=off -c max_connections=400")
    _run([pg_ctl, "-D", str(data), "-l", str(home / "log"), "-w", "-t", "60", "-o", options, "start"], as_postgres)
    try:
        yield f"postgresql://callgate@127.0.0.1:{port}"
    finally:
        with contextlib.suppress(Exception):
            _run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], as_postgres)
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def database(server: str) -> Iterator[str]:
    """A fresh database on ``server``; yields its URL; dropped after."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
