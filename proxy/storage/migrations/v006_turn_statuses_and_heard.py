"""Schema v6: a turn's ``interrupted`` meant three things; each has a status of its
own now. ``barged_in``: the caller spoke over the reply (a front door cancelled it);
``shut_down``: callgate's drain ran out with it open; ``interrupted`` keeps one
meaning: the process serving it stopped (found by recovery). Rows written before
are mapped by the error they recorded (``the caller spoke again``; ``callgate shut
down: …``). ``turns.heard_text``: what the caller heard of the reply when the
platform said so (``NULL``: all of ``spoken_text``). ``calls.detached_at`` /
``detached_source``: a front door's socket closed at that time (Unix s) and has not
reconnected: any instance ends the call ``after_hangup_s`` later, unless a socket
for it opens first, on any instance.

PostgreSQL replaces the CHECK in place; SQLite makes ``turns`` anew with it (the
procedure of SQLite's "ALTER TABLE" page), as v3 did.
"""

from __future__ import annotations

from ..db import Conn
from .ddl import columns, statements

__all__ = ["DESCRIPTION", "VERSION", "apply"]

VERSION = 6
DESCRIPTION = "turn statuses barged_in and shut_down apart from interrupted; turns.heard_text; calls.detached_at"

_TURN = (
    "status IN ('in_progress', 'ok', 'upstream_error', 'upstream_incomplete', 'client_disconnected', 'barged_in', "
    "'shut_down', 'interrupted', 'error')"
)

_TURNS_V6 = f"""
CREATE TABLE turns_v6 (
    call_key TEXT NOT NULL, idx INTEGER NOT NULL, request_id TEXT NOT NULL UNIQUE, instance TEXT NOT NULL,
    started_at REAL NOT NULL, stream INTEGER NOT NULL, status TEXT NOT NULL, user_text TEXT NOT NULL DEFAULT '',
    raw_text TEXT NOT NULL DEFAULT '', spoken_text TEXT NOT NULL DEFAULT '', commands TEXT NOT NULL DEFAULT '[]',
    tool_calls TEXT NOT NULL DEFAULT '[]', ttft_ms REAL, duration_ms REAL, error TEXT, finished_at REAL,
    reasoning_text TEXT NOT NULL DEFAULT '', attempts TEXT NOT NULL DEFAULT '[]', heard_text TEXT,
    PRIMARY KEY (call_key, idx),
    CONSTRAINT turns_status CHECK ({_TURN})
)
"""


def apply(c: Conn) -> None:
    """The columns, the CHECK, then the old rows' statuses."""
    for sql in statements("ALTER TABLE calls ADD COLUMN detached_at {real}", c.dialect):
        c.execute(sql)
    c.execute("ALTER TABLE calls ADD COLUMN detached_source TEXT")
    if c.dialect == "postgres":
        c.execute("ALTER TABLE turns ADD COLUMN heard_text TEXT")
        c.execute("ALTER TABLE turns DROP CONSTRAINT turns_status")
        c.execute(f"ALTER TABLE turns ADD CONSTRAINT turns_status CHECK ({_TURN})")
    else:
        old = columns(c, "turns")
        c.execute(_TURNS_V6)
        c.execute(f"INSERT INTO turns_v6 ({', '.join(old)}) SELECT {', '.join(old)} FROM turns")
        c.execute("DROP TABLE turns")
        c.execute("ALTER TABLE turns_v6 RENAME TO turns")
        c.execute("CREATE INDEX turns_open ON turns (instance) WHERE status = 'in_progress'")
    c.execute("UPDATE turns SET status = 'shut_down' WHERE status = 'interrupted' AND error LIKE 'callgate shut down%'")
    c.execute("UPDATE turns SET status = 'barged_in' WHERE status = 'interrupted' AND error = 'the caller spoke again'")
