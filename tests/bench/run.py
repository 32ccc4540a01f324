"""``make bench``: per-chunk latency of callgate next to a direct connection and nginx.

One run measures, at each level (streams x chunks/s), the same scripted upstream
reached directly, through callgate in each output mode, and through nginx with
``proxy_buffering off`` when ``nginx`` is on the PATH. The upstream, callgate (or
nginx) and the load generator each run in their own process. Every reply carries a
hangup command in its last chunk (``--no-command`` to leave it out).

Prints one table: per-chunk latency p50/p99/max and TTFT p50/p99 (ms), errors,
chunks seen/sent, the proxy's CPU seconds per 10,000 chunks, its peak RSS and RSS
growth per open stream, and the figures relative to direct and to nginx from the
same run (these machines are noisy: only figures from one run compare).

Run: ``python -m tests.bench.run [--levels 10x50,100x50,400x50,1000x5] [--modes strip,...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.demo import nginx
from proxy.demo.nginx import free_port, wait_for_port

PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Level:
    streams: int
    rate: int  # chunks per second per stream
    chunks: int  # chunks per reply
    requests: int  # replies per stream

    @property
    def name(self) -> str:
        return f"{self.streams}x{self.rate}/s"


def parse_levels(text: str) -> list[Level]:
    out = []
    for part in text.split(","):
        streams, rate = (int(x) for x in part.split("x"))
        chunks = 50 if rate >= 10 else 10
        out.append(Level(streams, rate, chunks, 3 if streams <= 100 else 2))
    return out


def wait_for_line(path: Path, pattern: str, proc: subprocess.Popen, timeout: float = 20) -> re.Match[str]:
    """Wait until the process's log has a line matching ``pattern``."""
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited: {path.read_text()[-2000:]}")
        m = rx.search(path.read_text()) if path.exists() else None
        if m:
            return m
        time.sleep(0.02)
    raise TimeoutError(f"no {pattern!r} in {path}")


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total / TICK


def side_cpu_seconds(pids: list[int]) -> float:
    """CPU seconds of every thread of ``pids`` but each process's first one (its event
    loop): for callgate, the SQLite writer and reader threads (the database's share)."""
    total = 0
    for p in pids:
        try:
            tids = [t for t in os.listdir(f"/proc/{p}/task") if t != str(p)]
        except OSError:
            continue
        for t in tids:
            try:
                fields = Path(f"/proc/{p}/task/{t}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except OSError:
                pass
    return total / TICK


def memory_kib(pids: list[int], key: str) -> int:
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def pct(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))] / 1000  # µs -> ms




