"""What the tables hold, as of the latest migration (:data:`VERSION`).

The same columns on SQLite and PostgreSQL; times are Unix seconds (``REAL`` /
``DOUBLE PRECISION``), JSON is text. Every status column is CHECKed against its enum
(:mod:`~proxy.storage.statuses`). The statements themselves are the migrations'
(:mod:`~proxy.storage.migrations`), applied in order.

* ``calls``: one row per call: ``id`` (the record key: the runtime's ``call_id``,
  or ``{call_id}~{generation}`` for a later call under it), ``call_id`` and
  ``generation``, ``status`` (:class:`~proxy.storage.statuses.CallStatus`), who owns
  it, when it started, was last active and ended, why, the accepted hangup
  (``hangup_at``, ``hangup_source``), ``last_seq`` (the events are numbered from
  here), ``turns``, ``state`` and ``metadata``.
* ``turns``: one row per chat completion request, written when it begins
  (``in_progress``) and when it ends; ``instance`` is the process that serves it;
  ``speech_gap_max_ms`` its longest dead air (:mod:`proxy.core.gaps`).
* ``events``: the control events, numbered per call (``call_key``, ``seq``); a
  partial unique index allows one ``hangup`` and one ``call.ended`` per call.
* ``deliveries``: one row per control event for the call layer's webhook.
* ``jobs``: one row per end-function step of an ended call (``call_key``, ``step``).
* ``instances``: the processes using the database and their heartbeats.
* ``sip_calls``, ``sip_function_calls``: the OpenAI SIP front door's calls (one accept
  each, the sideband's owner and lease, the hangup and refer latches) and their
  function calls (each executed and answered once); a live one is ended by its front
  door, never by the sweep.
* ``schema_version``: one row per migration applied.

Jobs and deliveries are one kind of queue (:mod:`~proxy.storage.ops.queue`): a
worker claims a row under a lease (``locked_by``, ``locked_until``), a heartbeat
extends it, and only the holder writes the try's outcome; ``attempts`` counts the
tries claimed.
"""

from __future__ import annotations

from .migrations import LATEST

__all__ = ["VERSION"]

VERSION = LATEST
