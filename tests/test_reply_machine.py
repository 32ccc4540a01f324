"""The reply's state machine (proxy/core/reply.py): its paths, its illegal moves, and by
property that any sequence of events ends in one status, each attempt with one outcome,
none written twice."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.core.reply import (
    TRANSITIONS, AttemptOutcome, IllegalMove, ReplyAction, ReplyEvent, ReplyInput, ReplyMachine, ReplyState, TurnStatus,
)

E, A, O, S = ReplyEvent, ReplyAction, AttemptOutcome, TurnStatus


def machine(**kw: float) -> ReplyMachine:
    kw.setdefault("stall_ms", 500)
    kw.setdefault("continue_on_stall", True)
    kw.setdefault("max_continuations", 3)
    return ReplyMachine(**kw)  # type: ignore[arg-type]


def on(m: ReplyMachine, event: ReplyEvent, attempt: int | None = None) -> tuple[ReplyAction, ...]:
    return m.on(ReplyInput(event, attempt))


def test_one_attempt_to_its_finish() -> None:
    m = machine()
    a = m.start()
    on(m, E.WON, a)
    on(m, E.SPOKE)
    assert on(m, E.FINISHED) == ()
    assert (m.state, m.status, m.outcome(a)) == (ReplyState.ENDED, S.OK, O.WON)


def test_a_hedge_the_second_wins_the_first_loses() -> None:
    m = machine()
    a, b = m.start(), m.start()
    assert on(m, E.WON, b) == (A.CLOSE_OTHERS,)
    assert m.outcome(a) is O.LOST and m.outcome(b) is None and m.current == b
    on(m, E.FINISHED)
    assert m.outcome(b) is O.WON


def test_a_stall_after_speech_is_continued_and_the_continuation_finishes() -> None:
    m = machine()
    a = m.start()
    on(m, E.WON, a)
    on(m, E.SPOKE)
    assert on(m, E.STALLED) == (A.CLOSE, A.FAULT, A.CONTINUE)
    assert m.state is ReplyState.CONTINUING and m.outcome(a) is O.STALLED
    b = m.start(continuation=True)
    on(m, E.WON, b)
    on(m, E.FINISHED)
    assert (m.status, m.outcome(b), m.continuations) == (S.OK, O.CONTINUED, 1)


def test_a_stall_after_a_hangup_ends_the_reply_cleanly() -> None:
    m = machine()
    on(m, E.WON, m.start())
    on(m, E.SPOKE)
    on(m, E.HANGUP_FOUND)
    assert on(m, E.STALLED) == (A.CLOSE, A.SEND_FINISH)
    assert (m.status, m.outcome(0)) == (S.OK, O.STALLED)


def test_a_break_after_speech_is_continued() -> None:
    """Only a hangup ends continuations; the machine sees no transfer at all (bug 5, a
    transfer then a break, is test_pool.py's
    test_a_reply_is_continued_after_a_transfer_and_the_transfer_is_never_emitted_again)."""
    m = machine()
    on(m, E.WON, m.start())
    on(m, E.SPOKE)
    assert A.CONTINUE in on(m, E.BROKE)


def test_on_stall_error_sends_the_error_event() -> None:
    """Bug 4: with on_stall: error, a stall is detected and ends the reply with the error event."""
    m = machine(continue_on_stall=False)
    on(m, E.WON, m.start())
    on(m, E.SPOKE)
    assert on(m, E.STALLED) == (A.CLOSE, A.FAULT, A.SEND_ERROR)
    assert (m.status, m.outcome(0)) == (S.UPSTREAM_ERROR, O.FAILED)


def test_no_continuation_without_speech_a_tool_call_or_budget() -> None:
    for setup in ((), (E.SPOKE, E.TOOL_CALL_BEGAN)):
        m = machine()
        on(m, E.WON, m.start())
        for ev in setup:
            on(m, ev)
        assert on(m, E.CUT) == (A.CLOSE, A.FAULT, A.SEND_ERROR)
        assert m.status is S.UPSTREAM_INCOMPLETE
    m = machine(max_continuations=0)
    on(m, E.WON, m.start())
    on(m, E.SPOKE)
    assert A.CONTINUE not in on(m, E.STALLED)


def test_giving_up_before_and_after_streaming_began() -> None:
    m = machine()
    a, b = m.start(), m.start()
    on(m, E.ATTEMPT_FAILED, a)
    assert on(m, E.GAVE_UP) == (A.CLOSE_OTHERS, A.FAIL_REQUEST)  # nothing was sent: the error is the answer
    assert (m.status, m.outcome(a), m.outcome(b)) == (S.UPSTREAM_ERROR, O.FAILED, O.CANCELLED)
    m = machine()
    on(m, E.WON, m.start())
    on(m, E.SPOKE)
    on(m, E.STALLED)
    on(m, E.ATTEMPT_FAILED, m.start(continuation=True))
    assert on(m, E.GAVE_UP) == (A.CLOSE_OTHERS, A.SEND_ERROR)  # streaming began: an error event


@pytest.mark.parametrize(
    ("event", "status", "actions"),
    [
        (E.CLIENT_GONE, S.CLIENT_DISCONNECTED, (A.CLOSE,)),
        (E.BARGED_IN, S.BARGED_IN, (A.CLOSE,)),
        (E.DRAIN_EXPIRED, S.SHUT_DOWN, (A.CLOSE, A.SEND_ERROR)),
        (E.CALLGATE_FAILED, S.ERROR, (A.CLOSE, A.SEND_ERROR)),
    ],
)
def test_what_ends_a_reply_from_outside_means_one_thing_each(event: ReplyEvent, status: TurnStatus, actions: tuple[ReplyAction, ...]) -> None:
    m = machine()
    on(m, E.WON, m.start())
    assert on(m, event) == actions
    assert (m.status, m.outcome(0)) == (status, O.CANCELLED)
    assert on(m, E.CLIENT_GONE) == () and m.status is status  # the first word stands


def test_an_upstream_error_object_makes_a_finished_reply_an_upstream_error() -> None:
    m = machine()
    on(m, E.WON, m.start())
    on(m, E.ERROR_SEEN)
    on(m, E.FINISHED)
    assert (m.status, m.outcome(0)) == (S.UPSTREAM_ERROR, O.FAILED)


def test_illegal_moves_raise_and_change_nothing() -> None:
    m = machine()
    with pytest.raises(IllegalMove):
        on(m, E.FINISHED)  # nothing adopted
    a = m.start()
    on(m, E.ATTEMPT_FAILED, a)
    with pytest.raises(IllegalMove):
        on(m, E.WON, a)  # a failed attempt cannot win
    with pytest.raises(IllegalMove):
        on(m, E.ATTEMPT_FAILED, a)  # nor fail twice
    with pytest.raises(IllegalMove):
        on(m, E.WON, 7)
    assert (m.state, m.outcome(a), m.current) == (ReplyState.RACING, O.FAILED, None)


_EVENTS = st.sampled_from(list(ReplyEvent))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_EVENTS, st.integers(0, 4), st.booleans()), max_size=30), st.booleans(), st.integers(0, 2))
def test_any_sequence_ends_in_one_status_and_one_outcome_per_attempt(
    steps: list[tuple[ReplyEvent, int, bool]], continue_on_stall: bool, budget: int
) -> None:
    m = machine(continue_on_stall=continue_on_stall, max_continuations=budget)
    seen_status: TurnStatus | None = None
    outcomes: dict[int, AttemptOutcome] = {}
    for event, index, cont in steps:
        before = (m.state, m.status, [m.outcome(i) for i in range(len(m.attempts))], m.current)
        try:
            if event is E.STARTED:
                m.start(continuation=cont)
            else:
                on(m, event, index if event in (E.WON, E.ATTEMPT_FAILED) else None)
        except IllegalMove:
            assert before == (m.state, m.status, [m.outcome(i) for i in range(len(m.attempts))], m.current)
            assert (m.state, event) not in TRANSITIONS or event in (E.WON, E.ATTEMPT_FAILED)
            continue
        for i in range(len(m.attempts)):  # an outcome once written never changes
            o = m.outcome(i)
            if i in outcomes:
                assert o is outcomes[i]
            elif o is not None:
                outcomes[i] = o
        if seen_status is not None:
            assert m.status is seen_status
        elif m.ended:
            seen_status = m.status
    if not m.ended:
        on(m, E.CLIENT_GONE)
    assert m.ended and isinstance(m.status, TurnStatus)
    assert all(m.outcome(i) is not None for i in range(len(m.attempts)))
    assert sum(1 for i in range(len(m.attempts)) if m.outcome(i) in (O.WON, O.CONTINUED)) <= 1 or m.status is not S.OK