class Target:
    """A proxy process under test (or none, for direct)."""

    def __init__(self, kind: str, up_port: int, tmp: Path, mode: str = "") -> None:
        self.kind, self.mode, self.tmp, self.up_port = kind, mode, tmp, up_port
        self.proc: subprocess.Popen | None = None
        self.port = up_port

    @property
    def label(self) -> str:
        return f"callgate {self.mode}" if self.kind == "callgate" else self.kind

    def start(self) -> None:
        if self.kind == "callgate":
            cfg = self.tmp / f"callgate-{self.mode}.yaml"
            cfg.write_text(
                f"upstream: {{base_url: 'http://127.0.0.1:{self.up_port}/v1', timeout_s: 60}}\n"
                f"commands: {{output: {self.mode}}}\n"
                "log_level: warning\n"
            )
            log = self.tmp / f"callgate-{self.mode}.log"
            self.port = free_port()
            self.proc = subprocess.Popen(
                [PY, "-m", "proxy.cli", "serve", "--config", str(cfg), "--port", str(self.port), "--workers", "1"],
                stdout=subprocess.DEVNULL, stderr=log.open("w"), cwd=ROOT,
            )
            wait_for_port(self.port)
        elif self.kind == "nginx":
            self.proc, self.port = nginx.start(self.tmp / "nginx", [self.up_port])

    def pids(self) -> list[int]:
        return tree(self.proc.pid) if self.proc else []

    def stop(self) -> None:
        if self.proc:
            self.proc.send_signal(signal.SIGTERM if self.kind == "callgate" else signal.SIGQUIT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def measure(target: Target, level: Level, command: bool) -> dict[str, Any]:
    target.start()
    try:
        pids = target.pids()
        cpu0, rss0 = cpu_seconds(pids), memory_kib(pids, "VmRSS")
        args = [
            PY, "-m", "tests.bench.loadgen", "--url", f"http://127.0.0.1:{target.port}/v1/chat/completions",
            "--streams", str(level.streams), "--chunks", str(level.chunks),
            "--interval-ms", str(1000 / level.rate), "--requests", str(level.requests),
        ] + (["--command"] if command else [])
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            # to a file: a result over 64 KiB printed to a pipe the event loop made non-blocking comes out cut
            done = subprocess.run([*args, "--out", out.name], capture_output=True, text=True, cwd=ROOT, timeout=600)
            if done.returncode != 0:
                raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
            if done.stdout.strip():
                print(f"      (the load generator also printed: {done.stdout.strip()[:200]!r})", flush=True)
            result = json.loads(Path(out.name).read_text())
        pids = target.pids()
        result["cpu_s"] = cpu_seconds(pids) - cpu0 if target.proc else None
        result["peak_rss_kib"] = memory_kib(pids, "VmHWM") if target.proc else None
        result["rss_growth_kib_per_stream"] = (
            (result["peak_rss_kib"] - rss0) / level.streams if target.proc else None
        )
        return result
    finally:
        target.stop()


def fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", default="10x50,100x50,400x50,1000x5")
    p.add_argument("--modes", default="strip,passthrough,tool_calls,text")
    p.add_argument("--no-command", action="store_true", help="no hangup command in the last chunk")
    p.add_argument("--json", help="also write the raw figures to this file")
    args = p.parse_args()
    levels = parse_levels(args.levels)
    modes = [m for m in args.modes.split(",") if m]
    has_nginx = shutil.which("nginx") is not None

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="callgate-bench-") as tmpdir:
        tmp = Path(tmpdir)
        up_log = tmp / "upstream.log"
        upstream = subprocess.Popen([PY, "-m", "tests.bench.upstream"], stdout=up_log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            up_port = int(wait_for_line(up_log, r"port (\d+)", upstream).group(1))
            for level in levels:
                targets = [Target("direct", up_port, tmp)]
                targets += [Target("callgate", up_port, tmp, m) for m in modes]
                if has_nginx:
                    targets.append(Target("nginx", up_port, tmp))
                for target in targets:
                    print(f"  {level.name:>10}  {target.label} ...", file=sys.stderr, flush=True)
                    r = measure(target, level, not args.no_command)
                    rows.append({"level": level.name, "target": target.label, "chunks_total": level.streams * level.chunks * level.requests, **r})
        finally:
            upstream.terminate()
            upstream.wait()

    print_table(rows, has_nginx)
    if args.json:
        Path(args.json).write_text(json.dumps([{k: v for k, v in r.items() if not k.endswith("_us")} for r in rows], indent=1))
    return 0


def print_table(rows: list[dict[str, Any]], has_nginx: bool) -> None:
    head = (
        f"{'level':>10} {'target':<20} {'p50':>7} {'p99':>7} {'max':>8} {'ttft50':>7} {'ttft99':>7} "
        f"{'err':>4} {'seen/sent':>13} {'cpu/10k':>8} {'rssMiB':>7} {'KiB/str':>8} "
        f"{'+p50':>7} {'+p99':>7} {'p99/dir':>7} {'p99/ngx':>7} {'+ttft50':>7}"
    )
    print("\nper-chunk latency and TTFT in ms; cpu/10k = proxy CPU seconds per 10,000 chunks;")
    print("+p50/+p99/+ttft50 = added over direct (ms); p99/dir, p99/ngx = ratios to direct and to nginx\n")
    print(head)
    print("-" * len(head))
    by_level: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_level.setdefault(r["level"], {})[r["target"]] = r
    for level, targets in by_level.items():
        direct = targets.get("direct")
        nginx = targets.get("nginx")
        for name, r in targets.items():
            lat, ttft = r["latency_us"], r["ttft_us"]
            p50, p99 = pct(lat, 0.5), pct(lat, 0.99)
            d50, d99, dt = (pct(direct["latency_us"], 0.5), pct(direct["latency_us"], 0.99), pct(direct["ttft_us"], 0.5)) if direct else (None, None, None)
            n99 = pct(nginx["latency_us"], 0.99) if nginx else None
            cpu = r["cpu_s"] / r["chunks_seen"] * 10000 if r["cpu_s"] is not None and r["chunks_seen"] else None
            rss = r["peak_rss_kib"] / 1024 if r["peak_rss_kib"] else None
            is_direct = name == "direct"
            print(
                f"{level:>10} {name:<20} {p50:7.2f} {p99:7.2f} {lat[-1] / 1000 if lat else float('nan'):8.2f} "
                f"{pct(ttft, 0.5):7.2f} {pct(ttft, 0.99):7.2f} {r['errors']:>4} "
                f"{str(r['chunks_seen']) + '/' + str(r['chunks_sent']):>13} {fmt(cpu):>8} {fmt(rss, 1):>7} "
                f"{fmt(r['rss_growth_kib_per_stream'], 1):>8} "
                f"{'-' if is_direct or d50 is None else f'{p50 - d50:+.2f}':>7} "
                f"{'-' if is_direct or d99 is None else f'{p99 - d99:+.2f}':>7} "
                f"{'-' if is_direct or not d99 else f'{p99 / d99:.2f}':>7} "
                f"{'-' if n99 is None or name == 'nginx' else f'{p99 / n99:.2f}':>7} "
                f"{'-' if is_direct or dt is None else f'{pct(ttft, 0.5) - dt:+.2f}':>7}"
            )
        print()


if __name__ == "__main__":
    sys.exit(main())
