"""The leak benchmark: ``python -m tests.leaks.run --replies N [--jobs J] [--seed S]``.

Each reply of the grammar (:mod:`tests.leaks.grammar`) is streamed in a provider
shape (:mod:`tests.leaks.shapes`, in turn), its SSE bytes cut at random points, and
fed through the sans-IO :class:`~proxy.core.inspector.ReplyInspector` with a voice
profile's settings (every text tool-call form watched, thinking removed, the
FunctionMap ``end_call``/``transfer_call``; ``thinking_open`` when the reply's model
opened thinking in the prompt). What the runtime got of choice 0 is compared with
what the grammar says it must get. Reported per million replies:

* leaks: characters spoken that the reply did not say as speech;
* lost: speakable characters not spoken;
* commands missed, doubled, invented (a rejected one counts as invented);
* tool calls (unmapped, for the runtime to run) missed, doubled, invented;
* wrong finish: a reply with tool calls whose finish_reason was not ``tool_calls``;
* shared deltas: a delta carrying both content and a tool call;
* speech outputs: replies whose :class:`~proxy.core.outputs.Speech` outputs (what the
  front doors speak) differ from the content sent (the record);
* µs per chunk: the inspector's time per SSE event (SSE decoding and the harness not
  counted).

A failing reply is printed with the command that replays it
(``--replay SEED:INDEX``). Exits 1 unless every count is 0. ``make leaks`` runs
1,000,000 replies on every core (``LEAKS=N`` for another count); ``make test`` runs
2,000 (``tests/leaks/test_leaks_short.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import random
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from proxy.core.commands import Command
from proxy.core.inspector import InspectorSettings, ReplyInspector
from proxy.core import outputs
from proxy.core.outputs import Output, commands_of, spoken
from proxy.core.sse import SSEDecoder
from proxy.core.text_tools import FORMS

from .grammar import Reply, generate
from .shapes import SHAPES, encode

__all__ = ["COUNTS", "Report", "check", "main", "run"]

COUNTS = (
    "leaks", "lost", "commands_missed", "commands_doubled", "commands_invented", "tools_missed", "tools_doubled",
    "tools_invented", "wrong_finish", "shared_deltas", "speech_outputs",
)
FMAP = (("hangup", "end_call"), ("transfer", "transfer_call"))
MAPPED = {"end_call", "transfer_call"}
_SETTINGS = {
    (mode, opened): InspectorSettings(
        output=mode, function_map=FMAP, thinking="remove", text_tool_calls=FORMS, thinking_open=opened
    )
    for mode in ("strip", "tool_calls") for opened in (False, True)
}


@dataclass
class Report:
    """What a run found: counts, replies, SSE events, inspector seconds, examples."""

    replies: int = 0
    events: int = 0
    seconds: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def add(self, other: Report) -> None:
        self.replies += other.replies
        self.events += other.events
        self.seconds += other.seconds
        self.counts.update(other.counts)
        self.failures += other.failures[: max(0, 5 - len(self.failures))]


def _received(out: list[bytes]) -> tuple[str, list[tuple[str, Any]], list[Any], int]:
    """Choice 0 as the runtime reads it: speech, tool calls (name, arguments),
    finish_reasons, deltas sharing content and a tool call."""
    text, finishes, shared = "", [], 0
    calls: dict[int, list[str]] = {}
    for ev in SSEDecoder().feed(b"".join(out)):
        if not ev.data or ev.data == "[DONE]":
            continue
        for ch in json.loads(ev.data).get("choices") or []:
            delta = ch.get("delta") or {}
            content = delta.get("content")
            if isinstance(content, str):
                text += content
            elif isinstance(content, list):
                text += "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
            entries = delta.get("tool_calls") or []
            shared += bool(content and entries)
            for n, t in enumerate(entries):
                c = calls.setdefault(t.get("index", len(calls) + n), ["", ""])
                c[0] += (t.get("function") or {}).get("name") or ""
                c[1] += (t.get("function") or {}).get("arguments") or ""
            if ch.get("finish_reason") is not None:
                finishes.append(ch["finish_reason"])
    tools = [(name, json.loads(args or "{}")) for name, args in (calls[i] for i in sorted(calls))]
    return text, tools, finishes, shared


def _compare(expected: list[Any], got: list[Any], counts: Counter[str], what: str) -> None:
    want, have = Counter(map(repr, expected)), Counter(map(repr, got))
    for key in want | have:
        if have[key] < want[key]:
            counts[f"{what}_missed"] += want[key] - have[key]
        elif have[key] == want[key]:
            continue
        elif key in want:
            counts[f"{what}_doubled"] += have[key] - want[key]
        else:
            counts[f"{what}_invented"] += have[key]


def _key(cmd: Any) -> tuple[str, str, str]:
    if not isinstance(cmd, Command):
        return ("rejected", cmd.source, cmd.code.value)
    return (cmd.function, cmd.source, cmd.args.get("endword" if cmd.function == "hangup" else "callee", ""))


def check(reply: Reply, shape: str, data: bytes, rng: random.Random) -> tuple[Counter[str], int, float]:
    """Feed ``data`` cut at random points; the counts, the SSE events, the seconds."""
    ins = ReplyInspector(_SETTINGS[(reply.mode, reply.thinking_open)])
    dec = SSEDecoder()
    points = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 24))))
    items: list[Output] = []
    events, spent, clock = 0, 0.0, time.perf_counter
    for a, b in zip([0, *points], [*points, len(data)]):
        for ev in dec.feed(data[a:b]):
            t0 = clock()
            items += ins.feed(ev)
            spent += clock() - t0
            events += 1
    items += ins.close()
    cmds = commands_of(items)
    counts: Counter[str] = Counter()
    text, tools, finishes, shared = _received([outputs.encode(items)])
    if spoken(items) != ins.spoken_text:  # the Speech outputs say what the chunks carry
        counts["speech_outputs"] += 1
    if text != reply.speech:
        for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, reply.speech, text, autojunk=False).get_opcodes():
            counts["lost"] += (i2 - i1) if op in ("delete", "replace") else 0
            counts["leaks"] += (j2 - j1) if op in ("insert", "replace") else 0
    _compare(reply.commands, [_key(c) for c in cmds], counts, "commands")
    runtime_tools = [t for t in tools if reply.mode == "strip" or t[0] not in MAPPED]
    _compare(reply.tools, runtime_tools, counts, "tools")
    real_only_stop = shape == "gemini" and not reply.written  # Gemini says stop after its own tool calls
    if reply.tools and not real_only_stop and "tool_calls" not in finishes:
        counts["wrong_finish"] += 1
    if shared:
        counts["shared_deltas"] += shared
    return counts, events, spent


def one(seed: int, index: int) -> tuple[Reply, str, bytes, random.Random]:
    """Reply ``index`` of the run seeded ``seed``: the reply, its shape, its bytes, the rng for its cuts."""
    rng = random.Random(f"{seed}:{index}")
    reply = generate(rng)
    shape = SHAPES[index % len(SHAPES)]
    return reply, shape, encode(reply, shape, rng), rng


def run(seed: int, start: int, count: int) -> Report:
    """Replies ``start`` … ``start + count - 1`` of the run seeded ``seed``."""
    report = Report()
    for index in range(start, start + count):
        reply, shape, data, rng = one(seed, index)
        counts, events, spent = check(reply, shape, data, rng)
        report.replies += 1
        report.events += events
        report.seconds += spent
        if counts:
            report.counts.update(counts)
            report.counts["replies_wrong"] += 1
            if len(report.failures) < 5:
                report.failures.append(f"reply {seed}:{index} ({shape}, {reply.mode}): {dict(counts)}  replay: python -m tests.leaks.run --replay {seed}:{index}")
    return report


# What 0.5.0 did with the same replies: no text tool calls, only <think>, nothing opened in the prompt.
_BASELINE = {"text_tool_calls": (), "think_tags": ("think",), "thinking_open": False}


def _run_args(args: tuple[int, int, int, bool]) -> Report:
    seed, start, count, baseline = args
    if baseline:
        _SETTINGS.update({k: dataclasses.replace(v, **_BASELINE) for k, v in _SETTINGS.items()})  # type: ignore[arg-type]
    return run(seed, start, count)


def table(report: Report) -> str:
    """The report as a Markdown table, counts per million replies."""
    per = 1_000_000 / max(report.replies, 1)
    rows = [f"| {name.replace('_', ' ')} | {report.counts[name]:,} | {report.counts[name] * per:,.0f} |" for name in COUNTS]
    rows.append(f"| replies with any of these | {report.counts['replies_wrong']:,} | {report.counts['replies_wrong'] * per:,.0f} |")
    us = report.seconds / max(report.events, 1) * 1e6
    head = f"{report.replies:,} replies, {report.events:,} SSE events, {us:.2f} µs per chunk (inspector)"
    return "\n".join([head, "", "| count | found | per million replies |", "| --- | --- | --- |", *rows])


def replay(spec: str) -> None:
    seed, index = (int(x) for x in spec.split(":"))
    reply, shape, data, rng = one(seed, index)
    counts, _, _ = check(reply, shape, data, rng)
    print(f"shape {shape}, mode {reply.mode}, thinking_open {reply.thinking_open}")
    print("events:", *reply.events, sep="\n  ")
    print("expected speech:", repr(reply.speech))
    print("expected commands:", reply.commands, "tools:", reply.tools)
    print("stream:", data.decode(errors="replace"))
    print("found:", dict(counts) or "nothing wrong")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.leaks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--replies", type=int, default=1_000_000)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replay", help="SEED:INDEX: print one reply, its stream and what went wrong")
    p.add_argument("--baseline", action="store_true", help="0.5.0's settings (no text tool calls, only <think>): what it spoke")
    a = p.parse_args(argv)
    if a.replay:
        replay(a.replay)
        return 0
    size = max(1, min(20_000, a.replies // max(a.jobs * 4, 1) or 1))
    work = [(a.seed, start, min(size, a.replies - start), a.baseline) for start in range(0, a.replies, size)]
    report = Report()
    started = time.monotonic()
    if a.jobs <= 1:
        for w in work:
            report.add(_run_args(w))
    else:
        with ProcessPoolExecutor(a.jobs) as pool:
            for r in pool.map(_run_args, work):
                report.add(r)
    print(table(report))
    print(f"\n{time.monotonic() - started:.0f} s wall on {a.jobs} process(es), seed {a.seed}")
    for f in report.failures:
        print(f)
    return 1 if any(report.counts[n] for n in COUNTS) else 0


if __name__ == "__main__":
    sys.exit(main())
