"""The ``callgate`` command: ``serve``, ``check``, ``demo``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from .config import load_config
from .errors import ConfigError


def _logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_event_loop(coro: Any) -> Any:
    """Run ``coro`` on uvloop when it is installed (faster socket I/O), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="callgate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the proxy")
    p_serve.add_argument("--config", help="YAML config file (default: built-in defaults)")
    p_serve.add_argument("--host", help="override server.host")
    p_serve.add_argument("--port", type=int, help="override server.port")
    p_check = sub.add_parser("check", help="validate a config file and exit")
    p_check.add_argument("--config", required=True)
    sub.add_parser("demo", help="a self-contained call: scripted LLM, proxy, openai client")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from .demo import main as demo_main

        return demo_main()
    try:
        config = load_config(getattr(args, "config", None))
    except ConfigError as e:
        print(f"callgate: {e}", file=sys.stderr)
        return 2
    if args.command == "check":
        c = config
        print(
            f"ok: {args.config}: upstream {c.upstream.base_url}, output {c.commands.output}, "
            f"{len(c.commands.function_map)} FunctionMap entries, {len(c.end_function.steps)} end-function steps"
        )
        return 0
    if args.host:
        config.server.host = args.host
    if args.port is not None:
        config.server.port = args.port
    _logging(config.log_level)
    from .app import serve

    try:
        run_event_loop(serve(config))
    except OSError as e:
        print(f"callgate: cannot listen on {config.server.host}:{config.server.port}: {e.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
