"""A seeded, deterministic fuzz driver: inputs are mutations of the target's seed
corpus (byte flips, inserted dictionary tokens, cut, copied and spliced ranges) and
plain random bytes. The same ``seed`` gives the same inputs, so a failure replays.
Used when atheris is not installed (``--engine random``) and by the short run in
``make test``."""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .targets import DICTIONARY, TARGETS, seeds

# The longest input per target (bytes): long enough for several events or commands,
# short enough that byte-by-byte decoding stays cheap.
MAX_LEN = {"sse": 384, "parser": 24, "tool_calls": 96, "inspector": 512}


@dataclass
class Failure:
    """A distinct failure: the first input that raised it, and the traceback."""

    data: bytes
    error: str


@dataclass
class Report:
    """One target's run."""

    target: str
    engine: str
    inputs: int = 0
    exceptions: int = 0  # inputs that raised
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)  # distinct ones, first few
    log: str = ""  # where a subprocess engine wrote its output


class Mutator:
    """The next input, from a pool that starts as the seed corpus."""

    def __init__(self, rng: random.Random, corpus: Sequence[bytes], max_len: int) -> None:
        self.rng = rng
        self.pool = [s[:max_len] for s in corpus] or [b""]
        self.seeds = len(self.pool)
        self.max_len = max_len
        self.ops: list[Callable[[bytearray], None]] = [
            self._set, self._insert, self._token, self._delete, self._copy, self._splice, self._truncate,
        ]

    def next(self) -> bytes:
        rng = self.rng
        if rng.random() < 0.08:
            return rng.randbytes(rng.randrange(self.max_len // 4))
        data = bytearray(rng.choice(self.pool))
        for _ in range(1 + rng.randrange(5)):
            rng.choice(self.ops)(data)
        out = bytes(data[: self.max_len])
        if rng.random() < 1 / 16:  # keep some mutants, so mutations stack up
            self._keep(out)
        return out

    def _keep(self, data: bytes) -> None:
        if len(self.pool) < self.seeds + 512:
            self.pool.append(data)
        else:
            self.pool[self.seeds + self.rng.randrange(512)] = data

    def _pos(self, data: bytearray) -> int:
        return self.rng.randrange(len(data) + 1)

    def _set(self, data: bytearray) -> None:
        if data:
            data[self.rng.randrange(len(data))] = self.rng.randrange(256)

    def _insert(self, data: bytearray) -> None:
        at = self._pos(data)
        data[at:at] = self.rng.randbytes(1 + self.rng.randrange(8))

    def _token(self, data: bytearray) -> None:
        at = self._pos(data)
        data[at:at] = self.rng.choice(DICTIONARY)

    def _delete(self, data: bytearray) -> None:
        at = self._pos(data)
        del data[at : at + 1 + self.rng.randrange(16)]

    def _copy(self, data: bytearray) -> None:
        a, b = sorted((self._pos(data), self._pos(data)))
        at = self._pos(data)
        data[at:at] = data[a:b]

    def _splice(self, data: bytearray) -> None:
        other = self.rng.choice(self.pool)
        data[self._pos(data) :] = other[self.rng.randrange(len(other) + 1) :]

    def _truncate(self, data: bytearray) -> None:
        del data[self._pos(data) :]


def signature(exc: BaseException) -> str:
    """What tells failures apart: the exception type and where it was raised."""
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{type(exc).__name__} at {frame.filename}:{frame.lineno}"


def fuzz(name: str, inputs: int, seed: int = 0, keep: int = 5) -> Report:
    """Run target ``name`` on ``inputs`` inputs; every exception is counted, the
    first input of each distinct one kept (at most ``keep``)."""
    target = TARGETS[name]
    mutator = Mutator(random.Random(f"{name}:{seed}"), seeds(name), MAX_LEN[name])
    report = Report(name, "random")
    seen: set[str] = set()
    start = time.perf_counter()
    for _ in range(inputs):
        data = mutator.next()
        try:
            target(data)
        except Exception as exc:  # noqa: BLE001 - every exception is a finding
            report.exceptions += 1
            sig = signature(exc)
            if sig not in seen and len(seen) < keep:
                seen.add(sig)
                report.failures.append(Failure(data, traceback.format_exc()))
    report.inputs = inputs
    report.seconds = time.perf_counter() - start
    return report
