"""Which failures are transient, and what the server says about retrying.

Recognises the exception types of httpx, requests, aiohttp, the Anthropic and OpenAI SDKs and
botocore by their module and class name along the MRO, so none of them is imported (or needs
to be installed). Never by substring of a message: that breaks on the next SDK release.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

__all__ = [
    "RETRY_STATUSES",
    "ServerHint",
    "is_transient",
    "never_sent",
    "server_hint",
    "server_said",
    "status_of",
]

#: HTTP statuses retried by default: timeouts, lock conflicts, too early, throttling, and
#: server errors (529 is Anthropic's "overloaded").
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})

# (root module, class name): transient wherever it appears in an exception's MRO.
_TRANSIENT_TYPES = frozenset(
    {
        ("httpx", "TimeoutException"),
        ("httpx", "NetworkError"),
        ("httpx", "RemoteProtocolError"),
        # httpx2: the transport under the current anthropic and openai SDKs.
        ("httpx2", "TimeoutException"),
        ("httpx2", "NetworkError"),
        ("httpx2", "RemoteProtocolError"),
        ("httpcore", "TimeoutException"),
        ("httpcore", "NetworkError"),
        ("httpcore", "RemoteProtocolError"),
        ("requests", "ConnectionError"),
        ("requests", "Timeout"),
        ("requests", "ChunkedEncodingError"),  # a body cut off mid-way
        ("urllib3", "TimeoutError"),
        ("urllib3", "ProtocolError"),
        ("urllib3", "NewConnectionError"),
        ("aiohttp", "ClientConnectionError"),
        ("aiohttp", "ServerTimeoutError"),
        ("aiohttp", "ClientPayloadError"),  # a truncated body
        ("anthropic", "APIConnectionError"),  # APITimeoutError derives from it
        ("openai", "APIConnectionError"),
        ("botocore", "ConnectionError"),  # EndpointConnectionError, ConnectTimeoutError, ...
        ("botocore", "ReadTimeoutError"),
        ("botocore", "ConnectionClosedError"),
    }
)

# (root module, class name): the connection was never made, so the request was never sent
# (a write did not act). Read through the chain: the SDKs wrap these (APIConnectionError).
_NEVER_SENT_TYPES = frozenset(
    {
        ("httpx", "ConnectError"),
        ("httpx", "ConnectTimeout"),
        ("httpx2", "ConnectError"),
        ("httpx2", "ConnectTimeout"),
        ("httpcore", "ConnectError"),
        ("httpcore", "ConnectTimeout"),
        ("requests", "ConnectTimeout"),
        ("urllib3", "NewConnectionError"),
        ("urllib3", "ConnectTimeoutError"),
        ("aiohttp", "ClientConnectorError"),
        ("botocore", "EndpointConnectionError"),
        ("botocore", "ConnectTimeoutError"),
    }
)

#: Error codes a provider sends that say: do not retry (a quota used up is not a rate).
_PERMANENT_CODES = frozenset({"insufficient_quota"})
#: Error types a provider sends that say: retry (an overload reported inside a stream,
#: whose HTTP status was 200).
_TRANSIENT_ERROR_TYPES = frozenset({"overloaded_error"})
#: How far along ``__cause__``/``__context__`` a wrapped error is looked for.
_CHAIN_DEPTH = 8

# botocore ClientError codes the services document as retryable: botocore's own retry
# table (data/_retry.json: throttling and transient codes, every service's), the standard
# retry mode's server codes, and those of the services agents call most (Bedrock, DynamoDB,
# S3, Kinesis, SQS). A code not here is decided by its HTTP status (a 500 or 503 under a
# service's own name is retried; a 400 validation error is not).
_BOTOCORE_CODES = frozenset(
    {
        "BadDigest",
        "IDPCommunicationError",
        "ReplicatedWriteConflictException",
        "ServiceUnavailableException",
        "InternalServerException",
        "InternalServerError",
        "InternalFailure",
        "ModelTimeoutException",
        "ModelNotReadyException",
        "TransactionConflictException",
        "KMSThrottlingException",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
    }
)


def _int_status(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (``.status_code``, ``.status``, ``.response...``;
    Google's api_core errors: ``.code``)."""
    for attr in ("status_code", "status"):
        status = _int_status(getattr(exc, attr, None))
        if status is not None:
            return status
    if type(exc).__module__.startswith("google."):
        status = _int_status(getattr(exc, "code", None))
        if status is not None:
            return status
    response = getattr(exc, "response", None)
    if response is not None:
        if isinstance(response, Mapping):  # botocore ClientError.response
            meta = response.get("ResponseMetadata")
            if isinstance(meta, Mapping):
                return _int_status(meta.get("HTTPStatusCode"))
            return None
        for attr in ("status_code", "status"):
            status = _int_status(getattr(response, attr, None))
            if status is not None:
                return status
    return None


