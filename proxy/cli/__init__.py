"""The ``callgate`` command: ``serve``, ``check``, ``migrate``, ``demo``, ``calls``,
``jobs``, ``deliveries``, ``end-function test``, ``config example``, ``--version``.

``ops``: the text the operations commands print; ``example``: the example config
shipped in the package. What it may import: the import rule in :mod:`proxy`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from .. import __version__, logs
from ..config import Config, load_config
from ..storage import DeliveryStatus, JobStatus
from ..errors import ConfigError

__all__ = ["main", "run_event_loop"]


def run_event_loop(coro: Any) -> Any:
    """Run ``coro`` on uvloop when it is installed (faster socket I/O), else asyncio."""
    try:
        import uvloop
    except ImportError:
        found = False  # run outside the handler: a startup error is not chained onto the import
    else:
        found = True
    if not found:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _parser() -> argparse.ArgumentParser:
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


def main(argv: list[str] | None = None) -> int:
    """``callgate`` with ``argv`` (default ``sys.argv[1:]``): runs the subcommand; the
    process exit code (0 ok, 1 a check or command failed, 2 bad usage or config)."""
    try:
        return _main(argv)
    except BrokenPipeError:  # `callgate ... | head`: a closed stdout ends quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "config":
        from .example import example_text

        sys.stdout.write(example_text())
        return 0
    if args.command == "demo":
        from ..demo.run import main as demo_main

        return demo_main(cluster=args.cluster)
    try:
        config = load_config(getattr(args, "config", None))
    except ConfigError as e:
        print(f"callgate: {e}", file=sys.stderr)
        return 2
    if args.command == "check":
        return _check(args.config, config)
    if args.command in ("calls", "jobs", "deliveries"):
        return _ops(args, config)
    if args.command == "migrate":
        return _migrate(config)
    if args.command == "end-function":
        return _sandbox(args, config)
    return _serve(args, config)


def _serve(args: argparse.Namespace, config: Config) -> int:
    if args.host:
        config.server.host = args.host
    if args.port is not None:
        config.server.port = args.port
    if args.workers is not None:
        config.server.workers = args.workers
    logs.setup(config.log_level, config.log_mask.fields, config.log_mask.phone_numbers, config.log_format)
    from ..server.auth import check_exposure

    refusal = check_exposure(config.server.host, config.auth)
    if refusal is not None:
        print(f"callgate: {refusal}", file=sys.stderr)
        return 2
    from ..server.app import serve
    from ..server.workers import run_workers
    from ..errors import StorageError

    try:
        workers = config.server.worker_count()
        if workers > 1 and args.socket_fd is None:
            return run_workers(config, args.config, workers)
        run_event_loop(serve(config, socket_fd=args.socket_fd, config_path=args.config))
    except StorageError as e:
        print(f"callgate: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"callgate: cannot listen on {config.server.host}:{config.server.port}: {e.strerror}", file=sys.stderr)
        return 1
    return 0


def _check(path: str, config: Config) -> int:
    """``callgate check``: the config is valid; the effective settings of each profile."""
    from ..profiles import resolve_profiles
    from . import ops

    try:
        profiles = resolve_profiles(config)
    except ConfigError as e:
        print(f"callgate: {e}", file=sys.stderr)
        return 2
    if config.storage.url is None:
        from ..storage.sqlite import storage_problem

        problem = storage_problem(config.storage.path)
        if problem is not None:
            print(f"callgate: {path}: storage.path: {problem}", file=sys.stderr)
            return 1
    print(
        f"ok: {path}: upstream {', '.join(u.base_url for u in config.pool)}, default profile {config.default_profile}, "
        f"{len(config.end_function.steps)} end-function steps"
    )
    print(ops.profiles_text(profiles, config.default_profile))
    return 0


def _migrate(config: Config) -> int:
    """``callgate migrate``: the pending schema migrations, each logged; with SQLite,
    only while no server holds the database."""
    from ..errors import StorageError
    from ..storage import OpenMode, migrations, open_store

    logs.setup("info", config.log_mask.fields, config.log_mask.phone_numbers, "text")
    st = config.storage
    try:
        store = open_store(st.path, url=st.url, mode=OpenMode.MIGRATE, pool_size=1)
    except StorageError as e:
        print(f"callgate: {e}", file=sys.stderr)
        return 2
    store.close_sync()
    print(f"{store.path}: schema v{migrations.LATEST}")
    return 0


# The commands that only read the database open it read-only.
_READS = {("calls", "list"), ("calls", "show"), ("calls", "tail"), ("jobs", "list"), ("deliveries", "list")}


def _ops(args: argparse.Namespace, config: Config) -> int:
    """``calls``, ``jobs`` and ``deliveries``: on the database directly, with or
    without a server running (a running one picks retries up within ``poll_s``).
    They never migrate it: a database of another schema version is refused."""
    from ..errors import StorageError
    from ..storage import OpenMode, open_store

    path = config.storage.path
    if not config.storage.url and not Path(path).exists():
        print(f"callgate: no database at {path} (storage.path)", file=sys.stderr)
        return 2
    mode = OpenMode.READ if (args.command, args.action) in _READS else OpenMode.WRITE
    try:
        store = open_store(path, url=config.storage.url, mode=mode, pool_size=2)
    except StorageError as e:
        print(f"callgate: {e}", file=sys.stderr)
        return 2
    try:
        return _OPS[(args.command, args.action)](args, config, store)
    except ValueError as e:
        print(f"callgate: {e}", file=sys.stderr)
        return 2
    finally:
        store.close_sync()


def _calls_list(args: argparse.Namespace, config: Config, store: Any) -> int:
    from ..storage import ops as db
    from . import ops

    try:
        since = ops.parse_since(args.since) if args.since else None
    except ValueError:
        raise ValueError(f"--since {args.since!r}: give 30m, 2h, 1d or an ISO 8601 time") from None
    print(ops.calls_list(store.run_sync(db.list_calls, since=since, status=args.status, limit=args.limit)))
    return 0


def _calls_show(args: argparse.Namespace, config: Config, store: Any) -> int:
    from ..storage import ops as db
    from . import ops

    row = store.run_sync(db.find_call, args.call_id, False)
    record = store.run_sync(db.call_record, row.key) if row is not None else None
    if record is None:
        print(f"callgate: no call {args.call_id!r} in {config.storage.path}", file=sys.stderr)
        return 1
    print(ops.calls_show(record, as_json=args.json))
    return 0


def _calls_tail(args: argparse.Namespace, config: Config, store: Any) -> int:
    """Poll the database (any engine, any instance's calls) every 0.5 s and print
    what is new, masked as log lines are; with a call id, from its start until it ends."""
    from ..storage import ops as db
    from . import ops

    try:
        since = ops.parse_since(args.since) if args.since else (0.0 if args.call_id else time.time())
    except ValueError:
        raise ValueError(f"--since {args.since!r}: give 30m, 2h, 1d or an ISO 8601 time") from None
    seen: set[tuple[str, str, int]] = set()
    try:
        while True:
            items = store.run_sync(db.tail, since, args.call_id)
            if _print_new(items, seen, config) and args.call_id is not None:
                return 0
            if items:
                since = items[-1]["at"]  # the items at exactly this time come again: `seen` drops them
                seen = {_mark(i) for i in items if i["at"] == since}
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0


def _mark(item: dict[str, Any]) -> tuple[str, str, int]:
    return item["kind"], item["key"], item["seq"] if item["kind"] == "event" else item["idx"]


def _print_new(items: list[dict[str, Any]], seen: set[tuple[str, str, int]], config: Config) -> bool:
    """Print the items not in ``seen``; whether one of them is a ``call.ended``."""
    from ..logs import mask_text
    from . import ops

    ended = False
    for item in items:
        if _mark(item) in seen:
            continue
        print(mask_text(ops.tail_line(item), config.log_mask.fields, config.log_mask.phone_numbers), flush=True)
        ended = ended or (item["kind"] == "event" and item["event"].get("type") == "call.ended")
    return ended


def _calls_purge(args: argparse.Namespace, config: Config, store: Any) -> int:
    from ..storage import ops as db
    from . import ops

    try:
        before = ops.parse_since(args.before)
    except ValueError:
        raise ValueError(f"--before {args.before!r}: give 30d, 12h or an ISO 8601 date or time") from None
    total = 0
    while (n := store.run_sync(db.purge, before)) > 0:
        total += n
    print(f"{total} ended call(s) deleted, with their turns, events, deliveries and steps")
    return 0


def _jobs_list(args: argparse.Namespace, config: Config, store: Any) -> int:
    from ..storage import ops as db
    from . import ops

    print(ops.jobs_list(store.run_sync(db.list_jobs, status=JobStatus.FAILED if args.failed else None)))
    return 0


def _one_or_all(args: argparse.Namespace, name: str) -> None:
    if (getattr(args, name) is None) == (not args.all_failed):
        raise ValueError(f"give a {name.replace('_', ' ')} or --all-failed")


def _jobs_retry(args: argparse.Namespace, config: Config, store: Any) -> int:
    from ..storage import ops as db

    _one_or_all(args, "job_id")
    n = store.run_sync(db.retry_jobs, None if args.all_failed else [args.job_id], time.time())
    print(f"{n} job(s) back to pending; a running server picks them up within {config.end_function.poll_s} s")
    return 1 if n == 0 and args.job_id is not None and store.run_sync(db.job, args.job_id) is None else 0


def _deliveries_list(args: argparse.Namespace, config: Config, store: Any) -> int:
    from ..storage import ops as db
    from . import ops

    rows = store.run_sync(db.list_deliveries, status=DeliveryStatus.FAILED if args.failed else None)
    print(ops.deliveries_list(rows, store.run_sync(db.count_deliveries)))
    return 0


def _deliveries_retry(args: argparse.Namespace, config: Config, store: Any) -> int:
    from ..storage import ops as db

    _one_or_all(args, "event_id")
    n = store.run_sync(db.retry_deliveries, None if args.all_failed else [args.event_id], time.time())
    print(f"{n} delivery(ies) back to pending; a running server sends them within {config.end_function.poll_s} s")
    return 1 if n == 0 and args.event_id is not None else 0


_OPS = {
    ("calls", "list"): _calls_list,
    ("calls", "show"): _calls_show,
    ("calls", "purge"): _calls_purge,
    ("calls", "tail"): _calls_tail,
    ("jobs", "list"): _jobs_list,
    ("jobs", "retry"): _jobs_retry,
    ("deliveries", "list"): _deliveries_list,
    ("deliveries", "retry"): _deliveries_retry,
}


def _sandbox(args: argparse.Namespace, config: Config) -> int:
    import json

    from ..endfn.sandbox import format_report, run_sandbox

    try:
        record = json.loads(Path(args.call).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        print(f"callgate: cannot read the call record {args.call}: {e}", file=sys.stderr)
        return 2
    if not isinstance(record, dict):
        print(f"callgate: {args.call} is not a call record (a JSON object)", file=sys.stderr)
        return 2
    report = run_event_loop(run_sandbox(config, record, live=args.live))
    print(json.dumps(report, ensure_ascii=False, indent=2, default=str) if args.json else format_report(report))
    return 0 if all(s["status"] in ("done", "skipped") for s in report["steps"]) else 1


