"""``make bench``, capacity: how many calls one machine carries within the latency budget.

Calls shaped like real ones (``tests/bench/callgen.py``: random arrivals, several
turns with the caller speaking in between, a time to first token, chunks at a
speaking rate) go, at each level of calls in flight, directly to the scripted
upstream, through one ``callgate serve`` (SQLite), through ``callgate serve
--workers 2`` on a throwaway PostgreSQL, and through nginx. For each it reports the
most calls in flight at which the added time to first token p99 stays under 5 ms and
the added per-chunk latency p99 under 2 ms ("added": over the direct connection at
the same level, in the same run), and the proxy's CPU seconds per call-minute.

Run: ``python -m tests.bench.capacity [--levels 50,100,200,400,800] [--seconds 20]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from proxy.demo import nginx, pgtemp
from proxy.demo.nginx import free_port, wait_for_port

from .run import PY, ROOT, cpu_seconds, pct, tree, wait_for_line

TTFT_BUDGET_MS, CHUNK_BUDGET_MS = 5.0, 2.0


class Proxy:
    """A target process (none for direct)."""

    def __init__(self, name: str, cmd: list[str] | None, tmp: Path) -> None:
        self.name, self.cmd, self.tmp = name, cmd, tmp
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, up_port: int) -> None:
        if self.name == "direct":
            self.port = up_port
        elif self.name == "nginx":
            self.proc, self.port = nginx.start(self.tmp / "nginx", [up_port])
        else:
            assert self.cmd is not None
            self.port = free_port()
            log = (self.tmp / f"{self.name.replace(' ', '_')}.log").open("w")
            self.proc = subprocess.Popen([*self.cmd, "--port", str(self.port)], stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT)
            wait_for_port(self.port, 60)

    def cpu(self) -> float:
        return cpu_seconds(tree(self.proc.pid)) if self.proc else 0.0

    def stop(self) -> None:
        if self.proc:
            self.proc.send_signal(signal.SIGQUIT if self.name == "nginx" else signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_level(proxy: Proxy, calls: int, args: argparse.Namespace) -> dict[str, Any]:
    cpu0 = proxy.cpu()
    cmd = [PY, "-m", "tests.bench.callgen", "--url", f"http://127.0.0.1:{proxy.port}/v1/chat/completions",
           "--calls", str(calls), "--seconds", str(args.seconds)]
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        # to a file: a result over 64 KiB printed to a pipe the event loop made non-blocking comes out cut
        done = subprocess.run([*cmd, "--out", out.name], capture_output=True, text=True, cwd=ROOT, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"call generator failed: {done.stderr[-2000:]}")
        r = json.loads(Path(out.name).read_text())
    return {
        "target": proxy.name, "calls": calls, "errors": r["errors"], "done": r["calls"],
        "ttft99": pct(r["ttft_us"], 0.99), "chunk99": pct(r["chunk_us"], 0.99), "chunk50": pct(r["chunk_us"], 0.5),
        "cpu_per_call_min": (proxy.cpu() - cpu0) / (r["call_seconds"] / 60) if proxy.proc and r["call_seconds"] else None,
    }


@contextlib.contextmanager
def targets(tmp: Path, up_port: int, with_pg: bool) -> Iterator[list[Proxy]]:
    base = f"upstream: {{base_url: 'http://127.0.0.1:{up_port}/v1', timeout_s: 60}}\nlog_level: warning\n"
    one = tmp / "one.yaml"
    one.write_text(base + f"storage: {{path: '{tmp / 'one.db'}'}}\n")
    out = [Proxy("direct", None, tmp), Proxy("callgate 1 process", [PY, "-m", "proxy.cli", "serve", "--config", str(one)], tmp)]
    with contextlib.ExitStack() as stack:
        if with_pg:
            url = stack.enter_context(pgtemp.database(stack.enter_context(pgtemp.cluster())))
            two = tmp / "two.yaml"
            two.write_text(base + f"storage: {{url: '{url}'}}\n")
            out.append(Proxy("callgate --workers 2", [PY, "-m", "proxy.cli", "serve", "--config", str(two), "--workers", "2"], tmp))
        if nginx.available():
            out.append(Proxy("nginx", None, tmp))
        yield out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", default="50,100,200,400,800")
    p.add_argument("--seconds", type=float, default=20, help="how long new calls arrive at each level")
    args = p.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="callgate-capacity-") as tmpdir:
        tmp = Path(tmpdir)
        up_log = tmp / "upstream.log"
        upstream = subprocess.Popen([PY, "-m", "tests.bench.upstream"], stdout=up_log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            up_port = int(wait_for_line(up_log, r"port (\d+)", upstream).group(1))
            with targets(tmp, up_port, pgtemp.available()) as procs:
                direct = {}
                for proxy in procs:
                    proxy.start(up_port)
                    try:
                        run_level(proxy, 10, argparse.Namespace(seconds=3))  # warm up: first uses load code and caches
                        for calls in levels:
                            print(f"  {calls:>5} calls  {proxy.name} ...", file=sys.stderr, flush=True)
                            row = run_level(proxy, calls, args)
                            if proxy.name == "direct":
                                direct[calls] = row
                            row["+ttft99"] = row["ttft99"] - direct[calls]["ttft99"]
                            row["+chunk99"] = row["chunk99"] - direct[calls]["chunk99"]
                            rows.append(row)
                            if proxy.name != "direct" and not within(row):
                                break  # past its capacity: higher levels only say more of the same
                    finally:
                        proxy.stop()
        finally:
            upstream.terminate()
            upstream.wait(10)
    print_table(rows, levels)
    return 0


def within(row: dict[str, Any]) -> bool:
    return row["errors"] == 0 and row["+ttft99"] < TTFT_BUDGET_MS and row["+chunk99"] < CHUNK_BUDGET_MS


def print_table(rows: list[dict[str, Any]], levels: list[int]) -> None:
    print("\ncapacity: calls of 3 turns (model's first token after 300 ms, 20 chunks 100 ms apart, the caller")
    print("speaking 1.5 s between turns) arriving at random; added = over direct at the same level, same run\n")
    head = f"{'calls':>6} {'target':<22} {'ttft99':>8} {'+ttft99':>8} {'chunk50':>8} {'chunk99':>8} {'+chunk99':>9} {'err':>4} {'done':>6} {'cpu s/call-min':>15}"
    print(head)
    print("-" * len(head))
    for r in rows:
        cpu = "-" if r["cpu_per_call_min"] is None else f"{r['cpu_per_call_min']:.3f}"
        print(f"{r['calls']:>6} {r['target']:<22} {r['ttft99']:>8.2f} {r['+ttft99']:>+8.2f} {r['chunk50']:>8.2f} {r['chunk99']:>8.2f} "
              f"{r['+chunk99']:>+9.2f} {r['errors']:>4} {r['done']:>6} {cpu:>15}")
    print(f"\nmost calls in flight with added TTFT p99 < {TTFT_BUDGET_MS:g} ms and added chunk p99 < {CHUNK_BUDGET_MS:g} ms:")
    for name in dict.fromkeys(r["target"] for r in rows if r["target"] != "direct"):
        ok = [r for r in rows if r["target"] == name and within(r)]
        best = max((r["calls"] for r in ok), default=0)
        cpu = next((r["cpu_per_call_min"] for r in ok if r["calls"] == best), None)
        shown = f"{best}" if best else f"fewer than {levels[0]}"
        print(f"  {name:<22} {shown:>12} calls" + (f"   CPU {cpu:.3f} s per call-minute" if cpu else ""))


if __name__ == "__main__":
    sys.exit(main())
