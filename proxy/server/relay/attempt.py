"""One attempt: one request to one upstream of the pool, for one reply.

An attempt opens its upstream, then reads until it has *speakable output* (content
the runtime receives after rendering, a tool call, a command, or a finish; not a
role-only chunk, a comment, an empty delta or thinking): what it rendered until then
is held in :attr:`Attempt.held` and its commands in :attr:`Attempt.cmds`, so a losing
attempt leaves no trace. The winner is *adopted* by the reply (its held bytes go out,
its commands are acted on) and read on by the stream. ``commit`` attempts (no other
could take over) stop reading at the head, as a lone upstream always did.

Failures raise the :class:`~proxy.errors.UpstreamError` the runtime would get, with
its ``failure`` code; a stream that ends or errors before speaking is one.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import aiohttp

from ...config import PoolEntry
from ...core.analyzer import HangupPolicy
from ...core.commands import AnyCommand, RejectReason
from ...core.inspector import InspectorSettings, InvalidChunk, ReplyInspector
from ...core.routing import AttemptOutcome, Usage, usage_of
from ...core.sse import SSEDecodeError, SSEDecoder, SSEEvent
from ...errors import UpstreamBadReply, UpstreamError, UpstreamFailure, UpstreamStatus, UpstreamTimeout, UpstreamUnreachable
from ..services import Services
from .upstream import open_upstream

__all__ = ["Attempt", "DeferredPolicy"]

_USAGE = re.compile(r'"usage"\s*:\s*\{')


class DeferredPolicy:
    """The call's hangup policy as an attempt sees it: until the attempt is adopted,
    a hangup is only checked (``act`` is kept for :meth:`live`), so a losing attempt
    never hangs up the call."""

    __slots__ = ("real", "is_live", "pending")

    def __init__(self, real: HangupPolicy) -> None:
        self.real, self.is_live = real, False
        self.pending: str | None = None

    def refuse_hangup(self, source: str, act: bool) -> RejectReason | None:
        """As the call's policy; before :meth:`live`, an allowed hangup is remembered."""
        if self.is_live:
            return self.real.refuse_hangup(source, act)
        reason = self.real.refuse_hangup(source, False)
        if reason is None and act:
            self.pending = source
        return reason

    def live(self) -> None:
        """The attempt won: a remembered hangup becomes the call's, and later ones act at once."""
        self.is_live = True
        if self.pending is not None:
            self.real.refuse_hangup(self.pending, True)
            self.pending = None


