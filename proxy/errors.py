"""callgate's exception tree, and the OpenAI error shape every client-facing error uses.

::

    CallgateError                 base; never escapes to a client as a traceback
    ├── ConfigError               config file unreadable or invalid; message names the field path
    ├── RequestError              the client's request is wrong (HTTP 400)
    │   ├── BodyTooLarge          body over ``server.max_body_bytes`` (HTTP 413)
    │   ├── NotFound              no such call or profile (HTTP 404)
    │   ├── Conflict              the request does not fit what it names now (HTTP 409)
    │   │   ├── CallEnded         the call has ended: its state is final
    │   │   └── JobNotFinished    only a finished end-function step can be retried
    │   └── TooManyTurns          the call passed a limit of ``limits:`` (HTTP 429)
    ├── NotReady                  ``GET /readyz``: the database or every upstream of a
    │                             profile's pool cannot serve a call now (HTTP 503)
    ├── Unauthorized              no key, or not one of ``auth.keys`` (HTTP 401)
    │   └── Forbidden             the key lacks the route's scope, or the call is
    │                             another key's (HTTP 403)
    └── UpstreamError             the LLM upstream failed
        ├── UpstreamUnreachable   connect failed (HTTP 502)
        ├── UpstreamTimeout       no first byte within ``upstream.timeout_s`` (HTTP 504)
        ├── UpstreamBadReply      a body the request's client cannot read: not SSE to a
        │                         streaming request, not JSON otherwise (HTTP 502)
        ├── UpstreamStatus        upstream answered 4xx/5xx; status, body and rate-limit
        │                         headers are relayed
        └── UpstreamsBusy         every upstream of the pool is at its max_concurrent (HTTP 503)
    StorageError                  the database cannot be used as it is (a startup or CLI error)
    ├── StoreUnavailable          its file, folder or lock file cannot be opened (path, OS error)
    ├── SchemaTooOld              it needs ``callgate migrate``; a read-only command never migrates
    └── SchemaTooNew              a newer callgate wrote it; this one refuses to open it

Each ``UpstreamError`` carries ``failure``, an :class:`UpstreamFailure` code: what
the turn records and ``callgate_upstream_errors_total{kind}`` counts.

Every error that reaches a client is rendered by :func:`openai_error_body` as the
OpenAI API reference's error object: ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

__all__ = [
    "BodyTooLarge",
    "CallEnded",
    "CallgateError",
    "ConfigError",
    "Conflict",
    "Forbidden",
    "JobNotFinished",
    "NotFound",
    "NotReady",
    "RequestError",
    "SchemaTooNew",
    "SchemaTooOld",
    "StorageError",
    "StoreUnavailable",
    "TooManyTurns",
    "Unauthorized",
    "UpstreamBadReply",
    "UpstreamError",
    "UpstreamFailure",
    "UpstreamStatus",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "UpstreamsBusy",
    "openai_error_body",
]


class UpstreamFailure(StrEnum):
    """How an upstream failed a reply (the label of ``callgate_upstream_errors_total``)."""

    UNREACHABLE = "unreachable"  # connecting failed, or the connection broke
    TIMEOUT = "timeout"  # nothing within upstream.timeout_s
    HTTP_STATUS = "http_status"  # it answered 4xx/5xx
    BAD_REPLY = "bad_reply"  # not SSE to a streaming request, not JSON otherwise
    STREAM_ERROR = "stream_error"  # the stream broke, or carried an error, after it began
    INCOMPLETE = "incomplete"  # the stream ended with no finish_reason and no [DONE]
    STALLED = "stalled"  # its speech went silent routing.stall_ms before its finish
    BUSY = "busy"  # every upstream of the pool was at its max_concurrent


class CallgateError(Exception):
    """Base of every error callgate raises on purpose.

    ``status`` is the HTTP status a client sees; ``type``/``code``/``param`` fill the
    OpenAI error object.
    """

    status = 500
    type = "server_error"
    code: str | None = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_body(self) -> dict[str, Any]:
        """The OpenAI-shaped error body for this error."""
        return openai_error_body(self.message, type=self.type, param=self.param, code=self.code)


class ConfigError(CallgateError):
    """The YAML config could not be read or failed validation (message names the path)."""

    type = "config_error"
    code = "invalid_config"


class RequestError(CallgateError):
    """The client's request is malformed: invalid JSON, no ``messages`` (HTTP 400)."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class BodyTooLarge(RequestError):
    """The request body is larger than ``server.max_body_bytes`` (HTTP 413)."""

    status = 413
    code = "request_too_large"


