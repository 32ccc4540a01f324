"""Where one callgate process's CPU goes under calls shaped like calls (docs/performance.md,
"Profile: where the CPU goes", before and after).

It starts the benchmark upstream and ``callgate serve --workers 1`` from a checkout
(this one, or ``--root DIR``: a release, a branch), sends 100 calls in flight shaped like
the capacity run's (real-sized bodies, 4 turns, 40 chunks 30 ms apart) for ``--seconds``,
and prints two tables:

* the whole process by shared object (``perf record -e cpu-clock``; skipped with a line
  when ``perf`` is not installed: ``apt-get install linux-perf``);
* the event loop's own Python time by area (``cProfile`` of the loop thread, enabled
  after a warm-up; it inflates function calls, so read the split, not the totals).

Run: ``python -m tests.bench.profile [--root DIR] [--calls 100] [--seconds 20]``.
Two checkouts, one after the other on a quiet machine, give a before/after.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .run import PY, ROOT, wait_for_line
from proxy.demo.nginx import free_port, wait_for_port

# The server, profiled: cProfile of the loop thread between SIGUSR1 and SIGUSR2 (run with
# the checkout as the working directory, so ``proxy`` is that checkout's).
_SERVE = """
import cProfile, signal, sys
prof, out = cProfile.Profile(), sys.argv[1]
signal.signal(signal.SIGUSR1, lambda *a: prof.enable())
signal.signal(signal.SIGUSR2, lambda *a: (prof.disable(), prof.dump_stats(out)))
from proxy.cli import main
sys.argv = ["callgate"] + sys.argv[2:]
main()
"""

# (area, test on the function's file and name), first match wins.
_AREAS: list[tuple[str, object]] = [
    ("socket writes (aiohttp's writer calling transport.write)", lambda f, n: "http_writer.py" in f and n in ("_writelines", "_write")),
    ("aiohttp's server and client, streams", lambda f, n: "aiohttp/" in f or "multidict" in f or "yarl" in f),
    ("callgate core (sans-IO: SSE, inspector, analyzer, parsers, the reply machine)", lambda f, n: "/proxy/core/" in f),
    ("callgate relay (server/relay)", lambda f, n: "/proxy/server/relay/" in f),
    ("callgate calls and storage, middlewares", lambda f, n: "/proxy/" in f),
    ("prometheus-client, logging, JSON", lambda f, n: "prometheus" in f or "logging" in f or "json" in n),
    ("asyncio machinery, builtins", lambda f, n: True),
]


def areas(stats_path: Path) -> list[tuple[str, float]]:
    """Each area's share of the loop thread's own time (tottime), in table order."""
    stats = pstats.Stats(str(stats_path)).stats  # type: ignore[attr-defined]
    time_by: collections.Counter[str] = collections.Counter()
    for (f, _line, name), (_cc, _nc, tt, _ct, _callers) in stats.items():
        if name in ("run_forever", "select", "poll"):
            continue  # waiting, not working
        for area, test in _AREAS:
            if test(f, name):  # type: ignore[operator]
                time_by[area] += tt
                break
    total = sum(time_by.values()) or 1.0
    return [(area, 100 * time_by[area] / total) for area, _ in _AREAS]


def by_object(perf_data: Path) -> list[tuple[str, float]]:
    """``perf report --sort dso``: each shared object's share of the samples."""
    out = subprocess.run(["perf", "report", "-i", str(perf_data), "--sort", "dso", "--stdio", "--no-children"],
                         capture_output=True, text=True).stdout
    rows = [re.match(r"\s+([\d.]+)%\s+(\S+)", line) for line in out.splitlines()]
    return [(m.group(2), float(m.group(1))) for m in rows if m][:8]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(ROOT), help="the callgate checkout to profile (default: this one)")
    p.add_argument("--calls", default="100")
    p.add_argument("--seconds", default="20")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="callgate-profile-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    up_log = tmp / "upstream.log"
    up = subprocess.Popen([PY, "-m", "tests.bench.upstream"], cwd=ROOT, env=env, stdout=up_log.open("w"), stderr=subprocess.STDOUT)
    port = int(wait_for_line(up_log, r"port (\d+)", up).group(1))
    cfg = tmp / "cg.yaml"
    cfg.write_text(f"upstream: {{base_url: 'http://127.0.0.1:{port}/v1', timeout_s: 60}}\nlog_level: warning\n"
                   f"storage: {{path: '{tmp / 'cg.db'}'}}\n")
    cg = free_port()
    serve = subprocess.Popen([PY, "-c", _SERVE, str(tmp / "loop.prof"), "serve", "--config", str(cfg), "--port", str(cg),
                              "--workers", "1"], cwd=args.root, stderr=(tmp / "cg.log").open("w"))
    try:
        wait_for_port(cg)
        load = subprocess.Popen([PY, "-m", "tests.bench.callgen", "--url", f"http://127.0.0.1:{cg}/v1/chat/completions",
                                 "--calls", args.calls, "--seconds", args.seconds, "--turns", "4", "--ttft-ms", "250",
                                 "--chunks", "40", "--interval-ms", "30", "--pause-s", "3.5", "--real-body",
                                 "--out", str(tmp / "load.json")], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        time.sleep(4)  # a fixed window: let the calls ramp up
        window = str(max(int(args.seconds) // 2, 2))
        if shutil.which("perf"):
            subprocess.run(["perf", "record", "-e", "cpu-clock", "-F", "1000", "-p", str(serve.pid), "-o",
                            str(tmp / "perf.data"), "--", "sleep", window], capture_output=True)
        serve.send_signal(signal.SIGUSR1)
        time.sleep(int(window))  # a fixed profiling window
        serve.send_signal(signal.SIGUSR2)
        load.wait()
        deadline = time.monotonic() + 30
        while not (tmp / "loop.prof").exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # the server writes its profile on SIGUSR2
        result = json.loads((tmp / "load.json").read_text())
    finally:
        serve.terminate()
        serve.wait(timeout=60)
        up.terminate()
        up.wait()
    print(f"{args.root}: {result['turns']} turns, {result['errors']} errors")
    if (tmp / "perf.data").exists():
        print("\n| the whole process, by shared object | share |\n| --- | ---: |")
        for name, share in by_object(tmp / "perf.data"):
            print(f"| {name} | {share:.0f} % |")
    else:
        print("\n(perf is not installed: no table by shared object)")
    print("\n| the loop thread's Python, by area | share |\n| --- | ---: |")
    for area, share in areas(tmp / "loop.prof"):
        print(f"| {area} | {share:.0f} % |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
