"""The ``callgate`` command line: subcommands, arguments and their checks (argparse)."""

from __future__ import annotations

import argparse

from .. import __version__
from ..storage import DeliveryStatus, JobStatus

__all__ = ["parser"]


def parser() -> argparse.ArgumentParser:
    """The ``callgate`` command line: its subcommands and their arguments."""
    parser = argparse.ArgumentParser(prog="callgate", description="OpenAI-compatible streaming proxy for voice agents.")
    parser.add_argument("--version", action="version", version=f"callgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("config", help="the config: `callgate config example` prints the documented example").add_argument(
        "action", choices=["example"]
    )
    p_serve = sub.add_parser("serve", help="run the proxy")
    p_serve.add_argument("--config", help="YAML config file (default: built-in defaults)")
    p_serve.add_argument("--host", help="override server.host")
    p_serve.add_argument("--port", type=int, help="override server.port")
    p_serve.add_argument(
        "--workers", type=_workers, help="override server.workers: processes on one port, 'auto' (one per core, the default) or N"
    )
    p_serve.add_argument("--socket-fd", type=int, help=argparse.SUPPRESS)  # one of --workers: the parent's socket
    p_check = sub.add_parser("check", help="validate a config file and print each profile's settings")
    p_check.add_argument("--config", required=True)
    p_migrate = sub.add_parser("migrate", help="apply the database's pending schema migrations (serve does it at start)")
    p_migrate.add_argument("--config")
    p_demo = sub.add_parser("demo", help="a self-contained call: scripted LLM, proxy, openai client")
    p_demo.add_argument("--cluster", action="store_true", help="through three instances on PostgreSQL, behind nginx")

    calls = sub.add_parser("calls", help="calls in the database").add_subparsers(dest="action", required=True)
    p_list = calls.add_parser("list", help="newest first")
    p_list.add_argument("--since", help="e.g. 30m, 2h, 1d, or an ISO 8601 time")
    p_list.add_argument("--status", choices=["active", "ended"])
    p_list.add_argument("--limit", type=int, default=100)
    p_show = calls.add_parser("show", help="one call: transcript, events, end-function steps")
    p_show.add_argument("call_id")
    p_show.add_argument("--json", action="store_true", help="the record as JSON (input for end-function test)")
    p_tail = calls.add_parser("tail", help="follow turns and control events as they happen (one call's: until it ends)")
    p_tail.add_argument("call_id", nargs="?")
    p_tail.add_argument("--since", help="start this far back (e.g. 10m) or at an ISO 8601 time (default: now; a call's start)")
    p_purge = calls.add_parser("purge", help="delete ended calls (turns, events, deliveries, steps) older than a time")
    p_purge.add_argument("--before", required=True, help="e.g. 30d (ago), or an ISO 8601 date or time (UTC unless given)")

    jobs = sub.add_parser("jobs", help="end-function steps in the database").add_subparsers(dest="action", required=True)
    p_jlist = jobs.add_parser("list")
    p_jlist.add_argument("--failed", action="store_true", help="only dead letters")
    p_retry = jobs.add_parser("retry", help="run failed steps again (and the steps blocked behind them)")
    p_retry.add_argument("job_id", nargs="?", type=int)
    p_retry.add_argument("--all-failed", action="store_true")

    dels = sub.add_parser("deliveries", help="control-event deliveries to the webhook").add_subparsers(dest="action", required=True)
    p_dlist = dels.add_parser("list")
    p_dlist.add_argument("--failed", action="store_true", help="only dead letters")
    p_dretry = dels.add_parser("retry", help="send failed deliveries again")
    p_dretry.add_argument("event_id", nargs="?")
    p_dretry.add_argument("--all-failed", action="store_true")
    for p in (p_list, p_show, p_tail, p_purge, p_jlist, p_retry, p_dlist, p_dretry):
        p.add_argument("--config")

    p_ef = sub.add_parser("end-function", help="the end function").add_subparsers(dest="action", required=True)
    p_test = p_ef.add_parser("test", help="run the steps against a recorded call, side effects recorded")
    p_test.add_argument("--config", required=True)
    p_test.add_argument("--call", required=True, help="a call record (callgate calls show ID --json)")
    p_test.add_argument("--live", action="store_true", help="send for real")
    p_test.add_argument("--json", action="store_true", help="the report as JSON")
    return parser


def _workers(text: str) -> int | str:
    """``--workers``: ``auto``, or a number of processes from 1 to 64."""
    if text == "auto" or (text.isdigit() and 1 <= int(text) <= 64):
        return text if text == "auto" else int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: auto, or a number from 1 to 64")