class NotFound(RequestError):
    """What the path names does not exist: a call, a runtime profile (HTTP 404)."""

    status = 404
    code = "not_found"


class Conflict(RequestError):
    """The request does not fit the state of what it names (HTTP 409)."""

    status = 409
    code = "conflict"


class CallEnded(Conflict):
    """The call has ended: its state is final (``PATCH /state``, HTTP 409)."""

    code = "call_ended"


class JobNotFinished(Conflict):
    """Only a finished end-function step can be retried (HTTP 409)."""

    code = "job_not_finished"


class TooManyTurns(RequestError):
    """The call passed a limit of ``limits:`` and was ended (HTTP 429)."""

    status = 429
    code = "call_limits_exceeded"


class NotReady(CallgateError):
    """This instance should get no new calls now (``GET /readyz``, HTTP 503): ``code``
    ``storage_unavailable``, ``upstreams_cooling`` or ``shutting_down``; the message
    names every reason."""

    status = 503
    code = "not_ready"


class Unauthorized(CallgateError):
    """No API key, or one that is not in ``auth.keys`` (HTTP 401)."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class Forbidden(Unauthorized):
    """The key may not do this: it lacks the route's scope, or the call belongs to
    another key (HTTP 403)."""

    status = 403
    code = "insufficient_permissions"


class UpstreamError(CallgateError):
    """The upstream LLM failed; subclasses say how (``failure``)."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"
    failure = UpstreamFailure.STREAM_ERROR


class UpstreamUnreachable(UpstreamError):
    """Connecting to the upstream failed (HTTP 502)."""

    code = "upstream_unreachable"
    failure = UpstreamFailure.UNREACHABLE


class UpstreamTimeout(UpstreamError):
    """The upstream sent no first byte within ``upstream.timeout_s`` (HTTP 504)."""

    status = 504
    code = "upstream_timeout"
    failure = UpstreamFailure.TIMEOUT


class UpstreamBadReply(UpstreamError):
    """The upstream answered with a body the runtime could not read (HTTP 502)."""

    code = "upstream_bad_reply"
    failure = UpstreamFailure.BAD_REPLY


class UpstreamStatus(UpstreamError):
    """The upstream answered with an error status; its body is relayed as it came.
    ``body``: bytes; ``content_type``: its header; ``headers``: the answer's headers the
    runtime gets with it (``Retry-After``, ``retry-after-ms``, ``x-ratelimit-*``:
    name -> value, as the upstream wrote them)."""

    failure = UpstreamFailure.HTTP_STATUS

    def __init__(self, status: int, body: bytes, content_type: str | None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"upstream answered HTTP {status}")
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers: dict[str, str] = dict(headers or {})


class UpstreamsBusy(UpstreamError):
    """Every upstream the request may go to is at its ``max_concurrent`` (HTTP 503)."""

    status = 503
    code = "upstreams_busy"
    failure = UpstreamFailure.BUSY


class StorageError(CallgateError):
    """The database cannot be used as it is; the message says what to do."""

    type = "storage_error"
    code = "storage_error"


class StoreUnavailable(StorageError):
    """The SQLite database, its folder or its lock file cannot be opened; the message
    names the path and the OS error."""


class SchemaTooOld(StorageError):
    """The database's schema is older than this callgate's: ``callgate migrate``
    (or ``callgate serve``) upgrades it; no other command does."""

    code = "schema_too_old"


class SchemaTooNew(StorageError):
    """The database's schema is newer than this callgate's: it refuses to open."""

    code = "schema_too_new"


def openai_error_body(
    message: str,
    *,
    type: str = "server_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}`` as in the OpenAI API reference."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}
