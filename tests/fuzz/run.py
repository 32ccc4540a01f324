"""Fuzz the sans-IO core: ``python -m tests.fuzz.run --inputs N [--target NAME]``.

``N`` inputs in total, shared equally by the targets (``sse``, ``parser``,
``tool_calls``, ``inspector``; ``--target`` picks some). Each target runs in a
process of its own, ``--jobs`` at a time: under atheris (libFuzzer, coverage-guided,
seeded with the recorded OpenAI streams) when it is installed, else under the seeded
mutation driver of ``tests/fuzz/engine.py`` (``--engine`` forces one). Prints per
target the inputs run, the exceptions and the time; exits 1 on any failure, printing
each failing input and the command that replays it::

    python -m tests.fuzz.run --target sse --reproduce /tmp/callgate-fuzz-.../sse-crash-...

(``make fuzz`` runs 1,000,000 inputs; ``make test`` a short run, tests/fuzz/test_fuzz_short.py.)
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from .engine import MAX_LEN, Failure, Report, fuzz
from .targets import DICTIONARY, TARGETS, seeds

ROOT = Path(__file__).resolve().parents[2]
COST_ORDER = ("inspector", "sse", "parser", "tool_calls")  # slowest first, to share the jobs well


def _dict_file(path: Path) -> Path:
    """The tokens as a libFuzzer dictionary."""
    lines = ['"' + "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\x{b:02x}" for b in t) + '"' for t in DICTIONARY]
    path.write_text("\n".join(lines) + "\n")
    return path


def _corpus(work: Path, name: str) -> Path:
    """The seed corpus of ``name``, one file per seed (libFuzzer adds what it finds)."""
    folder = work / "corpus" / name
    folder.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds(name)):
        (folder / f"seed-{i:03d}").write_bytes(seed[: MAX_LEN[name]])
    return folder


def _atheris_cmd(name: str, inputs: int, seed: int, work: Path) -> list[str]:
    cmd = [
        sys.executable, "-m", "tests.fuzz.atheris_main", name, f"-runs={inputs}", f"-seed={seed + 1}",
        f"-max_len={MAX_LEN[name]}", f"-artifact_prefix={work}/{name}-", "-timeout=60", "-rss_limit_mb=4096",
        "-print_final_stats=1",
    ]
    if name in ("sse", "inspector"):  # the others read their input as choices, not text
        cmd.append(f"-dict={work / 'tokens.dict'}")
    return cmd + [str(_corpus(work, name))]


def _atheris_report(name: str, rc: int, log: Path, seconds: float) -> Report:
    """The report of one libFuzzer run, read from its output."""
    text = log.read_text(errors="replace")
    runs = re.findall(r"stat::number_of_executed_units: (\d+)", text) or re.findall(r"^#(\d+)\s", text, re.M)
    report = Report(name, "atheris", int(runs[-1]) if runs else 0, 0, seconds, log=str(log))
    if rc != 0:
        report.exceptions = 1  # libFuzzer stops at the first one
        start = text.find("=== Uncaught Python exception")
        error = text[start:] if start >= 0 else text[-4000:]
        unit = re.search(r"Test unit written to (\S+)", text)
        data = Path(unit.group(1)).read_bytes() if unit else b""
        report.failures.append(Failure(data, error.split("\nMS:")[0][-6000:]))
    return report


def run_atheris(name: str, inputs: int, seed: int, work: Path) -> Report:
    log = work / f"{name}.log"
    start = time.perf_counter()
    with log.open("wb") as out:
        rc = subprocess.call(_atheris_cmd(name, inputs, seed, work), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    return _atheris_report(name, rc, log, time.perf_counter() - start)


def run_random(name: str, inputs: int, seed: int, work: Path) -> Report:
    """The mutation driver in a child process (``--worker``), its report as JSON."""
    log = work / f"{name}.log"
    cmd = [sys.executable, "-m", "tests.fuzz.run", "--worker", name, "--inputs", str(inputs), "--seed", str(seed)]
    with log.open("wb") as out:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=out, check=False)
    if proc.returncode != 0 or not proc.stdout:
        return Report(name, "random", 0, 1, 0.0, [Failure(b"", f"the worker failed, see {log}")], str(log))
    raw = json.loads(proc.stdout)
    failures = [Failure(bytes.fromhex(f["data"]), f["error"]) for f in raw.pop("failures")]
    return Report(**raw, failures=failures)


def _save(work: Path, report: Report) -> list[tuple[Failure, Path]]:
    """Each failing input in a file of its own, to replay with ``--reproduce``."""
    out = []
    for f in report.failures:
        path = work / f"{report.target}-crash-{hashlib.sha1(f.data).hexdigest()}"
        path.write_bytes(f.data)
        out.append((f, path))
    return out


def print_report(reports: list[Report], wall: float, work: Path) -> bool:
    """The table, then every failure with its reproducer; ``True`` when all passed."""
    print(f"\n{'target':<12}{'engine':<9}{'inputs':>10}{'exceptions':>12}{'seconds':>10}")
    for r in reports:
        print(f"{r.target:<12}{r.engine:<9}{r.inputs:>10,}{r.exceptions:>12}{r.seconds:>10.1f}")
    total = sum(r.inputs for r in reports)
    errors = sum(r.exceptions for r in reports)
    print(f"{'total':<21}{total:>10,}{errors:>12}{wall:>10.1f}  (wall, {work})")
    for r in reports:
        for failure, path in _save(work, r):
            print(f"\n--- {r.target}: failing input {failure.data[:400]!r}{' ...' if len(failure.data) > 400 else ''}")
            print(failure.error.rstrip())
            print(f"reproduce: python -m tests.fuzz.run --target {r.target} --reproduce {path}")
    return errors == 0


def reproduce(name: str, path: str) -> int:
    """Run target ``name`` on one input file; its exception, if any, propagates."""
    data = Path(path).read_bytes()
    print(f"{name}: {data!r}")
    TARGETS[name](data)
    print("no failure")
    return 0


def _engine(choice: str) -> str:
    if choice != "auto":
        return choice
    return "atheris" if importlib.util.find_spec("atheris") is not None else "random"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=1_000_000, help="inputs in total, shared by the targets")
    ap.add_argument("--target", action="append", choices=sorted(TARGETS), help="a target (repeatable); default all")
    ap.add_argument("--engine", choices=("auto", "atheris", "random"), default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="targets run at once")
    ap.add_argument("--workdir", help="where corpora, logs and failing inputs go (default: a new temp dir)")
    ap.add_argument("--reproduce", metavar="FILE", help="replay one input on --target")
    ap.add_argument("--worker", choices=sorted(TARGETS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        report = fuzz(args.worker, args.inputs, args.seed)
        raw = asdict(report)
        raw["failures"] = [{"data": f.data.hex(), "error": f.error} for f in report.failures]
        print(json.dumps(raw))
        return 0
    names = [n for n in COST_ORDER if n in (args.target or TARGETS)]
    if args.reproduce:
        return reproduce(names[0], args.reproduce)
    engine = _engine(args.engine)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="callgate-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    each = -(-args.inputs // len(names))
    print(f"fuzzing {', '.join(names)}: {each:,} inputs each, engine {engine}, {args.jobs} at a time, in {work}", flush=True)
    _dict_file(work / "tokens.dict")
    runner = run_atheris if engine == "atheris" else run_random
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {n: pool.submit(runner, n, each, args.seed, work) for n in names}
    reports = [futures[n].result() for n in TARGETS if n in futures]
    ok = print_report(reports, time.perf_counter() - start, work)
    ok = ok and all(r.inputs >= each for r in reports)
    if ok and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)  # kept on failure: logs, corpora, failing inputs
    print("\nfuzz: OK" if ok else "\nfuzz: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