def failure_label(exc: BaseException | None) -> str:
    """What may be said of a failure in logs and messages: its type, and the HTTP status or
    provider code it carries; never its message, which often holds an argument (a token, an
    e-mail, a URL with a key)."""
    if exc is None:
        return "a result the retry policy refused"
    label = type(exc).__name__
    status = status_of(exc)
    code = _botocore_code(exc) or _error_field(exc, "code")
    if status is not None:
        label += f", HTTP {status}"
    if code is not None and code.isidentifier():
        label += f", code {code}"
    return label


def _botocore_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        error = response.get("Error")
        if isinstance(error, Mapping):
            code = error.get("Code")
            return code if isinstance(code, str) else None
    return None


def _error_field(exc: BaseException, name: str) -> str | None:
    """``code`` or ``type`` of a provider's error: the SDK's attribute, else its body's
    ``error`` object."""
    value = getattr(exc, name, None)
    if isinstance(value, str):
        return value
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        error = body.get("error")
        value = (error if isinstance(error, Mapping) else body).get(name)
        if isinstance(value, str):
            return value
    return None


def _own_verdict(exc: BaseException) -> bool | None:
    """Whether ``exc`` itself says transient (True) or not (False); None when it says
    nothing (a wrapper: its cause decides)."""
    if _error_field(exc, "code") in _PERMANENT_CODES:
        return False
    if _error_field(exc, "type") in _TRANSIENT_ERROR_TYPES:
        return True
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    if _botocore_code(exc) in _BOTOCORE_CODES:
        return True  # a retryable code wins over the status (throttling sent as 400)
    status = status_of(exc)
    if status is not None:
        return status in RETRY_STATUSES
    for cls in type(exc).__mro__:
        root = cls.__module__.partition(".")[0]
        if (root, cls.__name__) in _TRANSIENT_TYPES:
            return True
    return None


def _members(exc: BaseException) -> tuple[BaseException, ...] | None:
    """The members of an exception group (``ExceptionGroup``, anyio's on 3.10), else None."""
    members = getattr(exc, "exceptions", None)
    if isinstance(members, tuple) and type(exc).__name__.endswith("ExceptionGroup"):
        return members
    return None


