"""The call's state machine (proxy/core/lifecycle.py): whole paths and by property."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.lifecycle import TRANSITIONS, Action, CallEvent, CallState, IllegalMove, Lifecycle

E = CallEvent


def run(events: list[CallEvent], start: Lifecycle | None = None) -> tuple[Lifecycle, list[Action]]:
    life = start or Lifecycle()
    actions: list[Action] = []
    for event in events:
        life, asked = life.on(event)
        actions += asked
    return life, actions


def test_a_hangup_then_the_goodbye_window_ends_the_call() -> None:
    life, actions = run([E.TURN_BEGAN, E.HANGUP_ACCEPTED, E.TURN_FINISHED])
    assert life == Lifecycle(CallState.HUNG_UP, 0, True) and actions == [Action.START_WINDOW]
    life, actions = run([E.WINDOW_ELAPSED, E.END_WRITTEN], life)
    assert life.state is CallState.ENDED and actions == [Action.CANCEL_WINDOW, Action.END_CALL]


def test_the_goodbye_turn_inside_the_window_stops_it_and_restarts_it_after() -> None:
    life, _ = run([E.TURN_BEGAN, E.HANGUP_ACCEPTED, E.TURN_FINISHED])
    life, actions = run([E.TURN_BEGAN], life)
    assert life.state is CallState.HUNG_UP and actions == [Action.CANCEL_WINDOW]
    life, actions = run([E.TURN_FINISHED], life)
    assert actions == [Action.START_WINDOW]


def test_the_window_waits_for_every_reply_in_flight() -> None:
    life, actions = run([E.TURN_BEGAN, E.TURN_BEGAN, E.HANGUP_ACCEPTED, E.TURN_FINISHED])
    assert actions == [] and life.in_flight == 1
    _, actions = run([E.TURN_FINISHED], life)
    assert actions == [Action.START_WINDOW]


def test_a_second_hangup_is_illegal_and_changes_nothing() -> None:
    life, _ = run([E.TURN_BEGAN, E.HANGUP_ACCEPTED])
    assert not life.allows(E.HANGUP_ACCEPTED)
    with pytest.raises(IllegalMove, match="hangup_accepted is not a legal move of a call that is hung_up"):
        life.on(E.HANGUP_ACCEPTED)


def test_an_end_asked_twice_ends_once() -> None:
    life, actions = run([E.END_ASKED, E.END_ASKED, E.LIMITS_REACHED, E.END_WRITTEN, E.END_ASKED])
    assert life.state is CallState.ENDED and actions.count(Action.END_CALL) == 1


def test_a_failed_end_leaves_the_call_as_it_was() -> None:
    """Writing the end failed: the call is active (or hung up) again, and may end later."""
    life, _ = run([E.END_ASKED, E.END_FAILED])
    assert life.state is CallState.ACTIVE
    life, _ = run([E.TURN_BEGAN, E.HANGUP_ACCEPTED, E.TURN_FINISHED, E.WINDOW_ELAPSED, E.END_FAILED])
    assert life.state is CallState.HUNG_UP and life.hung_up


def test_an_ending_or_ended_call_takes_no_turn() -> None:
    for start in (run([E.END_ASKED])[0], run([E.END_ASKED, E.END_WRITTEN])[0]):
        assert start.ended
        with pytest.raises(IllegalMove):
            start.on(E.TURN_BEGAN)


def test_a_turn_that_never_began_cannot_finish() -> None:
    with pytest.raises(IllegalMove):
        Lifecycle().on(E.TURN_FINISHED)


def test_a_reply_may_outlive_its_calls_end() -> None:
    life, actions = run([E.TURN_BEGAN, E.END_ASKED, E.END_WRITTEN, E.TURN_FINISHED])
    assert life.state is CallState.ENDED and life.in_flight == 0


def test_every_state_has_a_row_and_ended_leads_only_to_ended() -> None:
    assert {state for state, _ in TRANSITIONS} == set(CallState)
    for (state, _), moves in TRANSITIONS.items():
        assert moves and moves[-1].when is None, (state, moves)  # a guard never leaves a legal pair without a move
        if state is CallState.ENDED:
            assert all(m.to is CallState.ENDED and not m.actions for m in moves)


@given(st.lists(st.sampled_from(list(CallEvent)), max_size=60))
def test_any_sequence_keeps_one_state_never_reopens_and_ends_at_most_once(events: list[CallEvent]) -> None:
    """Illegal moves raise and change nothing; an ended call stays ended; the call
    enters ENDED at most once; END_CALL is asked once per time the call starts
    ending (again only after a failed end)."""
    life = Lifecycle()
    ended_entries = ends_asked = failed = 0
    for event in events:
        before = life
        try:
            life, actions = life.on(event)
        except IllegalMove:
            assert life == before and not before.allows(event)
            continue
        assert life.state in CallState and life.in_flight >= 0
        if before.state is CallState.ENDED:
            assert life.state is CallState.ENDED and not actions
        if life.state is CallState.ENDED and before.state is not CallState.ENDED:
            ended_entries += 1
        ends_asked += actions.count(Action.END_CALL)
        failed += event is CallEvent.END_FAILED
        if Action.END_CALL in actions:
            assert life.state is CallState.ENDING
    assert ended_entries <= 1
    assert ends_asked <= 1 + failed
