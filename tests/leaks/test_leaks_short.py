"""The leak benchmark's short run in ``make test``: 2,000 replies of the grammar, every
provider shape, random cuts; nothing unspeakable spoken, nothing speakable lost, no
command or tool call missed, doubled or invented (``make leaks`` runs 1,000,000)."""

from __future__ import annotations

import dataclasses

import pytest

from . import run as leaks

SHORT = 2000


def test_two_thousand_replies_leak_nothing() -> None:
    report = leaks.run(seed=0, start=0, count=SHORT)
    assert report.replies == SHORT and report.events > 10 * SHORT
    assert {k: v for k, v in report.counts.items() if v} == {}, "\n".join(report.failures)


@pytest.mark.parametrize(
    ("change", "found"),
    [
        ({"text_tool_calls": ()}, "leaks"),  # tool calls written as text, spoken as 0.5.0 did
        ({"think_tags": ("think",)}, "leaks"),  # <thinking>, <reasoning>, <thought> spoken
        ({"thinking_open": False}, "leaks"),  # thinking opened in the prompt spoken until </think>
        ({"thinking": "forward"}, "leaks"),
    ],
)
def test_the_benchmark_finds_what_0_5_0_spoke(monkeypatch: pytest.MonkeyPatch, change: dict, found: str) -> None:
    """The check can fail: with a part of issue 29 turned off, it counts leaks."""
    broken = {k: dataclasses.replace(v, **change) for k, v in leaks._SETTINGS.items()}
    monkeypatch.setattr(leaks, "_SETTINGS", broken)
    assert leaks.run(seed=0, start=0, count=300).counts[found] > 0


def test_the_report_is_a_table_per_million_replies() -> None:
    report = leaks.run(seed=5, start=0, count=20)
    text = leaks.table(report)
    assert "20 replies" in text and "| leaks | 0 | 0 |" in text and "µs per chunk" in text
