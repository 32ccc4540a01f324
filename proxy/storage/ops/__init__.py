"""Every database operation, written once for both engines, one module per aggregate:

==============  ===============================================================
``calls``       a call's writes: turns, control events, state, its end; retention
``reads``       the call record, events, ``calls tail``, lists, the gauges
``queue``       end-function jobs and control-event deliveries: claims, leases,
                outcomes, retries
``instances``   heartbeats, and recovering what stopped processes left
``doors``       front doors: a socket closed (the end waits), what the caller heard
``sip``         the OpenAI SIP front door: one accept, sideband leases, latches, function outputs
==============  ===============================================================

Each function takes a :class:`~proxy.storage.db.Conn` inside a transaction the
engine opened, and typed values (:mod:`~proxy.storage.records`) or plain data;
it returns typed records or JSON-ready data. They are all importable from here:
``store.write(ops.begin_turn, ...)``.
"""

from __future__ import annotations

from .calls import (
    DueEnd,
    add_events,
    begin_turn,
    due_ends,
    end_call,
    end_of,
    find_call,
    finish_turn,
    patch_state,
    purge,
    put_record,
    queue_jobs,
)
from .doors import attach, detach, set_heard, turn_texts
from .instances import heartbeat, processes, recover
from .queue import (
    claim_deliveries,
    claim_jobs,
    count_deliveries,
    extend_leases,
    finish_delivery,
    finish_job,
    job,
    jobs_for_call,
    list_deliveries,
    list_jobs,
    next_due,
    retry_deliveries,
    retry_jobs,
)
from .reads import call_record, events_after, gauges, list_calls, read_call, tail
from .sip import (
    SipCallRecord,
    accepted,
    answer_function,
    answered_functions,
    claim_accept,
    claim_functions,
    finish_sip,
    latch,
    release,
    renew,
    settle_accept,
    sip_call,
    take_over,
    take_over_accepts,
    turn_user_text,
)

__all__ = [
    "DueEnd", "add_events", "attach", "begin_turn", "call_record", "claim_deliveries", "claim_jobs", "count_deliveries",
    "detach", "due_ends", "end_call", "end_of", "events_after", "extend_leases", "find_call", "finish_delivery", "finish_job",
    "finish_turn", "gauges", "heartbeat", "job", "jobs_for_call", "list_calls", "list_deliveries", "list_jobs",
    "next_due", "patch_state", "processes", "purge", "put_record", "queue_jobs", "read_call", "recover", "retry_deliveries",
    "retry_jobs", "set_heard", "tail", "turn_texts",
    "SipCallRecord", "accepted", "answer_function", "answered_functions", "claim_accept", "claim_functions", "finish_sip",
    "latch", "release", "renew", "settle_accept", "sip_call", "take_over", "take_over_accepts", "turn_user_text",
]

