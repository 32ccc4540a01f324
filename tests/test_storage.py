"""The storage conformance suite: every rule the call lifecycle relies on, run against
both engines (SQLite, and a real PostgreSQL cluster)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proxy.storage import CommandRecord, JobStatus, Store, ops
from proxy.storage.db import pyformat

from .rows import NOW, call, ended, event, outcome, turn


async def test_turns_are_numbered_and_recorded(store: Store) -> None:
    assert await store.write(ops.begin_turn, call("c1"), turn("r1"), {"callerNumber": "+1"}, NOW) == 1
    assert await store.write(ops.begin_turn, call("c1"), turn("r2"), None, NOW) == 2
    assert await store.write(ops.begin_turn, call("c1"), turn("r3"), {"x": 1}, NOW) == 3
    cmd = CommandRecord("hangup", "text_command", {"endword": "Hello"}, "<imsagent_hangup/>", True, event_id="nope")
    done = outcome(raw="Hello", spoken="Hello")
    await store.write(ops.finish_turn, "c1", "r1", done, [cmd], [{"name": "f", "arguments": {}, "turn": "r1"}], NOW)
    record = await store.read(ops.call_record, "c1")
    assert [(t["request_id"], t["status"]) for t in record["turns"]] == [("r1", "ok"), ("r2", "in_progress"), ("r3", "in_progress")]
    assert record["metadata"] == {"callerNumber": "+1", "x": 1}
    assert record["state"]["tool_calls"][0]["name"] == "f"
    assert record["transcript"][:2] == [{"role": "user", "text": "hi"}, {"role": "assistant", "text": "Hello"}]
    assert record["turns"][0]["commands"] == [cmd.to_json()]


async def test_events_numbered_by_the_database_and_one_hangup_per_call(store: Store) -> None:
    await store.write(ops.begin_turn, call("c2"), turn("r1"), None, NOW)
    rejected = {"id": "h2", "type": "command.rejected", "call_id": "c", "source": "text_command", "function": "hangup", "reason": "duplicate"}
    first = await store.write(ops.add_events, "c2", [event("t1", "transfer"), event("h1", "hangup")], True, NOW)
    second = await store.write(ops.add_events, "c2", [event("h2", "hangup", instead=rejected)], True, NOW)
    assert [(e["seq"], e["type"]) for e in first + second] == [(1, "transfer"), (2, "hangup"), (3, "command.rejected")]
    assert [e["type"] for e in await store.read(ops.events_after, "c2", 1)] == ["hangup", "command.rejected"]
    row = await store.read(ops.find_call, "c2", False)
    assert row.hangup_source == "text_command"


async def test_a_call_ends_once_with_its_jobs_and_event(store: Store) -> None:
    await store.write(ops.begin_turn, call("c3"), turn("r1"), None, NOW)
    steps = [("crm", "webhook", []), ("sms", "sms", ["crm"])]
    results = await asyncio.gather(*(
        store.write(ops.end_call, "c3", ended(f"e{i}", "c3", "caller_hangup"), {"k": i}, steps, True, NOW) for i in range(5)
    ))
    won = [r for r in results if r is not None]
    assert len(won) == 1 and won[0]["seq"] == 1
    record = await store.read(ops.call_record, "c3")
    assert record["status"] == "ended" and [e["type"] for e in record["events"]] == ["call.ended"]
    assert [(j["step"], j["status"], j["idempotency_key"]) for j in record["end_function"]["steps"]] == [
        ("crm", "pending", "c3:crm"), ("sms", "pending", "c3:sms")
    ]
    assert await store.write(ops.patch_state, "c3", {"late": 1}, NOW) is None
    assert await store.read(ops.end_of, "c3") == ("caller_hangup", "call_layer")


async def test_state_is_a_merge_patch(store: Store) -> None:
    await store.write(ops.begin_turn, call("c4"), turn("r1"), None, NOW)
    assert await store.write(ops.patch_state, "c4", {"a": {"b": 1}, "t": 1}, NOW) == {"a": {"b": 1}, "t": 1}
    assert await store.write(ops.patch_state, "c4", {"a": {"c": 2}, "t": None}, NOW) == {"a": {"b": 1, "c": 2}}


async def test_generations_and_finding_calls(store: Store) -> None:
    await store.write(ops.begin_turn, call("g"), turn("r1"), None, NOW)
    await store.write(ops.begin_turn, call("g~2", generation=2), turn("r2"), None, NOW)
    assert (await store.read(ops.find_call, "g", False)).key == "g~2"
    assert (await store.read(ops.find_call, "g", True)).key == "g"
    record = await store.read(ops.call_record, "g~2")
    assert (record["id"], record["call_id"], record["generation"], record["key"]) == ("g", "g", 2, "g~2")
    assert await store.read(ops.find_call, "nope", False) is None


async def test_recovery_interrupts_dead_turns_and_due_ends_come_from_the_database(store: Store) -> None:
    await store.write(ops.heartbeat, "dead", "h", 1, NOW - 100)
    await store.write(ops.heartbeat, "me", "h", 2, NOW)
    await store.write(ops.begin_turn, call("idle"), turn("r-idle", "dead"), None, NOW - 100)
    await store.write(ops.begin_turn, call("mine"), turn("r-mine", "me"), None, NOW - 100)
    found = await store.write(ops.recover, "me", NOW, NOW - 10)
    assert found["turns"] == 1
    due = await store.read(ops.due_ends, NOW, 30, 3)
    assert [tuple(d)[:3] for d in due] == [("idle", "idle_timeout", "idle_timeout")]  # mine has a turn in progress here


async def test_jobs_are_claimed_under_a_lease_once_and_in_order(store: Store) -> None:
    await store.write(ops.begin_turn, call("j"), turn("r"), None, NOW)
    await store.write(ops.end_call, "j", ended("e", "j"), None, [("a", "webhook", []), ("b", "webhook", ["a"])], False, NOW)
    free = {"a": 10, "b": 10}
    claims = await asyncio.gather(*(store.write(ops.claim_jobs, f"w{i}", NOW + 1, 30, free, 10) for i in range(4)))
    claimed = [j for got, _ in claims for j in got]
    assert [j.step for j in claimed] == ["a"]  # once, by one worker; b waits for a
    job = claimed[0]
    assert job.locked_by and job.attempts == 1
    assert not await store.write(ops.finish_job, job.id, "someone-else", JobStatus.DONE, NOW)  # not the holder
    assert await store.write(ops.finish_job, job.id, job.locked_by, JobStatus.DONE, NOW, output={"ok": 1})
    (b,), _ = await store.write(ops.claim_jobs, "w9", NOW + 2, 30, free, 10)
    assert b.step == "b"
    # the holder dies: its lease runs out and another takes the job up
    found = await store.write(ops.recover, "w10", NOW + 40, NOW + 39)
    assert found["jobs"] == 1
    (again,), _ = await store.write(ops.claim_jobs, "w10", NOW + 41, 30, free, 10)
    assert (again.step, again.attempts) == ("b", 2)
    assert await store.write(ops.finish_job, again.id, "w10", JobStatus.FAILED, NOW, error="HTTP 500")
    assert await store.write(ops.retry_jobs, None, NOW) == 1
    jobs = await store.read(ops.jobs_for_call, "j")
    assert [(j.step, j.status, j.attempts) for j in jobs] == [("a", JobStatus.DONE, 1), ("b", JobStatus.PENDING, 0)]


async def test_deliveries_go_in_order_per_call(store: Store) -> None:
    await store.write(ops.begin_turn, call("d"), turn("r"), None, NOW)
    await store.write(ops.add_events, "d", [event("d1", "transfer"), event("d2", "hangup")], True, NOW)
    first = await store.write(ops.claim_deliveries, "w1", NOW + 1, 30, 10)
    assert [d.event_id for d in first] == ["d1"]  # d2 waits for d1
    assert await store.write(ops.claim_deliveries, "w2", NOW + 1, 30, 10) == []
    assert await store.write(ops.finish_delivery, "d1", "w1", "pending", NOW, error="HTTP 503", next_at=NOW + 5)
    assert await store.write(ops.claim_deliveries, "w2", NOW + 2, 30, 10) == []  # d1 pending: still first
    (d1,) = await store.write(ops.claim_deliveries, "w2", NOW + 6, 30, 10)
    assert (d1.event_id, d1.attempts) == ("d1", 2)  # tries claimed: the one that failed, and this one
    assert await store.write(ops.finish_delivery, "d1", "w2", "done", NOW + 6)
    (d2,) = await store.write(ops.claim_deliveries, "w2", NOW + 7, 30, 10)
    assert await store.write(ops.finish_delivery, d2.event_id, "w2", "failed", NOW + 7, error="refused")
    assert await store.read(ops.count_deliveries) == {"done": 1, "failed": 1}
    assert await store.write(ops.retry_deliveries, None, NOW + 8) == 1
    assert [d.status for d in await store.read(ops.list_deliveries)] == ["pending", "done"]


async def test_listing_calls(store: Store) -> None:
    for i in range(3):
        await store.write(ops.begin_turn, call(f"l{i}", started_at=NOW + i), turn(f"r{i}"), None, NOW)
    assert [c["id"] for c in await store.read(ops.list_calls, limit=2)] == ["l2", "l1"]
    assert [c["id"] for c in await store.read(ops.list_calls, since=NOW + 1, status="active")] == ["l2", "l1"]


async def test_retention_purges_ended_calls_with_everything_they_hold(store: Store) -> None:
    steps = [("crm", "webhook", [])]
    for key, ended_at in (("old", NOW - 100), ("old-busy", NOW - 100), ("new", NOW - 1), ("live", None)):
        await store.write(ops.begin_turn, call(key), turn(f"r-{key}"), {"callerNumber": "+4915112345678"}, NOW)
        await store.write(ops.add_events, key, [event(f"h-{key}", "hangup")], True, NOW)
        if ended_at is not None:
            await store.write(ops.end_call, key, ended(f"e-{key}", key), None, steps, True, ended_at)
    # every step and delivery is finished, except old-busy's step: it is still pending
    await store.write(lambda c: c.execute("UPDATE jobs SET status = 'done' WHERE call_key <> 'old-busy'"))
    await store.write(lambda c: c.execute("UPDATE deliveries SET status = 'done'"))

    assert await store.write(ops.purge, NOW - 10) == 1
    assert await store.read(ops.call_record, "old") is None
    for table in ("turns", "events", "deliveries", "jobs"):
        assert await store.read(lambda c: c.value(f"SELECT COUNT(*) FROM {table} WHERE call_key = 'old'")) == 0
    assert sorted(c["key"] for c in await store.read(ops.list_calls)) == ["live", "new", "old-busy"]
    assert await store.write(ops.purge, NOW - 10) == 0  # old-busy waits for its step
    await store.write(lambda c: c.execute("UPDATE jobs SET status = 'failed'"))
    assert await store.write(ops.purge, NOW) == 2  # old-busy and new; never an active call
    assert [c["key"] for c in await store.read(ops.list_calls)] == ["live"]


async def test_a_lost_hangup_is_recorded_as_the_database_decided(store: Store) -> None:
    """A turn's command whose hangup lost to another instance's is recorded as
    rejected, with the code of the event stored instead."""
    await store.write(ops.begin_turn, call("c5"), turn("r1"), None, NOW)
    await store.write(ops.add_events, "c5", [event("h1", "hangup")], False, NOW)
    instead = {"id": "h2", "type": "command.rejected", "call_id": "c5", "source": "text_command", "code": "duplicate_hangup",
               "reason": "duplicate hangup: the call already hung up"}
    await store.write(ops.add_events, "c5", [event("h2", "hangup", instead=instead)], False, NOW)
    cmd = CommandRecord("hangup", "text_command", {}, "<imsagent_hangup/>", True, event_id="h2")
    await store.write(ops.finish_turn, "c5", "r1", outcome(), [cmd], [], NOW)
    [recorded] = (await store.read(ops.call_record, "c5"))["turns"][0]["commands"]
    assert (recorded["accepted"], recorded["code"]) == (False, "duplicate_hangup")


async def test_writes_of_one_order_key_commit_in_order(store: Store) -> None:
    """Writes given one ``order_key`` take effect in the order they were queued, on
    either engine (PostgreSQL's pool runs writes side by side)."""
    await store.write(ops.begin_turn, call("o"), turn("r0"), None, NOW)
    futs = [store.submit(ops.patch_state, "o", {"n": i, f"k{i}": i}, NOW, order_key="o") for i in range(30)]
    await store.settled("o")
    assert all(f.done() for f in futs)
    state = await store.read(_state, "o")
    assert state["n"] == 29 and len(state) == 31


def _state(c: Any, key: str) -> dict[str, Any]:
    return (ops.read_call(c, key)).state


async def test_a_literal_percent_and_a_cast_in_a_query_work_on_both_engines(store: Store) -> None:
    await store.write(ops.begin_turn, call("50%"), turn("r1"), None, NOW)
    got = await store.read(lambda c: c.value("SELECT COUNT(*) FROM calls WHERE id LIKE '50%' AND call_id = :id", {"id": "50%"}))
    assert got == 1


def test_named_parameters_become_pyformat_for_postgresql() -> None:
    assert pyformat("SELECT :a, ':b', x::text, '100%', \"p:q\" FROM t WHERE y LIKE '%:c' AND z = :d_1") == (
        "SELECT %(a)s, ':b', x::text, '100%%', \"p:q\" FROM t WHERE y LIKE '%%:c' AND z = %(d_1)s"
    )
    assert pyformat("SELECT 5 % 2") == "SELECT 5 %% 2"


@pytest.mark.parametrize("bad", ["nope", "RUNNING"])
async def test_the_schema_refuses_a_status_no_enum_has(store: Store, bad: str) -> None:
    await store.write(ops.begin_turn, call("s1"), turn("r1"), None, NOW)
    with pytest.raises(Exception, match="(?i)check"):
        await store.write(lambda c: c.execute("UPDATE calls SET status = :s WHERE id = 's1'", {"s": bad}))
    assert (await store.read(ops.find_call, "s1", True)).status == "active"


async def test_a_closed_front_door_socket_ends_its_call_unless_one_opened_again(store: Store) -> None:
    """A front door's pending end lives in the database (issue 27, bug 2): due after
    after_hangup_s on any instance, and an end for socket_closed only ends a call whose
    socket is still closed."""
    for key in ("d1", "d2"):
        await store.write(ops.begin_turn, call(key), turn(f"{key}-r1"), None, NOW)
        await store.write(ops.finish_turn, key, f"{key}-r1", outcome(raw="Hi", spoken="Hi there"), [], [], NOW)
        await store.write(ops.detach, key, "conversation_relay", NOW)
    await store.write(ops.attach, "d2", NOW + 1)  # d2's socket came back (elsewhere)
    due = {d.key: d for d in await store.read(ops.due_ends, NOW + 10, 3600, 5)}
    assert "d1" in due and (due["d1"].reason, due["d1"].source, due["d1"].if_detached) == ("socket_closed", "conversation_relay", True)
    assert "d2" not in due
    assert await store.write(ops.end_call, "d2", ended("e2", "d2", "socket_closed"), None, [], False, NOW + 10, if_detached=True) is None
    assert await store.write(ops.end_call, "d1", ended("e1", "d1", "socket_closed"), None, [], False, NOW + 10, if_detached=True) is not None
    await store.write(ops.set_heard, "d2", "d2-r1", "Hi", NOW + 11)
    assert await store.read(ops.turn_texts, "d2") == [("hi", "Hi")]
    record = await store.read(ops.call_record, "d2")
    assert record["turns"][0]["heard_text"] == "Hi" and record["transcript"][1] == {"role": "assistant", "text": "Hi"}


async def test_a_turns_dead_air_is_stored_and_read_back(store: Store) -> None:
    """``speech_gap_max_ms`` (schema v7) goes in with the turn's outcome and comes back
    in the call record and the end function's ``Conversation``, on both engines."""
    from proxy.endfn.conversation import Conversation

    for rid in ("r1", "r2", "r3"):
        await store.write(ops.begin_turn, call("gap"), turn(rid), None, NOW)
    await store.write(ops.finish_turn, "gap", "r1", outcome(spoken="Hello there", speech_gap_max_ms=812.5), [], [], NOW)
    await store.write(ops.finish_turn, "gap", "r2", outcome(spoken="Yes", speech_gap_max_ms=0.0), [], [], NOW)
    await store.write(ops.finish_turn, "gap", "r3", outcome(), [], [], NOW)  # nothing spoken: no gap measured
    record = await store.read(ops.call_record, "gap")
    assert [t["speech_gap_max_ms"] for t in record["turns"]] == [812.5, 0.0, None]
    assert Conversation.from_record(record).speech_gap_max_ms == 812.5
    assert Conversation.from_record({"id": "x", "turns": [{"speech_gap_max_ms": None}]}).speech_gap_max_ms is None


# -- the OpenAI SIP front door (schema v8) ---------------------------------------------------------------

async def _accepted(store: Store, sip: str, me: str, lease_until: float) -> None:
    from proxy.storage.statuses import SipApi

    assert await store.write(ops.claim_accept, sip, SipApi.REALTIME, "+1425", "+1800", me, NOW)
    await store.write(ops.accepted, sip, call(sip), {"caller_number": "+1425"}, me, lease_until, 200, NOW)


async def test_a_sip_call_is_accepted_once_whoever_asks_and_made_a_call(store: Store) -> None:
    from proxy.storage.statuses import SipApi

    wins = await asyncio.gather(*(store.write(ops.claim_accept, "rtc_1", SipApi.REALTIME, "+1", "+2", f"i{i}", NOW) for i in range(5)))
    assert sorted(wins) == [False] * 4 + [True]
    await store.write(ops.accepted, "rtc_1", call("rtc_1"), {"caller_number": "+1"}, "i0", NOW + 10, 200, NOW)
    row = await store.read(ops.sip_call, "rtc_1")
    assert (row.status, row.call_key, row.owner, row.attaches, row.hangup) == ("accepted", "rtc_1", "i0", 1, None)
    record = await store.read(ops.call_record, "rtc_1")
    assert (record["status"], record["metadata"], record["turns"]) == ("active", {"caller_number": "+1"}, [])


async def test_a_sip_lease_is_renewed_by_its_owner_and_taken_over_once_when_it_runs_out(store: Store) -> None:
    await _accepted(store, "rtc_a", "i0", NOW + 10)
    assert await store.write(ops.renew, "i0", ["rtc_a"], NOW + 20, NOW) == ["rtc_a"]
    assert await store.write(ops.take_over, "i1", NOW + 5, NOW + 15) == []  # the lease holds
    taken = await asyncio.gather(*(store.write(ops.take_over, f"i{i}", NOW + 25, NOW + 35) for i in (1, 2, 3)))
    assert sorted(len(t) for t in taken) == [0, 0, 1] and [t for t in taken if t][0][0].attaches == 2
    assert await store.write(ops.renew, "i0", ["rtc_a"], NOW + 40, NOW + 26) == []  # the old owner learns it lost it
    await _accepted(store, "rtc_b", "i0", NOW + 100)
    assert [r.id for r in await store.write(ops.take_over, "i1", NOW, NOW + 10, ["i0"])] == ["rtc_b"]  # its process is gone
    await _accepted(store, "rtc_c", "i1", NOW + 10)
    assert await store.write(ops.take_over, "i1", NOW + 20, NOW + 30, serving=["rtc_b", "rtc_c"]) == []  # i1 serves it
    # i1's session of rtc_c failed: it is not renewed, and i1's own next look takes it again
    assert [r.id for r in await store.write(ops.take_over, "i1", NOW + 20, NOW + 30, serving=["rtc_b"])] == ["rtc_c"]


async def test_sip_latches_move_once_and_function_calls_are_claimed_once(store: Store) -> None:
    from proxy.storage.statuses import SipLatch

    await _accepted(store, "rtc_l", "i0", NOW + 10)
    decided = [await store.write(ops.latch, "rtc_l", "hangup", SipLatch.DECIDED, (None,), "", NOW) for _ in range(2)]
    claimed = await asyncio.gather(*(
        store.write(ops.latch, "rtc_l", "hangup", SipLatch.CLAIMED, (SipLatch.DECIDED, None), "", NOW) for _ in range(3)
    ))
    assert decided == [True, False] and sorted(claimed) == [False, False, True]
    assert await store.write(ops.latch, "rtc_l", "refer", SipLatch.DECIDED, (None,), "tel:+1555", NOW)
    row = await store.read(ops.sip_call, "rtc_l")
    assert (row.hangup, row.refer, row.refer_target) == ("claimed", "decided", "tel:+1555")
    won = await asyncio.gather(*(store.write(ops.claim_functions, "rtc_l", [("c1", "hangup"), ("c2", "x")], f"i{i}", NOW) for i in range(3)))
    assert sorted(len(w) for w in won) == [0, 0, 2]
    await store.write(ops.answer_function, "rtc_l", "c1", '{"ok": true}', NOW)
    assert await store.read(ops.answered_functions, "rtc_l") == frozenset({"c1", "c2"})


async def test_a_live_sip_call_is_never_ended_by_the_sweep_and_its_rows_go_with_retention(store: Store) -> None:
    await _accepted(store, "rtc_s", "i0", NOW + 10)
    assert [d.key for d in await store.read(ops.due_ends, NOW + 10_000, 60, 0)] == []  # idle, but its door ends it
    await store.write(ops.finish_sip, "rtc_s", NOW)
    assert [d.key for d in await store.read(ops.due_ends, NOW + 10_000, 60, 0)] == ["rtc_s"]
    await store.write(ops.end_call, "rtc_s", ended("e1", "rtc_s", "agent_hangup"), None, [], False, NOW)
    assert await store.write(ops.purge, NOW + 1) == 1
    assert await store.read(ops.sip_call, "rtc_s") is None


async def test_a_sip_accept_claimed_by_an_instance_that_stopped_is_taken_over_once(store: Store) -> None:
    from proxy.storage.statuses import SipApi

    for me in ("alive", "me", "other"):
        await store.write(ops.heartbeat, me, "h", 1, NOW)
    await store.write(ops.heartbeat, "dead", "h", 2, NOW - 100)
    assert await store.write(ops.claim_accept, "rtc_dead", SipApi.REALTIME, "+1425", "+1800", "dead", NOW - 50)
    assert await store.write(ops.claim_accept, "rtc_alive", SipApi.REALTIME, "+1", "+2", "alive", NOW - 50)
    taken = await store.write(ops.take_over_accepts, "me", NOW, NOW - 10)
    assert [(r.id, r.owner, r.caller) for r in taken] == [("rtc_dead", "me", "+1425")]  # alive's claim stays its own
    assert await store.write(ops.take_over_accepts, "other", NOW, NOW - 10) == []  # one instance takes it