class Attempt:
    """See the module docstring. ``started``: ``perf_counter()`` of the request (times are ms from it)."""

    def __init__(self, entry: PoolEntry, body: bytes, model: Any, hide_usage: bool, started: float, *, continuation: bool = False) -> None:
        self.entry, self.body, self.model, self.hide_usage = entry, body, model, hide_usage
        self.turn_started = started
        self.started_ms = round((time.perf_counter() - started) * 1000, 3)
        self.continuation = continuation
        self.first_token_ms: float | None = None
        self.outcome: AttemptOutcome | None = None
        self.error: str | None = None
        self.usage: Usage | None = None
        self.resp: aiohttp.ClientResponse | None = None
        self.whole: bytes | None = None  # a non-streamed answer, read
        self.inspector: ReplyInspector | None = None
        self.policy: DeferredPolicy | None = None
        self.decoder = SSEDecoder()
        self.held: list[bytes] = []
        self.cmds: list[AnyCommand] = []
        self.first_byte_at: float | None = None  # perf_counter()
        self.let_go = False  # no longer in flight at its upstream

    @property
    def name(self) -> str:
        """The upstream's name."""
        return self.entry.name

    async def run(self, s: Services, headers: Any, stream: bool, ready: asyncio.Future[tuple[InspectorSettings, HangupPolicy]], commit: bool) -> None:
        """Open the upstream and read until speakable output (or, with ``commit``,
        only the head). Raises an :class:`~proxy.errors.UpstreamError`."""
        self.resp = await open_upstream(s, "POST", "/chat/completions", headers, self.entry, data=self.body)
        if not stream:
            self.first_byte()
        settings, policy = await asyncio.shield(ready)
        self.policy = DeferredPolicy(policy)
        self.inspector = ReplyInspector(settings, policy=self.policy)
        sse = self.resp.content_type == "text/event-stream"
        if not stream and not sse:
            return await self._whole()
        if not sse:
            raise UpstreamBadReply(f"upstream answered {self.resp.content_type!r}, not text/event-stream, to a streaming request")
        if not commit and stream:  # an event stream to a request without stream: relayed as it comes
            await self._until_speakable()

    def first_byte(self) -> None:
        """Its first byte (of a stream's body; of a whole answer's head) came now."""
        if self.first_byte_at is None:
            self.first_byte_at = time.perf_counter()

    async def _whole(self) -> None:
        assert self.resp is not None
        try:
            data = await self.resp.read()
        except TimeoutError:
            raise UpstreamTimeout("upstream stopped sending before the reply was complete") from None
        except aiohttp.ClientError as e:
            raise UpstreamUnreachable(f"upstream failed during the reply: {type(e).__name__}: {e}") from None
        try:
            self.usage = usage_of(json.loads(data))
        except ValueError:
            raise UpstreamBadReply(f"upstream answered {self.resp.content_type!r} that is not a JSON chat completion") from None
        self.whole = data
        self.resp.release()
        self.spoke()

    async def _until_speakable(self) -> None:
        assert self.resp is not None
        try:
            async for data in self.resp.content.iter_any():
                self.first_byte()
                for event in self.decoder.feed(data):
                    out, cmds = self.feed(event)
                    self.held.append(out)
                    self.cmds += cmds
                if self.speakable():
                    return self.spoke()
            for event in self.decoder.close():
                out, cmds = self.feed(event)
                self.held.append(out)
                self.cmds += cmds
        except TimeoutError:
            raise UpstreamTimeout(f"upstream sent nothing for {self.entry.timeout_s} s before speaking") from None
        except (aiohttp.ClientError, SSEDecodeError, InvalidChunk) as e:
            raise _failed(f"upstream failed before speaking: {type(e).__name__}: {e}", UpstreamFailure.STREAM_ERROR) from None
        if self.speakable():
            return self.spoke()
        raise _failed("the upstream's stream ended before it said anything", UpstreamFailure.INCOMPLETE)

    def speakable(self) -> bool:
        """Whether the runtime would hear something of it: spoken content, a tool
        call, a command or a finish (an upstream ``error`` object is not)."""
        ins = self.inspector
        if ins is None or ins.upstream_error is not None and not ins.spoken_text:
            return False
        return bool(self.cmds or ins.saw_finish or ins.spoken_text or ins.tool_calls)

    def spoke(self) -> None:
        """Its first speakable output came now."""
        if self.first_token_ms is None:
            self.first_token_ms = round((time.perf_counter() - self.turn_started) * 1000, 3)

    def feed(self, event: SSEEvent) -> tuple[bytes, list[AnyCommand]]:
        """One SSE event through its inspector, its ``usage`` taken; a usage chunk
        callgate asked for (``hide_usage``) does not go out."""
        data = event.data
        if data is not None and '"usage"' in data and _USAGE.search(data) is not None:
            try:
                obj = json.loads(data)
            except ValueError:
                obj = None
            usage = usage_of(obj)
            if usage is not None:
                self.usage = usage
            if self.hide_usage and isinstance(obj, dict) and not obj.get("choices"):
                return b"", []
        assert self.inspector is not None
        return self.inspector.feed(event)

    def close(self) -> None:
        """Close its connection (a loser's, a stalled one's)."""
        if self.resp is not None:
            self.resp.close()

    def release(self) -> None:
        """Let its connection go: back to the pool when it was read to the end, closed otherwise."""
        if self.resp is not None:
            self.resp.release()

    def record(self, cost_usd: float | None) -> dict[str, Any]:
        """The turn's ``attempts`` entry."""
        return {
            "upstream": self.name, "model": self.model, "started_ms": self.started_ms, "first_token_ms": self.first_token_ms,
            "outcome": str(self.outcome or AttemptOutcome.CANCELLED), "error": self.error,
            "usage": self.usage.to_json() if self.usage is not None else None, "cost_usd": cost_usd,
        }


def _failed(message: str, failure: UpstreamFailure) -> UpstreamError:
    e = UpstreamBadReply(message)
    e.failure = failure
    return e


def retry_after_of(e: UpstreamError) -> dict[str, str]:
    """The headers of an upstream's error answer (for ``Retry-After``)."""
    return e.headers if isinstance(e, UpstreamStatus) else {}
