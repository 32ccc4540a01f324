"""One attempt: one request to one upstream of the pool, for one reply.

An attempt opens its upstream, then reads until it has *speakable output* (content
the runtime receives after rendering, a tool call, a command, or a finish; not a
role-only chunk, a comment, an empty delta or thinking): its outputs until then
(:mod:`proxy.core.outputs`) are held in :attr:`Attempt.held`, so a losing attempt
leaves no trace. The winner is *adopted* by the reply (:meth:`Attempt.take_held`:
its held outputs go out, its commands are acted on) and read on by the reply.
``commit`` attempts (no other could take over) stop reading at the head, as a lone
upstream always did. What an attempt holds is bounded by ``limits.max_held_bytes``:
past it the attempt counts as having answered (adopted at once), so a hedged
reasoning model's long thinking cannot grow without end.

Each upstream event's JSON is decoded once, by the attempt's inspector; an event
held before adoption keeps its decoded JSON, so that when the call's hangup
policy refuses a hangup the attempt found while it was not yet the reply's (the
call hung up meanwhile), its held events are inspected again under the live
policy without a second decode.

Failures raise the :class:`~proxy.errors.UpstreamError` the runtime would get, with
its ``failure`` code; a stream that ends or errors before speaking is one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

import aiohttp

from ...config import PoolEntry
from ...core import json_codec
from ...core.analyzer import HangupPolicy
from ...core.commands import RejectReason
from ...core.inspector import InspectorSettings, InvalidChunk, ReplyInspector
from ...core.outputs import CommandFound, Output
from ...core.reply import AttemptOutcome
from ...core.routing import Usage
from ...core.sse import SSEDecodeError, SSEDecoder, SSEEvent
from ...errors import UpstreamBadReply, UpstreamError, UpstreamFailure, UpstreamStatus, UpstreamTimeout, UpstreamUnreachable
from ...core.thinking import opens_thinking
from ...metrics import LIMIT_HITS, THINKING_UNOPENED, model_label
from ...telemetry import NOOP_ATTEMPT, AttemptSpan
from ..services import Services
from .upstream import open_upstream

__all__ = ["Attempt", "DeferredPolicy", "retry_after_of"]

log = logging.getLogger("callgate.relay")
_TOLD: set[tuple[str, str]] = set()  # (upstream, model) told to set thinking_open_models


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

    def live(self) -> RejectReason | None:
        """The attempt won: a remembered hangup becomes the call's, and later ones act
        at once. Returns the call's refusal of the remembered hangup (the call hung up,
        or ended, since it was checked), or ``None``."""
        self.is_live = True
        pending, self.pending = self.pending, None
        return self.real.refuse_hangup(pending, True) if pending is not None else None


class Attempt:
    """See the module docstring. ``index``: the attempt's number in its reply (its
    state machine's); ``started``: ``perf_counter()`` of the request (times are ms from it)."""

    def __init__(
        self, index: int, entry: PoolEntry, body: bytes, model: Any, hide_usage: bool, started: float, *,
        continuation: bool = False, max_held_bytes: int = 1 << 20, after_transfer: bool = False,
    ) -> None:
        self.after_transfer = after_transfer
        self.index, self.entry, self.body, self.model, self.hide_usage = index, entry, body, model, hide_usage
        self.turn_started = started
        self.started_ms = round((time.perf_counter() - started) * 1000, 3)
        self.continuation = continuation
        self.first_token_ms: float | None = None
        self.error: str | None = None
        self.resp: aiohttp.ClientResponse | None = None
        self.whole: bytes | None = None  # a non-streamed answer, read
        self.whole_json: Any = None  # and decoded
        self.inspector: ReplyInspector | None = None
        self.policy: DeferredPolicy | None = None
        self.decoder = SSEDecoder()
        self.held: list[Output] = []
        self.inputs: list[tuple[SSEEvent, Any]] = []  # the events held, with their decoded JSON
        self.held_bytes = 0
        self.commanded = False  # a command is among the held outputs
        self.max_held_bytes = max_held_bytes
        self.first_byte_at: float | None = None  # perf_counter()
        self.let_go = False  # no longer in flight at its upstream
        self.span: AttemptSpan = NOOP_ATTEMPT  # its span (the race's turn span's child)
        self.span_ended = False

    @property
    def name(self) -> str:
        """The upstream's name."""
        return self.entry.name

    @property
    def usage(self) -> Usage | None:
        """The upstream's ``usage`` for this attempt, when it sent one."""
        return self.inspector.usage if self.inspector is not None else None

    async def run(self, s: Services, headers: Any, stream: bool, ready: asyncio.Future[tuple[InspectorSettings, HangupPolicy]], commit: bool) -> None:
        """Open the upstream and read until speakable output (or, with ``commit``,
        only the head). Raises an :class:`~proxy.errors.UpstreamError`."""
        self.resp = await open_upstream(s, "POST", "/chat/completions", headers, self.entry, data=self.body)
        if not stream:
            self.first_byte()
        settings, policy = await asyncio.shield(ready)
        self.policy = DeferredPolicy(policy)
        self.inspector = self._inspector(settings, self.policy)
        sse = self.resp.content_type == "text/event-stream"
        if not stream and not sse:
            return await self._whole()
        if not sse:
            raise UpstreamBadReply(f"upstream answered {self.resp.content_type!r}, not text/event-stream, to a streaming request")
        if not commit and stream:  # an event stream to a request without stream: relayed as it comes
            await self._until_speakable()

    def _inspector(self, settings: InspectorSettings, policy: HangupPolicy) -> ReplyInspector:
        opens = opens_thinking(self.model if isinstance(self.model, str) else "", self.entry.thinking_open_models)
        if opens != settings.thinking_open:  # the model's chat template opens <think> in the prompt
            settings = dataclasses.replace(settings, thinking_open=opens)
        ins = ReplyInspector(settings, policy=policy, hide_usage=self.hide_usage)
        if self.after_transfer:
            ins.after_transfer()
        return ins

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
            obj = json_codec.loads(data)
        except ValueError:
            raise UpstreamBadReply(f"upstream answered {self.resp.content_type!r} that is not a JSON chat completion") from None
        self.whole, self.whole_json = data, obj
        self.resp.release()
        self.spoke()

    def _hold(self, event: SSEEvent) -> None:
        assert self.inspector is not None
        out = self.inspector.feed(event)
        if out and type(out[-1]) is CommandFound:
            self.commanded = True
        self.held += out
        self.inputs.append((event, self.inspector.last_chunk))
        self.held_bytes += len(event.raw)

    async def _until_speakable(self) -> None:
        assert self.resp is not None
        try:
            async for data in self.resp.content.iter_any():
                self.first_byte()
                for event in self.decoder.feed(data):
                    self._hold(event)
                if self.speakable():
                    return self.spoke()
                if self.held_bytes > self.max_held_bytes:
                    return self._overflowed()
            for event in self.decoder.close():
                self._hold(event)
        except TimeoutError:
            raise UpstreamTimeout(f"upstream sent nothing for {self.entry.timeout_s} s before speaking") from None
        except (aiohttp.ClientError, SSEDecodeError, InvalidChunk) as e:
            raise _failed(f"upstream failed before speaking: {type(e).__name__}: {e}", UpstreamFailure.STREAM_ERROR) from None
        if self.speakable():
            return self.spoke()
        raise _failed("the upstream's stream ended before it said anything", UpstreamFailure.INCOMPLETE)

    def _overflowed(self) -> None:
        LIMIT_HITS.labels("max_held_bytes").inc()
        log.warning("upstream %s held %d bytes before speaking (limits.max_held_bytes %d): adopted as it is",
                    self.name, self.held_bytes, self.max_held_bytes)

    def speakable(self) -> bool:
        """Whether the runtime would hear something of it: spoken content, a tool
        call, a command or a finish (an upstream ``error`` object is not)."""
        ins = self.inspector
        if ins is None or ins.upstream_error is not None and not ins.spoken_text:
            return False
        return bool(self.commanded or ins.saw_finish or ins.spoken_text or ins.tool_calls)

    def spoke(self) -> None:
        """Its first speakable output came now."""
        if self.first_token_ms is None:
            self.first_token_ms = round((time.perf_counter() - self.turn_started) * 1000, 3)

    def take_held(self) -> list[Output]:
        """The attempt won: its held outputs (handed over once), under the call's live
        hangup policy (see the module docstring)."""
        assert self.policy is not None and self.inspector is not None
        refused = self.policy.live()
        held, inputs = self.held, self.inputs
        self.held, self.inputs = [], []
        if refused is None:
            return held
        self.inspector = fresh = self._inspector(self.inspector.settings, self.policy)
        out: list[Output] = []
        for event, obj in inputs:
            out += fresh.feed(event) if obj is None else fresh.feed_chunk(event, obj)
        return out

    def close(self) -> None:
        """Close its connection (a loser's, a stalled one's)."""
        if self.resp is not None:
            self.resp.close()

    def release(self) -> None:
        """Let its connection go: back to the pool when it was read to the end, closed otherwise."""
        if self.resp is not None:
            self.resp.release()

    def thinking_unopened(self) -> bool:
        """A ``</think>`` came with no opening from an upstream not marked as opening
        thinking in the prompt (``thinking_open_models``): counted once per reply, and
        logged once per upstream and model with what to set."""
        ins = self.inspector
        if ins is None or not ins.thinking_unopened or ins.settings.thinking_open:
            return False
        model = self.model if isinstance(self.model, str) else ""
        THINKING_UNOPENED.labels(upstream=self.name, model=model_label(model)).inc()
        if (self.name, model) not in _TOLD:
            _TOLD.add((self.name, model))
            log.warning("upstream %s model %s closed thinking it never opened: add %r to its thinking_open_models",
                        self.name, model, model or "*")
        return True

    def end_span(self, outcome: AttemptOutcome) -> None:
        """Its outcome was written: its span ends with it (the GenAI attributes as the
        upstream reported them)."""
        self.span_ended = True
        ins, usage = self.inspector, self.usage
        self.span.end(
            str(outcome), response_model=ins.model if ins else None, response_id=ins.chunk_id if ins else None,
            finish_reasons=ins.finish_reasons if ins else (), input_tokens=usage.prompt_tokens if usage else None,
            output_tokens=usage.completion_tokens if usage else None, ttft_ms=self.first_token_ms, error=self.error,
        )

    def record(self, outcome: AttemptOutcome | None, cost_usd: float | None) -> dict[str, Any]:
        """The turn's ``attempts`` entry."""
        usage = self.usage
        return {
            "upstream": self.name, "model": self.model, "started_ms": self.started_ms, "first_token_ms": self.first_token_ms,
            "outcome": str(outcome or AttemptOutcome.CANCELLED), "error": self.error,
            "usage": usage.to_json() if usage is not None else None, "cost_usd": cost_usd,
        }


def _failed(message: str, failure: UpstreamFailure) -> UpstreamError:
    e = UpstreamBadReply(message)
    e.failure = failure
    return e


def retry_after_of(e: UpstreamError) -> dict[str, str]:
    """The headers of an upstream's error answer (for ``Retry-After``)."""
    return e.headers if isinstance(e, UpstreamStatus) else {}