def is_transient(exc: BaseException) -> bool:
    """The default ``retry_on``: timeouts, connection errors, retryable HTTP statuses and
    provider error codes.

    Only ``Exception`` subclasses qualify: cancellation, ``KeyboardInterrupt`` and
    ``SystemExit`` are never transient. A wrapped error is classified through its
    ``__cause__`` / ``__context__`` chain; an exception group is transient only when every
    member is (a group holding a permanent error is never retried).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    for _ in range(_CHAIN_DEPTH):
        if current is None or id(current) in seen or not isinstance(current, Exception):
            return False
        seen.add(id(current))
        members = _members(current)
        if members is not None:
            return bool(members) and all(is_transient(m) for m in members)
        verdict = _own_verdict(current)
        if verdict is not None:
            return verdict
        cause = current.__cause__
        if cause is None and not current.__suppress_context__:
            cause = current.__context__
        current = cause
    return False


class ServerHint:
    """What the response said: retry or not (``x-should-retry``), and after how long."""

    __slots__ = ("delay", "should_retry")

    def __init__(self, should_retry: bool | None, delay: float | None) -> None:
        self.should_retry = should_retry
        self.delay = delay

    def __repr__(self) -> str:
        return f"ServerHint(should_retry={self.should_retry!r}, delay={self.delay!r})"


def _headers_of(exc: BaseException) -> Any:
    response = getattr(exc, "response", None)
    if response is not None:
        if isinstance(response, Mapping):  # botocore
            meta = response.get("ResponseMetadata")
            if isinstance(meta, Mapping):
                return meta.get("HTTPHeaders")
            return None
        headers = getattr(response, "headers", None)
        if headers is not None:
            return headers
    return getattr(exc, "headers", None)


def _header(headers: Any, name: str) -> str | None:
    getter = getattr(headers, "get", None)
    if getter is None:
        return None
    value = getter(name)
    if value is None and isinstance(headers, Mapping):
        # A plain dict is case-sensitive; HTTP header names are not.
        for key, item in headers.items():
            if isinstance(key, str) and key.lower() == name:
                value = item
                break
    return value if isinstance(value, str) else None


def _parse_retry_after(value: str, now: float) -> float | None:
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            import email.utils  # only for an HTTP-date Retry-After (7 ms to import)

            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        return max(0.0, when.timestamp() - now)
    return seconds if seconds >= 0 else None


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the errors it wraps (``__cause__``, else ``__context__``), nearest first."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(found) < _CHAIN_DEPTH and current not in found:
        found.append(current)
        cause = current.__cause__
        if cause is None and not current.__suppress_context__:
            cause = current.__context__
        current = cause
    return found


def never_sent(exc: BaseException) -> bool:
    """True when the failure happened before a connection existed (refused, unreachable, a
    connect timeout), in ``exc`` or the error it wraps: the request never left, so a write
    did not act."""
    for error in _chain(exc):
        if isinstance(error, ConnectionRefusedError):
            return True
        for cls in type(error).__mro__:
            if (cls.__module__.partition(".")[0], cls.__name__) in _NEVER_SENT_TYPES:
                return True
    return False


def server_hint(exc: BaseException) -> ServerHint | None:
    """The server's retry hint carried by ``exc`` or the error it wraps (``ToolError(...)
    from HTTPStatusError(429)``), in precedence order.

    ``x-should-retry`` (``true``/``false``) first, then ``retry-after-ms`` (milliseconds),
    then ``retry-after`` (seconds or an HTTP date). An exception may also carry a
    ``retry_after`` attribute in seconds. ``None`` when there is no hint.
    """
    for error in _chain(exc):
        hint = _own_hint(error)
        if hint is not None:
            return hint
    return None


def server_said(exc: BaseException) -> str | None:
    """What the server answered, for a person and a model: ``"HTTP 429 and asked to wait
    1 s (Retry-After)"``; None when the failure carries no status and no hint."""
    status = next((s for s in map(status_of, _chain(exc)) if s is not None), None)
    hint = server_hint(exc)
    delay = None if hint is None else hint.delay
    if status is None and delay is None:
        return None
    parts = [] if status is None else [f"answered HTTP {status}"]
    if delay is not None:
        parts.append(f"asked to wait {delay:g} s (Retry-After)")
    return " and ".join(parts)


def _own_hint(exc: BaseException) -> ServerHint | None:
    should_retry: bool | None = None
    delay: float | None = None
    attr = getattr(exc, "retry_after", None)
    if isinstance(attr, (int, float)) and not isinstance(attr, bool) and attr >= 0:
        delay = float(attr)
    headers = _headers_of(exc)
    if headers is not None:
        flag = _header(headers, "x-should-retry")
        if flag is not None:
            flag = flag.strip().lower()
            should_retry = True if flag == "true" else False if flag == "false" else None
        ms = _header(headers, "retry-after-ms")
        if ms is not None:
            try:
                parsed = float(ms) / 1000.0
            except ValueError:
                parsed = -1.0
            if parsed >= 0:
                delay = parsed
        if delay is None:
            text = _header(headers, "retry-after")
            if text is not None:
                delay = _parse_retry_after(text, time.time())
    if should_retry is None and delay is None:
        return None
    return ServerHint(should_retry, delay)
