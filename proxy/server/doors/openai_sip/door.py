"""The OpenAI SIP front door on one instance: its accepts, its calls' sessions, their
leases, and the calls it takes over.

* :meth:`SipDoor.accept_later` (the webhook's delivery, answered already): the call is
  claimed in the database, once across instances and deliveries
  (:func:`~proxy.storage.ops.claim_accept`); a caller outside ``allow_callers`` is
  rejected with ``reject_status``; else the accept is sent (the configured session,
  the profile's hangup and transfer tools, input transcription), and on 2xx the call
  is this instance's (its ``calls`` row made, its :class:`~.session.Session`
  started). A 404 is "the caller is gone": recorded, not retried. Any other failure is
  logged and recorded (``failed``), not retried either: the answer to a second accept
  of a call is unconfirmed (reference §9).
* Every ``lease_s / 3`` the leases of this instance's calls are renewed (a call found
  to be another's stops here, without ending), and calls whose owner's lease ran out,
  or whose owner's process is gone (SQLite: at once), are taken over: a session
  resumes from the database (latches, answered function calls) and attaches again.
* A call claimed for its accept by an instance that stopped before it settled it
  (kill -9 between the claim and the accept's answer) is claimed again by the next
  instance's look (its process gone, or its heartbeat three sweeps old) and accepted
  then: the caller may still be ringing. That accept may be the call's second (the
  first may have reached OpenAI): how OpenAI answers one is unconfirmed, and a 4xx
  settles the call as ``failed`` (logged), as for any failed accept.
* At shutdown the sessions stop and their leases end at once, so another instance
  takes the calls over at its next look.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiohttp import web

from ....calls.model import Call
from ....calls.sweeper import stopped_here
from ....config import OpenAISipConfig
from ....core.function_map import FunctionMap
from ....core.openai_sip import accept as acc
from ....core.openai_sip.actions import Resume
from ....core.openai_sip.api import Api, Verb
from ....core.openai_sip.webhook import IncomingCall, caller_allowed
from ....metrics import SIP_WEBHOOKS
from ....prompts import tool_definitions
from ....storage import ops
from ....storage.statuses import SipCallStatus
from ...services import SERVICES, Services
from .rest import OpenAIRest
from .session import Session

__all__ = ["SIP_DOOR", "SipDoor"]

log = logging.getLogger("callgate.sip")


class SipDoor:
    """See the module docstring; made by :func:`proxy.server.doors.openai_sip.add_routes`, started
    with the app."""

    def __init__(self) -> None:
        self.s: Services | None = None
        self.rest: OpenAIRest | None = None
        self.sessions: dict[str, asyncio.Task[None]] = {}
        self.accepting: set[asyncio.Task[None]] = set()
        self.loop_task: asyncio.Task[None] | None = None

    @property
    def cfg(self) -> OpenAISipConfig:
        """The door's config now."""
        assert self.s is not None
        return self.s.config.front_doors.openai_sip

    async def start(self, app: web.Application) -> None:
        """After the services: the lease loop."""
        self.s = app[SERVICES]
        self.rest = OpenAIRest(self.s.session, lambda: self.cfg)
        self.loop_task = asyncio.get_running_loop().create_task(self._leases())

    async def stop(self, app: web.Application) -> None:
        """Before the services close: accepts in flight finish (5 s at most), sessions
        stop, their leases end now."""
        if self.loop_task is not None:
            self.loop_task.cancel()
        if self.accepting:
            await asyncio.wait(self.accepting, timeout=5)
        ids = list(self.sessions)
        for task in [*self.accepting, *self.sessions.values()]:
            task.cancel()
        await asyncio.gather(*self.accepting, *self.sessions.values(), *(t for t in [self.loop_task] if t), return_exceptions=True)
        if ids and self.s is not None:
            with contextlib.suppress(Exception):
                await self.s.store.write(ops.release, self.s.registry.instance, ids, time.time())

    # -- the accept ------------------------------------------------------------------------

    def accept_later(self, call: IncomingCall) -> None:
        """Accept ``call`` in the background (once across instances and deliveries)."""
        task = asyncio.ensure_future(self._accept(call))
        self.accepting.add(task)
        task.add_done_callback(self._accepted)

    def _accepted(self, task: asyncio.Task[None]) -> None:
        self.accepting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("openai sip accept failed", exc_info=task.exception())

    async def _accept(self, call: IncomingCall) -> None:
        assert self.s is not None
        if not await self.s.store.write(ops.claim_accept, call.call_id, call.api, call.caller, call.callee, self.s.registry.instance, time.time()):
            SIP_WEBHOOKS.labels("duplicate").inc()
            log.info("openai sip webhook for a call claimed before call_id=%s event=%s", call.call_id, call.event_id)
            return
        await self._claimed(call.call_id, call.api, call.caller, call.callee, call.metadata())

    async def _claimed(self, call_id: str, api: Api, caller: str, callee: str, metadata: dict[str, Any]) -> None:
        """The call is this instance's to accept (or reject): once."""
        assert self.s is not None and self.rest is not None
        s, cfg, me = self.s, self.cfg, self.s.registry.instance
        call = _Incoming(call_id, api, caller, callee, metadata)
        if not caller_allowed(call.caller, cfg.allow_callers):
            result = await self.rest.post(call.api, call.call_id, Verb.REJECT, acc.reject_body(cfg.reject_status))
            await s.store.write(ops.settle_accept, call.call_id, SipCallStatus.REJECTED, result.status, time.time())
            log.info("openai sip call rejected call_id=%s status=%d (caller not in allow_callers)", call.call_id, cfg.reject_status)
            return
        profile = s.profiles[cfg.profile or s.config.default_profile]
        tools = acc.function_tools(tool_definitions(FunctionMap(profile.settings.function_map)))
        result = await self.rest.post(call.api, call.call_id, Verb.ACCEPT, acc.accept_body(call.api, cfg.session, tools))
        now = time.time()
        if result.ok:
            start = Call(call.call_id, profile=profile.name).start()
            await s.store.write(ops.accepted, call.call_id, start, call.metadata, me, now + cfg.lease_s, result.status, now)
            log.info("openai sip call accepted call_id=%s api=%s", call.call_id, call.api)
            self._serve(call.call_id, call.api, None)
        else:
            status = SipCallStatus.GONE if result.gone else SipCallStatus.FAILED
            await s.store.write(ops.settle_accept, call.call_id, status, result.status, now)
            if result.gone:
                log.info("openai sip caller gone before the accept call_id=%s (404, not retried)", call.call_id)

    def _serve(self, call_id: str, api: Api, resume: Resume | None) -> None:
        assert self.s is not None and self.rest is not None
        if call_id in self.sessions:
            return
        task = asyncio.ensure_future(Session(self.s, self.rest, call_id, api, resume).run())
        self.sessions[call_id] = task
        task.add_done_callback(lambda t: self._served(call_id, t))

    def _served(self, call_id: str, task: asyncio.Task[None]) -> None:
        if self.sessions.get(call_id) is task:
            del self.sessions[call_id]
        if not task.cancelled() and task.exception() is not None:
            # no longer renewed: when its lease runs out a look (this instance's too) takes it over
            log.error("openai sip session failed call_id=%s", call_id, exc_info=task.exception())

    # -- leases and takeovers ----------------------------------------------------------------------

    async def _leases(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.lease_s / 3)
            if not self.cfg.enabled:
                continue
            try:
                await self.tick()
            except Exception:
                log.exception("openai sip lease round failed; the next one tries again")

    async def tick(self) -> None:
        """One round: renew this instance's leases, stop the calls it lost, take over
        the calls whose owner is gone."""
        assert self.s is not None
        store, me, now, lease = self.s.store, self.s.registry.instance, time.time(), self.cfg.lease_s
        mine = set(await store.write(ops.renew, me, list(self.sessions), now + lease, now))
        for call_id, task in list(self.sessions.items()):
            if call_id not in mine and not task.done():
                log.warning("openai sip call taken over by another instance call_id=%s", call_id)
                task.cancel()
        gone = await stopped_here(store, me)
        for row in await store.write(ops.take_over, me, now, now + lease, gone, list(self.sessions)):
            answered = await store.read(ops.answered_functions, row.id)
            log.warning("openai sip call taken over call_id=%s from=%s hangup=%s refer=%s", row.id, row.owner, row.hangup, row.refer)
            self._serve(row.id, row.api, Resume(row.hangup, row.refer, answered, row.refer_target))
        dead_before = now - 3 * self.s.config.end_function.sweep_s
        for row in await store.write(ops.take_over_accepts, me, now, dead_before, gone):
            # its claimer stopped before it settled the accept: the caller may still be ringing
            log.warning("openai sip accept taken over call_id=%s (its instance stopped mid-accept)", row.id)
            metadata = {k: v for k, v in (("caller_number", row.caller), ("callee_number", row.callee)) if v}
            metadata.update(runtime_call_id=row.id, openai_api=str(row.api))
            task = asyncio.ensure_future(self._claimed(row.id, row.api, row.caller, row.callee, metadata))
            self.accepting.add(task)
            task.add_done_callback(self._accepted)


class _Incoming:
    """What the accept needs of a call: from its webhook, or from its row (a takeover)."""

    __slots__ = ("call_id", "api", "caller", "callee", "metadata")

    def __init__(self, call_id: str, api: Api, caller: str, callee: str, metadata: dict[str, Any]) -> None:
        self.call_id, self.api, self.caller, self.callee, self.metadata = call_id, api, caller, callee, metadata


SIP_DOOR: web.AppKey[SipDoor] = web.AppKey("callgate_sip_door", SipDoor)
