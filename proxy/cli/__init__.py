"""The ``callgate`` command: ``serve``, ``check``, ``demo``, ``calls``, ``jobs``, ``end-function test``.

``ops``: the text the operations commands print. May import every layer.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from .. import logs
from ..config import Config, load_config
from ..errors import ConfigError

__all__ = ["main", "run_event_loop"]


def run_event_loop(coro: Any) -> Any:
    """Run ``coro`` on uvloop when it is installed (faster socket I/O), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="callgate", description="OpenAI-compatible streaming proxy for voice agents.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the proxy")
    p_serve.add_argument("--config", help="YAML config file (default: built-in defaults)")
    p_serve.add_argument("--host", help="override server.host")
    p_serve.add_argument("--port", type=int, help="override server.port")
    p_check = sub.add_parser("check", help="validate a config file and exit")
    p_check.add_argument("--config", required=True)
    sub.add_parser("demo", help="a self-contained call: scripted LLM, proxy, openai client")

    p_calls = sub.add_parser("calls", help="calls in the database")
    calls_sub = p_calls.add_subparsers(dest="action", required=True)
    p_list = calls_sub.add_parser("list", help="newest first")
    p_list.add_argument("--config")
    p_list.add_argument("--since", help="e.g. 30m, 2h, 1d, or an ISO 8601 time")
    p_list.add_argument("--status", choices=["active", "ended"])
    p_list.add_argument("--limit", type=int, default=100)
    p_show = calls_sub.add_parser("show", help="one call: transcript, events, end-function steps")
    p_show.add_argument("call_id")
    p_show.add_argument("--config")
    p_show.add_argument("--json", action="store_true", help="the record as JSON (input for end-function test)")

    p_jobs = sub.add_parser("jobs", help="end-function steps in the database")
    jobs_sub = p_jobs.add_subparsers(dest="action", required=True)
    p_jlist = jobs_sub.add_parser("list")
    p_jlist.add_argument("--config")
    p_jlist.add_argument("--failed", action="store_true", help="only dead letters")
    p_retry = jobs_sub.add_parser("retry", help="run failed steps again (and the steps blocked behind them)")
    p_retry.add_argument("job_id", nargs="?", type=int)
    p_retry.add_argument("--all-failed", action="store_true")
    p_retry.add_argument("--config")

    p_ef = sub.add_parser("end-function", help="the end function")
    ef_sub = p_ef.add_subparsers(dest="action", required=True)
    p_test = ef_sub.add_parser("test", help="run the steps against a recorded call, side effects recorded")
    p_test.add_argument("--config", required=True)
    p_test.add_argument("--call", required=True, help="a call record (callgate calls show ID --json)")
    p_test.add_argument("--live", action="store_true", help="send for real")
    p_test.add_argument("--json", action="store_true", help="the report as JSON")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from ..demo.run import main as demo_main

        return demo_main()
    try:
        config = load_config(getattr(args, "config", None))
    except ConfigError as e:
        print(f"callgate: {e}", file=sys.stderr)
        return 2
    if args.command == "check":
        return _check(args.config, config)
    if args.command in ("calls", "jobs"):
        return _ops(args, config)
    if args.command == "end-function":
        return _sandbox(args, config)
    if args.host:
        config.server.host = args.host
    if args.port is not None:
        config.server.port = args.port
    logs.setup(config.log_level, config.log_mask.fields, config.log_mask.phone_numbers)
    from ..server.app import serve

    try:
        run_event_loop(serve(config))
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
    print(
        f"ok: {path}: upstream {config.upstream.base_url}, default profile {config.default_profile}, "
        f"{len(config.end_function.steps)} end-function steps"
    )
    print(ops.profiles_text(profiles, config.default_profile))
    return 0


def _ops(args: argparse.Namespace, config: Config) -> int:
    from ..storage import Storage
    from . import ops

    path = config.storage.path
    if not Path(path).exists():
        print(f"callgate: no database at {path} (storage.path)", file=sys.stderr)
        return 2
    storage = Storage(path)
    try:
        if args.command == "calls" and args.action == "list":
            try:
                since = ops.parse_since(args.since) if args.since else None
            except ValueError:
                print(f"callgate: --since {args.since!r}: give 30m, 2h, 1d or an ISO 8601 time", file=sys.stderr)
                return 2
            print(ops.calls_list(storage, since=since, status=args.status, limit=args.limit))
        elif args.command == "calls":
            record = storage.get_call(args.call_id)
            if record is None:
                print(f"callgate: no call {args.call_id!r} in {path}", file=sys.stderr)
                return 1
            print(ops.calls_show(record, as_json=args.json))
        elif args.action == "list":
            print(ops.jobs_list(storage, failed=args.failed))
        else:
            if (args.job_id is None) == (not args.all_failed):
                print("callgate: give a job id or --all-failed", file=sys.stderr)
                return 2
            n = storage.retry(None if args.all_failed else [args.job_id])
            print(f"{n} job(s) back to pending; a running server picks them up within {config.end_function.poll_s} s")
            if n == 0 and args.job_id is not None and storage.job(args.job_id) is None:
                return 1
    finally:
        storage.close()
    return 0


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


