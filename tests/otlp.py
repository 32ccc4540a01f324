"""A real OTLP/HTTP trace receiver on 127.0.0.1, for tests and the docs' example trace.

``POST /v1/traces`` takes what an OpenTelemetry exporter sends (protobuf, optionally
gzip), decodes it with ``opentelemetry-proto``'s generated classes
(``ExportTraceServiceRequest``; the format: the OTLP specification,
https://opentelemetry.io/docs/specs/otlp/#otlphttp) and keeps every span as a
:class:`Span`. ``fail_with`` makes it answer an error status instead (a collector
that is up but refusing). :meth:`OtlpReceiver.wait_for` waits, woken by each
request, for a number of spans; :meth:`OtlpReceiver.tree` prints a trace as an
indented tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanPb
from opentelemetry.proto.trace.v1.trace_pb2 import Status

__all__ = ["Event", "OtlpReceiver", "Span", "otlp_receiver"]


def _value(v: AnyValue) -> Any:
    """An ``AnyValue`` as a Python value (lists and maps recursively)."""
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return _attrs(v.kvlist_value.values)
    return getattr(v, kind) if kind else None


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs if isinstance(kv, KeyValue)}


@dataclass(frozen=True)
class Event:
    """A span event: its name, attributes and time (Unix ns)."""

    name: str
    attributes: dict[str, Any]
    time_ns: int


@dataclass(frozen=True)
class Span:
    """One span as received: ids in hex (``parent_span_id`` empty for a root), ``kind``
    ``SERVER``/``CLIENT``/``INTERNAL``..., ``status`` ``UNSET``/``OK``/``ERROR``,
    ``resource``: its resource's attributes (``service.name``...)."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    status: str = "UNSET"
    status_message: str = ""
    resource: dict[str, Any] = field(default_factory=dict)
    links: list[tuple[str, str]] = field(default_factory=list)

    @property
    def event_names(self) -> list[str]:
        """The names of its events, in order."""
        return [e.name for e in self.events]

    def strings(self) -> list[str]:
        """Every string it carries (attributes, events, status), for "this never leaves" checks."""
        out: list[str] = [self.name, self.status_message]

        def walk(v: Any) -> None:
            if isinstance(v, str):
                out.append(v)
            elif isinstance(v, list):
                for x in v:
                    walk(x)
            elif isinstance(v, dict):
                for x in v.values():
                    walk(x)

        walk(self.attributes)
        for e in self.events:
            out.append(e.name)
            walk(e.attributes)
        return out


def _span(s: SpanPb, resource: dict[str, Any]) -> Span:
    return Span(
        trace_id=s.trace_id.hex(), span_id=s.span_id.hex(), parent_span_id=s.parent_span_id.hex(), name=s.name,
        kind=SpanPb.SpanKind.Name(s.kind).removeprefix("SPAN_KIND_"), start_ns=s.start_time_unix_nano,
        end_ns=s.end_time_unix_nano, attributes=_attrs(s.attributes),
        events=[Event(e.name, _attrs(e.attributes), e.time_unix_nano) for e in s.events],
        status=Status.StatusCode.Name(s.status.code).removeprefix("STATUS_CODE_"), status_message=s.status.message,
        resource=resource, links=[(link.trace_id.hex(), link.span_id.hex()) for link in s.links],
    )


class OtlpReceiver:
    """See the module docstring. ``url``: its base URL once started (exporters
    append ``/v1/traces``); ``spans``: every span received, in arrival order;
    ``requests``: export requests answered (either way); ``headers``: the last one's."""

    def __init__(self) -> None:
        self.url = ""
        self.spans: list[Span] = []
        self.requests = 0
        self.headers: dict[str, str] = {}
        self.fail_with: int | None = None
        self._changed = asyncio.Event()

    def app(self) -> web.Application:
        """The aiohttp application: ``POST /v1/traces``."""
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        return app

    async def _traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip" and body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        self.requests += 1
        self.headers = dict(request.headers)
        if self.fail_with is not None:
            self._change()
            return web.Response(status=self.fail_with)
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            resource = _attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                self.spans.extend(_span(s, resource) for s in ss.spans)
        self._change()
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(), content_type="application/x-protobuf")

    def _change(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, predicate: Callable[[OtlpReceiver], bool], timeout: float = 10) -> None:
        """Until ``predicate(self)`` holds, woken by each export; ``TimeoutError`` after ``timeout`` s."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                await self._changed.wait()

    async def wait_for(self, n: int, timeout: float = 10, name: str | None = None) -> list[Span]:
        """Until ``n`` spans (named ``name``, when given) arrived; returns those spans."""
        await self.wait(lambda r: len(r.named(name)) >= n, timeout)
        return self.named(name)

    def named(self, name: str | None) -> list[Span]:
        """The spans called ``name`` (all with ``None``)."""
        return [s for s in self.spans if name is None or s.name == name]

    def tree(self, trace_id: str | None = None, keys: tuple[str, ...] = ()) -> str:
        """The spans of ``trace_id`` (the first span's trace by default) as an indented
        tree: ``name [kind] duration`` then the attributes named in ``keys`` and the
        events, children under their parent in start order."""
        trace = trace_id or (self.spans[0].trace_id if self.spans else "")
        spans = sorted((s for s in self.spans if s.trace_id == trace), key=lambda s: s.start_ns)
        ids = {s.span_id for s in spans}
        lines: list[str] = [f"trace {trace}"]

        def show(span: Span, depth: int) -> None:
            pad = "  " * depth
            ms = (span.end_ns - span.start_ns) / 1e6
            lines.append(f"{pad}{span.name} [{span.kind}] {ms:.1f} ms" + (f" status={span.status}" if span.status != "UNSET" else ""))
            for k in keys:
                if k in span.attributes:
                    lines.append(f"{pad}    {k}={span.attributes[k]}")
            for e in span.events:
                lines.append(f"{pad}    event {e.name} {e.attributes}" if e.attributes else f"{pad}    event {e.name}")
            for child in spans:
                if child.parent_span_id == span.span_id:
                    show(child, depth + 1)

        for root in spans:
            if root.parent_span_id not in ids:
                show(root, 0)
        return "\n".join(lines)


@contextlib.asynccontextmanager
async def otlp_receiver() -> AsyncIterator[OtlpReceiver]:
    """An :class:`OtlpReceiver` serving on a free loopback port (``url`` set)."""
    receiver = OtlpReceiver()
    runner = web.AppRunner(receiver.app(), access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    receiver.url = f"http://{host}:{port}"
    try:
        yield receiver
    finally:
        await runner.cleanup()
