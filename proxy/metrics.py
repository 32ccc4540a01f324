"""Prometheus metrics: every instrument callgate exports, defined once.

Names follow Prometheus conventions: the ``callgate_`` prefix, base units (seconds),
``_total`` on counters, ``_seconds`` on histograms. Label values are bounded: routes
are route templates, profiles are configured names, rejection reasons are
:class:`~proxy.core.commands.RejectReason` codes and upstream failures
:class:`~proxy.errors.UpstreamFailure` codes (the enums carried on the objects),
never free text. The gauges that describe the database (calls
active, dead letters) are read from it at each scrape (:mod:`proxy.server.scrape`),
so every instance reports the same truth.

``--workers N`` runs N processes: the parent points ``PROMETHEUS_MULTIPROC_DIR`` at a
fresh directory before they start (``prometheus_client``'s multiprocess mode), and
one scrape of any worker sums them all.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from prometheus_client import Counter, Histogram

__all__ = [
    "ADDED_TTFB",
    "CALLS_ENDED",
    "CHUNKS",
    "COMMANDS",
    "CONTROL_EVENTS",
    "DELIVERIES",
    "FRONT_DOOR_FRAMES",
    "LIMIT_HITS",
    "REQUESTS",
    "SPEECH_GAP",
    "SIP_REST",
    "SIP_WEBHOOKS",
    "STEP_TRIES",
    "STORAGE_WRITE",
    "THINKING_UNOPENED",
    "TURNS",
    "UPSTREAM_ATTEMPTS",
    "UPSTREAM_COST",
    "UPSTREAM_ERRORS",
    "UPSTREAM_FIRST_TOKEN",
    "UPSTREAM_HEDGES",
    "UPSTREAM_STALLS",
    "UPSTREAM_TOKENS",
    "UPSTREAM_TTFB",
    "end_reason_label",
    "labelled",
    "model_label",
]

# Where a first byte can land: sub-millisecond (callgate's own share) to seconds (a model).
_FAST = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_SLOW = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "callgate_requests_total", "HTTP requests answered, by route template, runtime profile and status", ["route", "profile", "status"]
)
UPSTREAM_TTFB = Histogram(
    "callgate_upstream_ttfb_seconds", "From reading the request to the upstream's first byte of the reply", ["profile"], buckets=_SLOW
)
ADDED_TTFB = Histogram(
    "callgate_added_ttfb_seconds",
    "From the upstream's first byte to callgate's first byte to the client (what callgate adds; a held-back command prefix counts)",
    ["profile"],
    buckets=_FAST,
)
CHUNKS = Counter("callgate_chunks_relayed_total", "SSE events (chat completion chunks) read from the upstream and relayed", ["profile"])
COMMANDS = Counter(
    "callgate_commands_total",
    "Control commands found in replies, by function, source (text_command, tool_call, text_tool_call, phrase), outcome (accepted, rejected) and reason (a RejectReason code)",
    ["function", "source", "outcome", "reason"],
)
TURNS = Counter("callgate_turns_total", "Turns (replies) ended, by profile and status (a TurnStatus value)", ["profile", "status"])
LIMIT_HITS = Counter(
    "callgate_limit_hits_total",
    "Times a bound of limits: was reached and applied, by limit (max_held_bytes, max_prompt_chars)",
    ["limit"],
)
CONTROL_EVENTS = Counter("callgate_control_events_total", "Control events emitted, by type", ["type"])
FRONT_DOOR_FRAMES = Counter(
    "callgate_front_door_frames_total",
    "Front door frames ignored or refused, by door (retell, conversation_relay, openai_sip) and result (unknown, too_big, invalid_json, not_object, bad_field, protocol_error)",
    ["door", "result"],
)
SIP_WEBHOOKS = Counter(
    "callgate_openai_sip_webhooks_total",
    "OpenAI SIP webhook deliveries, by result (call: an incoming call of the configured API; duplicate: of those, its call claimed before; other_api; other_type; unreadable; bad_signature)",
    ["result"],
)
SIP_REST = Counter(
    "callgate_openai_sip_rest_total", "OpenAI SIP REST calls (accept, reject, hangup, refer), by verb and result (ok, gone, failed)", ["verb", "result"]
)
DELIVERIES = Counter(
    "callgate_deliveries_total", "Control-event webhook delivery tries, by outcome (done, retry, failed)", ["outcome"]
)
STEP_TRIES = Counter("callgate_step_tries_total", "End-function step tries, by step and outcome (done, retry, failed, skipped)", ["step", "outcome"])
CALLS_ENDED = Counter("callgate_calls_ended_total", "Calls ended, by end reason", ["reason"])
STORAGE_WRITE = Histogram(
    "callgate_storage_write_seconds", "One database write transaction, begin to commit (PostgreSQL: from taking a pooled connection)", ["engine"], buckets=_FAST + (2.5, 5.0)
)
UPSTREAM_ERRORS = Counter(
    "callgate_upstream_errors_total",
    "Replies the upstream failed, by kind (an UpstreamFailure code)",
    ["kind"],
)

UPSTREAM_ATTEMPTS = Counter(
    "callgate_upstream_attempts_total",
    "Attempts at a pool's upstream, by upstream name and outcome (won, lost, failed, cancelled, stalled, continued)",
    ["upstream", "outcome"],
)
UPSTREAM_HEDGES = Counter("callgate_hedges_total", "Hedges: a next upstream started because no speakable output came within routing.first_token_ms")
UPSTREAM_STALLS = Counter("callgate_stalls_total", "Replies whose speech went silent routing.stall_ms (or broke) before their finish")
UPSTREAM_TOKENS = Counter(
    "callgate_tokens_total", "Tokens the upstreams reported (usage), by upstream and kind (prompt, completion, cached)", ["upstream", "kind"]
)
UPSTREAM_COST = Counter("callgate_cost_usd_total", "What the upstreams' usage cost at the configured prices (USD), by upstream", ["upstream"])
UPSTREAM_FIRST_TOKEN = Histogram(
    "callgate_upstream_first_token_seconds",
    "From reading the request to an attempt's first speakable output, by upstream",
    ["upstream"],
    buckets=_SLOW,
)
SPEECH_GAP = Histogram(
    "callgate_speech_gap_seconds",
    "Dead air per turn: the longest silence inside a reply's speech, between two speakable pieces after the first, by runtime profile",
    ["profile"],
    buckets=_SLOW,
)

THINKING_UNOPENED = Counter(
    "callgate_thinking_unopened_total",
    "Replies with a thinking closing tag (</think>) and no opening one, from an upstream not marked as opening thinking "
    "in the prompt (its thinking_open_models), by upstream name and the model sent upstream",
    ["upstream", "model"],
)

_END_REASON = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_END_REASONS_MAX = 50
_end_reasons: set[str] = set()


def end_reason_label(reason: str) -> str:
    """An end reason as a bounded label value: the call layer may report any reason,
    so past 50 distinct ones, and for anything not ``snake_case`` up to 32 chars,
    the label is ``other``."""
    if reason in _end_reasons:
        return reason
    if _END_REASON.match(reason) and len(_end_reasons) < _END_REASONS_MAX:
        _end_reasons.add(reason)
        return reason
    return "other"


_MODEL = re.compile(r"^[\w.:/@+-]{1,100}$")
_MODELS_MAX = 50
_models: set[str] = set()


def model_label(model: str) -> str:
    """A model name as a bounded label value (``THINKING_UNOPENED``): a runtime may
    send any model, so past 50 distinct ones, and for anything that does not look
    like a model name, the label is ``other``."""
    if model in _models:
        return model
    if _MODEL.match(model) and len(_models) < _MODELS_MAX:
        _models.add(model)
        return model
    return "other"


@functools.lru_cache(maxsize=4096)
def labelled(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, kept: the child of a label set is the same object
    every time, and ``labels()`` (a lock, a tuple of strings, a dict) cost a few µs
    per request on the relay's path. Label values are bounded (see the module
    docstring), so the cache is too."""
    return metric.labels(*values)
