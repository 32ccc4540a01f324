"""Dead air per turn (proxy/core/gaps.py): the longest interval between two speakable
pieces after the first, whole and fed one piece at a time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.gaps import SpeechGaps


def max_gap_ms(times_s: list[float]) -> float | None:
    """The running maximum over ``times_s`` fed in order."""
    gaps = SpeechGaps()
    for at in times_s:
        gaps.piece(at)
    return gaps.max_ms


def test_the_wait_for_the_first_piece_is_not_a_gap() -> None:
    # the turn began at 0; speech at 2.0 s (TTFT), then 2.1, 2.9 (a 800 ms gap), 3.0
    assert max_gap_ms([2.0, 2.1, 2.9, 3.0]) == pytest.approx(800.0)


def test_no_piece_is_none_and_one_piece_is_no_gap() -> None:
    assert max_gap_ms([]) is None
    assert max_gap_ms([5.0]) == 0.0
    assert SpeechGaps().max_ms is None


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=2, max_size=50))
def test_it_is_the_largest_difference_of_consecutive_times(times: list[float]) -> None:
    times.sort()
    expected = max((b - a) * 1000.0 for a, b in zip(times, times[1:]))
    assert max_gap_ms(times) == expected


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=50))
def test_fed_one_at_a_time_it_is_the_largest_gap_so_far(times: list[float]) -> None:
    times.sort()
    g = SpeechGaps()
    for i, t in enumerate(times):
        g.piece(t)
        so_far = [(b - a) * 1000.0 for a, b in zip(times[: i + 1], times[1 : i + 1])]
        assert g.max_ms == (max(so_far) if so_far else 0.0)
