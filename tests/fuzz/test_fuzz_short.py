"""The short fuzz run of ``make test``: a few thousand inputs per target under the
seeded mutation driver, in a few seconds (``make fuzz`` runs 1,000,000 inputs, see
tests/fuzz/run.py). A failure prints the input; replay it with
``python -m tests.fuzz.run --target NAME --reproduce FILE`` after writing it to FILE."""

from __future__ import annotations

import pytest

from proxy.core.parser import CommandParser

from . import targets
from .engine import fuzz
from .targets import TARGETS, seeds

SHORT = {"sse": 1000, "parser": 2500, "tool_calls": 4000, "inspector": 1500}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_short_fuzz_run(name: str) -> None:
    report = fuzz(name, SHORT[name], seed=0)
    found = "\n".join(f"input {f.data!r}\n{f.error}" for f in report.failures)
    assert report.exceptions == 0, f"{report.exceptions} failing inputs; the first of each kind:\n{found}"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_seed_passes_as_is(name: str) -> None:
    for seed in seeds(name):
        TARGETS[name](seed)


def test_the_recorded_streams_are_seeds() -> None:
    assert len(targets.recorded()) >= 6 or not targets.FIXTURES.is_dir()


class _SplitDependentParser(CommandParser):
    """A parser that loses a `<` fed on its own: only a split input shows it."""

    def feed(self, text: str) -> list:  # type: ignore[type-arg]
        return [] if text == "<" else super().feed(text)


def test_a_split_dependent_decoder_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail."""
    monkeypatch.setattr(targets, "CommandParser", _SplitDependentParser)
    assert fuzz("parser", 200).exceptions > 0
