"""Schema v8: the OpenAI SIP front door's tables.

* ``sip_calls``: one row per incoming call (OpenAI's ``rtc_…`` / ``live_…`` id): the
  one accept across instances and deliveries (the row is inserted once; the loser of
  the insert does nothing), the caller and callee, the sideband's owner and its lease
  (``owner``, ``lease_until``; another instance takes a call over when the lease runs
  out or the owner's process is gone), the hangup and refer latches (at most one of
  each: ``decided`` → ``claimed`` → ``sent`` | ``failed``), and ``call_key``: the
  ``calls`` row its turns, events and end go to.
* ``sip_function_calls``: one row per function call (``call_id``) claimed by an
  instance, with its output once answered: none is executed or answered twice.

Every status is CHECKed against its enum (:mod:`~proxy.storage.statuses`:
``SipApi``, ``SipCallStatus``, ``SipLatch``, ``SipFunctionStatus``), as of v8.
"""

from __future__ import annotations

from ..db import Conn
from .ddl import statements

__all__ = ["DESCRIPTION", "VERSION", "apply"]

VERSION = 8
DESCRIPTION = "sip_calls and sip_function_calls: the OpenAI SIP front door's accepts, leases, latches and function outputs"

_LATCH = "('decided', 'claimed', 'sent', 'failed')"

_DDL = f"""
CREATE TABLE sip_calls (
    id TEXT PRIMARY KEY,
    api TEXT NOT NULL,
    status TEXT NOT NULL,
    call_key TEXT,
    caller TEXT NOT NULL DEFAULT '',
    callee TEXT NOT NULL DEFAULT '',
    owner TEXT,
    lease_until {{real}},
    hangup TEXT,
    refer TEXT,
    refer_target TEXT NOT NULL DEFAULT '',
    accept_status INTEGER,
    attaches INTEGER NOT NULL DEFAULT 0,
    created_at {{real}} NOT NULL,
    updated_at {{real}} NOT NULL,
    CONSTRAINT sip_calls_api CHECK (api IN ('live', 'realtime')),
    CONSTRAINT sip_calls_status CHECK (status IN ('accepting', 'accepted', 'rejected', 'gone', 'failed', 'ended')),
    CONSTRAINT sip_calls_hangup CHECK (hangup IN {_LATCH}),
    CONSTRAINT sip_calls_refer CHECK (refer IN {_LATCH}),
    CONSTRAINT sip_calls_attaches CHECK (attaches >= 0)
);
CREATE INDEX sip_calls_live ON sip_calls (lease_until) WHERE status = 'accepted';
CREATE INDEX sip_calls_by_key ON sip_calls (call_key);
CREATE INDEX sip_calls_by_update ON sip_calls (updated_at);
CREATE TABLE sip_function_calls (
    sip_call TEXT NOT NULL,
    call_id TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    owner TEXT,
    output TEXT,
    created_at {{real}} NOT NULL,
    updated_at {{real}} NOT NULL,
    PRIMARY KEY (sip_call, call_id),
    CONSTRAINT sip_function_calls_status CHECK (status IN ('running', 'answered'))
)
"""


def apply(c: Conn) -> None:
    """Create the two tables and their indexes."""
    for statement in statements(_DDL, c.dialect):
        c.execute(statement)
