"""The ``callgate`` command: ``serve``, ``check``, ``migrate``, ``demo``, ``calls``,
``jobs``, ``deliveries``, ``end-function test``, ``config example``, ``--version``.

``ops``: the text the operations commands print; ``example``: the example config
shipped in the package; ``parser``: the command line's arguments. What it may import: the import rule in :mod:`proxy`.
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
from ..config import Config, load_config, with_server
from ..storage import DeliveryStatus, JobStatus
from ..errors import ConfigError
from .parser import parser as _parser

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
    try:  # validated as the file is: --port 70000 is a config error, not an OverflowError
        config = with_server(config, "command line", host=args.host or None, port=args.port, workers=args.workers)
    except ConfigError as e:
        print(f"callgate: {e}", file=sys.stderr)
        return 2
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
    except ConfigError as e:  # found as the server starts (telemetry's extra missing)
        print(f"callgate: {e}", file=sys.stderr)
        return 2
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
        from ..storage.diagnose import storage_problem

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


