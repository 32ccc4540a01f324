"""One OpenAI SIP call on the instance that owns its sideband: the adapter between the
sans-IO :class:`~proxy.core.openai_sip.controller.Controller`, which decides, and the
world, where this only carries out what it is told.

Everything the controller hears goes through one inbox, in order: sideband events
(:class:`.link.Link`), timers, the tool webhook's answers, the REST calls' results.
Each action is carried out as :mod:`proxy.core.openai_sip.actions` says:

* ``Claim``: the function calls are claimed in the database (``sip_function_calls``);
  the controller hears which are this instance's at once;
* ``Answer``: the outputs and the continuation are sent, then each output is stored
  as answered; ones the sideband could not take wait for it to be attached again;
* ``Emit``: control events, through the call registry as on every door
  (``add_commands``), in the turn the controller names (begun then, if new);
* ``Latch`` / ``Rest``: the latch moves before ``/hangup`` or ``/refer`` and after its
  answer; a latch another instance moved first means the REST call is not made;
* ``Record``: the turn is written (begun now if it was not);
* ``End``: the call is ended (``registry.end``, source ``openai_sip``), which runs the
  end function once, then its SIP row.

Cancelling :meth:`Session.run` (a shutdown, the lease lost) stops it without ending
the call: another instance takes it over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from ....calls.model import Call, Turn, TurnOutcome, TurnStatus
from ....config import OpenAISipConfig
from ....core.function_map import FunctionMap
from ....core.ids import new_id
from ....core.openai_sip import actions as a
from ....core.openai_sip import client, events
from ....core.openai_sip.api import Api, Verb
from ....core.openai_sip.controller import Controller
from ....core.profile import Profile
from ....errors import CallgateError
from ....metrics import FRONT_DOOR_FRAMES
from ....storage import ops
from ....storage.statuses import SipLatch
from ...services import Services
from .link import Link
from .rest import OpenAIRest
from .tools import run_tool

__all__ = ["DOOR", "Session", "settings_for"]

log = logging.getLogger("callgate.sip")

DOOR = "openai_sip"


def settings_for(cfg: OpenAISipConfig, profile: Profile) -> a.Settings:
    """The controller's settings from the door's config and its profile."""
    ps = profile.settings
    return a.Settings(
        cfg.api_enum, FunctionMap(ps.function_map), tuple(ps.transfer_allow), ps.speak_closing, cfg.goodbye_grace_ms,
        cfg.goodbye_max_ms, bool(cfg.tool_webhook), cfg.model(), cfg.backend_model(), {m: p.price() for m, p in cfg.prices.items()},
    )


class Session:
    """One call (see the module docstring). ``me``: this instance's id."""

    def __init__(self, s: Services, rest: OpenAIRest, call_id: str, api: Api, resume: a.Resume | None = None) -> None:
        self.s, self.rest, self.call_id, self.api = s, rest, call_id, api
        self.cfg = s.config.front_doors.openai_sip
        self.profile = s.profiles[self.cfg.profile or s.config.default_profile]
        self.controller = Controller(settings_for(self.cfg, self.profile), resume)
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.link = Link(s.session, lambda: self.s.config.front_doors.openai_sip, api, call_id, self.inbox.put_nowait)
        self.timers: dict[a.Timer, asyncio.TimerHandle] = {}
        self.turns: dict[int, tuple[Call, Turn]] = {}
        self.unsent: list[tuple[list[str], tuple[a.Output, ...]]] = []  # frames the sideband could not take yet
        self.tasks: set[asyncio.Task[Any]] = set()
        self.me = s.registry.instance

    async def run(self) -> None:
        """Serve the call until it ends (or this is cancelled)."""
        link = asyncio.ensure_future(self.link.run())
        link.add_done_callback(self._link_done)
        try:
            await self._carry(self.controller.start())
            while not self.controller.ended:
                item = await self.inbox.get()
                if item is _FLUSH:
                    await self._flush()
                    continue
                self._count(item)
                await self._carry(self.controller.on(item))
            if self.tasks:  # a REST call under way still records its answer
                await asyncio.wait(self.tasks, timeout=5)
        finally:
            for handle in self.timers.values():
                handle.cancel()
            for task in [*self.tasks, link]:
                task.cancel()
            await self.link.close()
            await asyncio.gather(*self.tasks, link, return_exceptions=True)

    def _link_done(self, task: asyncio.Future[str]) -> None:
        if task.cancelled():
            return
        reason = task.result() if task.exception() is None else "connection_lost"
        if reason != "stopped":
            gone = "socket_closed" if self.api is Api.REALTIME else "connection_lost"
            self.inbox.put_nowait(a.SidebandLost(gone))

    def _count(self, item: Any) -> None:
        """Log and count what the controller has nothing to do with."""
        if isinstance(item, events.Unknown):
            FRONT_DOOR_FRAMES.labels(DOOR, "unknown").inc()
            log.debug("openai sip event ignored call_id=%s type=%s", self.call_id, item.type)
        elif isinstance(item, events.Malformed):
            FRONT_DOOR_FRAMES.labels(DOOR, item.code).inc()
            log.warning("openai sip event unreadable call_id=%s code=%s: %s", self.call_id, item.code, item.detail)
        elif isinstance(item, events.ServerError):
            log.warning("openai sip error call_id=%s code=%s event=%s: %s", self.call_id, item.code, item.client_event_id, item.message)

    # -- carrying out -------------------------------------------------------------------------

    async def _carry(self, acts: list[a.Action]) -> None:
        for act in acts:
            await self._one(act)

    async def _one(self, act: a.Action) -> None:
        if isinstance(act, a.Send):
            await self._send([client.encode(dict(e)) for e in act.events], ())
        elif isinstance(act, a.Claim):
            await self._claim(act)
        elif isinstance(act, a.RunTool):
            self._spawn(self._tool(act.call))
        elif isinstance(act, a.Answer):
            await self._send([client.encode(dict(e)) for e in act.events], act.outputs)
        elif isinstance(act, a.Emit):
            await self._emit(act)
        elif isinstance(act, a.Latch):
            await self._latch(act)
        elif isinstance(act, a.Rest):
            self._spawn(self._rest(act))
        elif isinstance(act, a.StartTimer):
            self._timer(act.timer, act.ms)
        elif isinstance(act, a.CancelTimer):
            handle = self.timers.pop(act.timer, None)
            if handle is not None:
                handle.cancel()
        elif isinstance(act, a.Record):
            await self._record(act.turn)
        else:
            await self._end(act.reason)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _timer(self, timer: a.Timer, ms: float) -> None:
        old = self.timers.pop(timer, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self.timers[timer] = loop.call_later(ms / 1000, self.inbox.put_nowait, a.TimerFired(timer))

    async def _send(self, frames: list[str], outputs: tuple[a.Output, ...]) -> None:
        """Send ``frames``, then mark ``outputs`` answered; what the sideband cannot take
        now waits for it to be attached again."""
        for i, frame in enumerate(frames):
            if not await self.link.send(frame):
                self.unsent.append((frames[i:], outputs))
                log.warning("openai sip sideband down call_id=%s: %d event(s) wait for it", self.call_id, len(frames) - i)
                self._spawn(self._flush_when_attached())
                return
        for o in outputs:
            self.s.store.post(ops.answer_function, self.call_id, o.call_id, o.output, time.time())

    async def _flush_when_attached(self) -> None:
        await self.link.attached.wait()
        self.inbox.put_nowait(_FLUSH)

    async def _flush(self) -> None:
        waiting, self.unsent = self.unsent, []
        for frames, outputs in waiting:
            await self._send(frames, outputs)

    async def _claim(self, act: a.Claim) -> None:
        calls = [(c.call_id, c.name) for c in act.calls]
        won = await self.s.store.write(ops.claim_functions, self.call_id, calls, self.me, time.time())
        if len(won) < len(calls):
            log.info("openai sip function calls answered elsewhere call_id=%s: %s", self.call_id, sorted(set(dict(calls)) - set(won)))
        await self._carry(self.controller.on(a.Claimed(act.group, frozenset(won))))

    async def _tool(self, call: events.FunctionCall) -> None:
        output = await run_tool(self.s.session, self.s.config.front_doors.openai_sip, self.call_id, call)
        self.inbox.put_nowait(a.ToolAnswered(call.call_id, output))

    async def _latch(self, act: a.Latch) -> None:
        moved = await self.s.store.write(ops.latch, self.call_id, act.verb, SipLatch.DECIDED, (None,), act.target, time.time())
        if not moved:
            log.warning("openai sip %s already decided call_id=%s", act.verb, self.call_id)

    async def _rest(self, act: a.Rest) -> None:
        """Claim the latch, make the REST call once, record its answer, tell the controller."""
        store, now = self.s.store, time.time()
        if not await store.write(ops.latch, self.call_id, act.verb, SipLatch.CLAIMED, (SipLatch.DECIDED, None), act.target, now):
            log.warning("openai sip %s not sent: already claimed call_id=%s", act.verb, self.call_id)
            self.inbox.put_nowait(a.RestDone(act.verb, True, None))
            return
        body = {"target_uri": act.target} if act.verb is Verb.REFER else None
        result = await self.rest.post(self.api, self.call_id, act.verb, body)
        done = result.ok or result.gone  # 404: the call is gone already, which is what a hangup wanted
        state = SipLatch.SENT if done else SipLatch.FAILED
        await store.write(ops.latch, self.call_id, act.verb, state, (SipLatch.CLAIMED,), act.target, time.time())
        log.info("openai sip %s call_id=%s status=%s%s", act.verb, self.call_id, result.status, f" target={act.target}" if act.target else "")
        self.inbox.put_nowait(a.RestDone(act.verb, done, result.status))

    # -- the call record ------------------------------------------------------------------------

    async def _turn(self, turn_id: int, user_text: str) -> tuple[Call, Turn] | None:
        """The registry's turn for the controller's ``turn_id``, begun now if new
        (``None`` when the call has ended, or refuses another turn)."""
        if turn_id in self.turns:
            return self.turns[turn_id]
        call = await self.s.registry.find(self.call_id)
        if call is None or call.ended:
            log.warning("openai sip turn not recorded call_id=%s: the call has ended", self.call_id)
            return None
        try:
            got = await self.s.registry.begin_turn(
                self.call_id, stream=True, user_text=user_text, profile=self.profile.name, request_id=new_id("sip_")
            )
        except CallgateError as e:
            log.warning("openai sip turn not recorded call_id=%s: %s", self.call_id, e)
            return None
        self.turns[turn_id] = got
        return got

    async def _emit(self, act: a.Emit) -> None:
        got = await self._turn(act.turn, act.user_text)
        if got is not None:
            self.s.registry.add_commands(got[0], got[1], list(act.commands), act.reply_text)

    async def _record(self, t: a.SipTurn) -> None:
        got = self.turns.pop(t.id, None) or await self._turn(t.id, t.user_text)
        self.turns.pop(t.id, None)
        if got is None:
            return
        call, turn = got
        if turn.user_text != t.user_text:
            self.s.store.post(ops.turn_user_text, turn.request_id, t.user_text, order_key=call.key)
        status = TurnStatus.BARGED_IN if t.interrupted else TurnStatus.OK
        outcome = TurnOutcome(
            status, "the caller spoke over it" if t.interrupted else None, t.raw_text, t.spoken_text,
            tool_calls=[dict(x) for x in t.tool_calls], attempts=[dict(x) for x in t.attempts],
        )
        self.s.registry.finish_turn(call, turn, outcome)

    async def _end(self, reason: str) -> None:
        for call, turn in list(self.turns.values()):  # turns begun for events, not yet recorded
            self.s.registry.finish_turn(call, turn, TurnOutcome(TurnStatus.OK))
        self.turns.clear()
        found = await self.s.registry.find(self.call_id)
        ended = found is not None and await self.s.registry.end(found, reason, DOOR)
        # then the lease: an owner that dies between the two leaves the call to be taken
        # over, and its next owner's end finds it ended (never a second end function)
        await self.s.store.write(ops.finish_sip, self.call_id, time.time())
        log.info("openai sip call ended call_id=%s reason=%s%s", self.call_id, reason, "" if ended else " (ended before)")
        await self.link.close()


_FLUSH = object()  # the inbox's cue: the sideband is back, send what waited
