"""``make bench``, side by side: callgate beside nginx and its peers, in one run.

Each target (:mod:`tests.bench.peers`: direct, nginx, the floor of callgate's stack
(:mod:`tests.bench.floor`: ``aiohttp``, ``aiohttp+inspect``), callgate with one
process and with ``--workers auto``, LiteLLM's proxy, Portkey's gateway; a peer not installed is
skipped with a line) is started in front of the same benchmark upstream and takes, in
turn:

1. **requests**: 1,000 replies of one chunk (50 clients): its CPU per request;
2. **synchronized** streams (``--streams``, default 100, 400, 1,000): every stream
   starts within one chunk interval, 50 chunks 20 ms apart, 2 replies each;
3. **capacity**: calls shaped like calls (``--calls``, default 100 to 1,000 in flight;
   4 turns, the model's first token after 250 ms, 40 chunks 30 ms apart, the caller
   speaking 1.75-5.25 s between turns) arriving at random for ``--seconds``.

Every request is real-sized (a 4 KB system prompt, 6 tools, 20 turns of history;
``--small-body`` for a one-line one). Per target and level: time to first token and
per-chunk latency p50/p99 and what the target adds over direct at the same level,
errors, CPU µs per request (from the requests run; ``db``: callgate's database share
of it, the CPU of its SQLite writer and reader threads) and per chunk (the rest of the
run's CPU over its chunks), CPU s per call-minute, RSS (summed peak, MiB), from
``/proc/<pid>`` of every process of the target (workers and children included). The
load generator and the upstream share the machine: their CPU is printed beside it.
Targets past the capacity budget (added first-token p99 > 5 ms or chunk p99 > 2 ms,
or errors) skip the higher capacity levels.

Run: ``python -m tests.bench.versus [--targets direct,nginx,callgate,...] [--streams
100,400,1000] [--calls 100,200,400,600,800,1000] [--seconds 20] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .capacity import CHUNK_BUDGET_MS, TTFT_BUDGET_MS
from .peers import KINDS, Target
from .run import PY, ROOT, cpu_seconds, memory_kib, pct, side_cpu_seconds, wait_for_line


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(target: Target, upstream: int, gen: list[str]) -> dict[str, Any]:
    """Run one load generator command against ``target``; its JSON result with the
    CPU seconds of the target, the generator and the upstream, and the target's RSS."""
    cpu0, up0, gen0 = target.cpu(), cpu_seconds([upstream]), _children_cpu()
    side0 = side_cpu_seconds(target.pids())
    url = f"http://127.0.0.1:{target.port}/v1/chat/completions"
    headers = [a for k, v in target.headers.items() for a in ("--header", f"{k}={v}")]
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        done = subprocess.run([PY, "-m", *gen, "--url", url, *headers, "--out", out.name], capture_output=True, text=True,
                              cwd=ROOT, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
        r: dict[str, Any] = json.loads(Path(out.name).read_text())
    r["cpu_s"] = target.cpu() - cpu0 if target.proc else None
    r["side_s"] = side_cpu_seconds(target.pids()) - side0 if target.proc else None
    r["gen_cpu_s"], r["up_cpu_s"] = _children_cpu() - gen0, cpu_seconds([upstream]) - up0
    r["rss_mib"] = memory_kib(target.pids(), "VmHWM") / 1024 if target.proc else None
    return r


def run_target(target: Target, upstream: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every part of the run for one target; one row per level."""
    body = [] if args.small_body else ["--real-body"]
    rows: list[dict[str, Any]] = []
    measure(target, upstream, ["tests.bench.loadgen", "--streams", "10", "--chunks", "5", "--interval-ms", "5", "--requests", "1", *body])
    calib = measure(target, upstream, ["tests.bench.loadgen", "--streams", "50", "--chunks", "1", "--interval-ms", "1",
                                       "--requests", str(args.calib_requests), *body])
    per_request = calib["cpu_s"] / calib["requests"] if calib["cpu_s"] is not None and calib["requests"] else None
    # callgate's database share of it: its SQLite writer and reader threads (every thread but the event loop's)
    db = calib["side_s"] / calib["requests"] if target.kind.startswith("callgate") and calib["side_s"] is not None and calib["requests"] else None
    for streams in args.streams:
        r = measure(target, upstream, ["tests.bench.loadgen", "--streams", str(streams), "--chunks", "50", "--interval-ms", "20",
                                       "--requests", "2", "--command", *body])
        rows.append(_row("sync", streams, target, r, r["ttft_us"], r["latency_us"], r["requests"], r["chunks_seen"], per_request, db))
    for calls in args.calls:
        r = measure(target, upstream, ["tests.bench.callgen", "--calls", str(calls), "--seconds", str(args.seconds), "--turns", "4",
                                       "--ttft-ms", "250", "--chunks", "40", "--interval-ms", "30", "--pause-s", "3.5", *body])
        row = _row("calls", calls, target, r, r["ttft_us"], r["chunk_us"], r["turns"], len(r["chunk_us"]), per_request, db)
        row["call_minutes"] = r["call_seconds"] / 60
        rows.append(row)
        if target.kind != "direct" and (r["errors"] or pct(r["chunk_us"], 0.99) > 1000):  # far past any budget
            break
    return rows


def _row(part: str, level: int, target: Target, r: dict[str, Any], ttft: list[int], chunk: list[int], requests: int, chunks: int,
         per_request: float | None, db: float | None = None) -> dict[str, Any]:
    cpu = r["cpu_s"]
    per_chunk = (cpu - per_request * requests) / chunks if cpu is not None and per_request is not None and chunks else None
    return {
        "part": part, "level": level, "target": target.label, "errors": r["errors"], "requests": requests, "chunks": chunks,
        "ttft50": pct(ttft, 0.5), "ttft99": pct(ttft, 0.99), "chunk50": pct(chunk, 0.5), "chunk99": pct(chunk, 0.99),
        "cpu_s": cpu, "us_request": per_request * 1e6 if per_request is not None else None,
        "us_request_db": db * 1e6 if db is not None else None,
        "us_chunk": per_chunk * 1e6 if per_chunk is not None else None, "rss_mib": r["rss_mib"],
        "gen_cpu_s": r["gen_cpu_s"], "up_cpu_s": r["up_cpu_s"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", default=",".join(KINDS))
    p.add_argument("--streams", default="100,400,1000")
    p.add_argument("--calls", default="100,200,400,600,800,1000")
    p.add_argument("--seconds", type=float, default=20, help="how long new calls arrive at each capacity level")
    p.add_argument("--calib-requests", type=int, default=20, help="one-chunk replies per client in the requests run")
    p.add_argument("--small-body", action="store_true", help="a one-line request instead of a real-sized one")
    p.add_argument("--quick", action="store_true", help="tiny sizes: 20 streams, 20 calls for 3 s (checks the harness)")
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args()
    if args.quick:
        args.streams, args.calls, args.seconds, args.calib_requests = "20", "20", 3.0, 2
    args.streams = [int(x) for x in str(args.streams).split(",") if x]
    args.calls = [int(x) for x in str(args.calls).split(",") if x]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="callgate-versus-") as tmpdir:
        tmp = Path(tmpdir)
        up_log = tmp / "upstream.log"
        upstream = subprocess.Popen([PY, "-m", "tests.bench.upstream"], stdout=up_log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            up_port = int(wait_for_line(up_log, r"port (\d+)", upstream).group(1))
            for kind in args.targets.split(","):
                target = Target(kind, up_port, tmp)
                why = target.missing()
                if why:
                    print(f"  skipped {target.label}: {why}", flush=True)
                    continue
                print(f"  {target.label} ...", file=sys.stderr, flush=True)
                try:
                    target.start()
                    rows += run_target(target, upstream.pid, args)
                except (RuntimeError, TimeoutError) as e:
                    print(f"  {target.label} failed: {e}", flush=True)
                finally:
                    target.stop()
        finally:
            upstream.terminate()
            upstream.wait(10)
    print_tables(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def _f(v: float | None, spec: str = ".2f", signed: bool = False) -> str:
    width = int(spec.split(".")[0] or 0)
    if v is None:
        return "-".rjust(width)
    return format(v, ("+" if signed else "") + spec)


def print_tables(rows: list[dict[str, Any]]) -> None:
    """The side-by-side tables; ``+``: added over direct at the same level; ``/ngx``:
    the target's CPU per chunk (or per call-minute) over nginx's, same level."""
    for part, title in (("sync", "synchronized streams (50 chunks 20 ms apart, 2 replies each)"),
                        ("calls", "calls in flight (4 turns, first token 250 ms, 40 chunks 30 ms apart)")):
        print(f"\n{title}; ms, CPU µs; gen/up: the load generator's and the upstream's CPU s\n")
        head = (f"{'level':>6} {'target':<24} {'ttft50':>7} {'ttft99':>7} {'+ttft50':>8} {'+ttft99':>8} {'chunk50':>7} {'chunk99':>7} "
                f"{'+chk50':>7} {'+chk99':>7} {'err':>4} {'µs/req':>7} {'db':>5} {'µs/chunk':>8} {'/ngx':>5} {'s/call-min':>10} {'rssMiB':>7} "
                f"{'gen':>6} {'up':>6}")
        print(head)
        print("-" * len(head))
        at = {(r["part"], r["level"], r["target"]): r for r in rows}
        for r in (r for r in rows if r["part"] == part):
            d, n = at.get((part, r["level"], "direct")), at.get((part, r["level"], "nginx"))
            add = (lambda k: r[k] - d[k] if d and r is not d else None)  # noqa: E731
            ratio = r["us_chunk"] / n["us_chunk"] if n and r is not n and r["us_chunk"] and n["us_chunk"] else None
            per_min = r["cpu_s"] / r["call_minutes"] if r.get("call_minutes") and r["cpu_s"] is not None else None
            print(f"{r['level']:>6} {r['target']:<24} {r['ttft50']:7.2f} {r['ttft99']:7.2f} {_f(add('ttft50'), '8.2f', True)} "
                  f"{_f(add('ttft99'), '8.2f', True)} {r['chunk50']:7.2f} {r['chunk99']:7.2f} {_f(add('chunk50'), '7.2f', True)} "
                  f"{_f(add('chunk99'), '7.2f', True)} {r['errors']:>4} {_f(r['us_request'], '7.0f')} {_f(r.get('us_request_db'), '5.0f')} "
                  f"{_f(r['us_chunk'], '8.1f')} "
                  f"{_f(ratio, '5.1f')} {_f(per_min, '10.3f')} {_f(r['rss_mib'], '7.1f')} {r['gen_cpu_s']:6.1f} {r['up_cpu_s']:6.1f}")
    print(f"\ncapacity: most calls in flight with added first-token p99 < {TTFT_BUDGET_MS:g} ms, added chunk p99 < "
          f"{CHUNK_BUDGET_MS:g} ms and no errors (same run)")
    calls = [r for r in rows if r["part"] == "calls"]
    direct = {r["level"]: r for r in calls if r["target"] == "direct"}
    for name in dict.fromkeys(r["target"] for r in calls if r["target"] != "direct"):
        ok = [r["level"] for r in calls if r["target"] == name and r["level"] in direct and not r["errors"]
              and r["ttft99"] - direct[r["level"]]["ttft99"] < TTFT_BUDGET_MS and r["chunk99"] - direct[r["level"]]["chunk99"] < CHUNK_BUDGET_MS]
        print(f"  {name:<24} {max(ok) if ok else 'below the lowest level':>8}")


if __name__ == "__main__":
    sys.exit(main())
