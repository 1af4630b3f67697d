"""The default classifier on the real clients' own exception objects (issue 14's table)."""

from __future__ import annotations

from typing import Any

import pytest

from retrysafe import RetryConfig, is_transient

httpx2 = pytest.importorskip("httpx2")
anthropic = pytest.importorskip("anthropic")
openai = pytest.importorskip("openai")
requests = pytest.importorskip("requests")
aiohttp = pytest.importorskip("aiohttp")
botocore_exceptions = pytest.importorskip("botocore.exceptions")
google_exceptions = pytest.importorskip("google.api_core.exceptions")

REQUEST = httpx2.Request("POST", "https://api.example.invalid/v1/messages")


def _response(status: int) -> Any:
    return httpx2.Response(status, request=REQUEST)


def _client_error(code: str, status: int) -> Any:
    error = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
    }
    return botocore_exceptions.ClientError(error, "PutItem")


@pytest.mark.parametrize(
    "error",
    [
        httpx2.RemoteProtocolError("peer closed connection", request=REQUEST),
        httpx2.ReadTimeout("read timed out", request=REQUEST),
        httpx2.ConnectError("connection refused", request=REQUEST),
        httpx2.ConnectTimeout("connect timed out", request=REQUEST),
        _client_error("Throttling", 400),
        _client_error("ThrottlingException", 400),
        _client_error("ProvisionedThroughputExceededException", 400),
        _client_error("LimitExceededException", 400),
        botocore_exceptions.ConnectionClosedError(endpoint_url="https://dynamodb.invalid"),
        requests.exceptions.ChunkedEncodingError("response ended prematurely"),
        aiohttp.ClientPayloadError("response payload is not completed"),
        google_exceptions.TooManyRequests("quota"),
        google_exceptions.InternalServerError("boom"),
        google_exceptions.ServiceUnavailable("down"),
        google_exceptions.GatewayTimeout("slow"),
        anthropic.APIStatusError(
            "overloaded",
            response=_response(200),
            body={"type": "error", "error": {"type": "overloaded_error", "message": "x"}},
        ),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transient_failures_of_the_real_clients(error: BaseException) -> None:
    """Each of these is transient: retried by default."""
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        openai.RateLimitError(
            "quota",
            response=_response(429),
            body={"code": "insufficient_quota", "message": "quota", "type": "insufficient_quota"},
        ),
        _client_error("ValidationException", 400),
        _client_error("AccessDeniedException", 403),
        google_exceptions.BadRequest("bad"),
        anthropic.BadRequestError("bad", response=_response(400), body=None),
    ],
    ids=lambda e: type(e).__name__,
)
def test_permanent_failures_are_not_retried(error: BaseException) -> None:
    """A quota used up, a validation error, a refusal: not transient."""
    assert not is_transient(error)


# (code, status, transient): Bedrock's, DynamoDB's and S3's throttling and server errors as
# the services document them, a code botocore does not know (its status decides), and
# permanent ones.
BOTOCORE_CASES = [
    ("ServiceUnavailableException", 503, True),  # Bedrock
    ("InternalServerException", 500, True),  # Bedrock
    ("ModelTimeoutException", 408, True),  # Bedrock
    ("ModelNotReadyException", 429, True),  # Bedrock
    ("ThrottlingException", 429, True),  # Bedrock, DynamoDB
    ("ProvisionedThroughputExceededException", 400, True),  # DynamoDB
    ("RequestLimitExceeded", 400, True),  # DynamoDB
    ("InternalServerError", 500, True),  # DynamoDB
    ("TransactionConflictException", 400, True),  # DynamoDB
    ("SlowDown", 503, True),  # S3
    ("InternalError", 500, True),  # S3
    ("ServiceUnavailable", 503, True),  # S3
    ("RequestTimeout", 400, True),  # S3
    ("SomeNewServerFault", 502, True),  # unknown code: the status decides
    ("SomeNewClientFault", 400, False),  # unknown code: the status decides
    ("ValidationException", 400, False),
    ("ModelErrorException", 424, False),  # Bedrock: the model's own error
    ("ServiceQuotaExceededException", 400, False),  # a quota, not a moment
    ("AccessDeniedException", 403, False),
    ("NoSuchKey", 404, False),  # S3
]


@pytest.mark.parametrize(("code", "status", "transient"), BOTOCORE_CASES, ids=lambda v: str(v))
def test_botocore_codes_the_services_document(code: str, status: int, transient: bool) -> None:
    """A retryable code is retried whatever its status; an unknown code falls back to the
    status (Bedrock's 503, 500, 408 and 429 under their own names were classified permanent
    once codes won over statuses)."""
    assert transient == is_transient(_client_error(code, status))


class ToolError(Exception):
    """A framework's wrapper exception."""


def _raised_from(outer: Exception, inner: BaseException) -> Exception:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except Exception as wrapped:
        return wrapped


def _raised_during(outer: Exception, inner: BaseException) -> Exception:
    try:
        try:
            raise inner
        except BaseException:
            raise outer  # noqa: B904 (the implicit __context__ is the point)
    except Exception as wrapped:
        return wrapped


def test_wrapped_errors_are_classified_through_their_cause() -> None:
    """ToolError from a 429, RuntimeError raised while handling a ReadTimeout: transient;
    a wrapper of a 400 is not."""
    throttled = httpx2.HTTPStatusError("429", request=REQUEST, response=_response(429))
    assert is_transient(_raised_from(ToolError("tool failed"), throttled))
    timeout = httpx2.ReadTimeout("read timed out", request=REQUEST)
    assert is_transient(_raised_during(RuntimeError("could not fetch"), timeout))
    bad = httpx2.HTTPStatusError("400", request=REQUEST, response=_response(400))
    assert not is_transient(_raised_from(ToolError("tool failed"), bad))
    assert not is_transient(ToolError("no cause"))


def test_exception_groups_are_transient_only_when_every_member_is() -> None:
    """anyio's groups: one ReadTimeout is transient; a group holding a 400 is not."""
    timeout = httpx2.ReadTimeout("read timed out", request=REQUEST)
    bad = httpx2.HTTPStatusError("400", request=REQUEST, response=_response(400))
    assert is_transient(ExceptionGroup("task group", [timeout]))  # noqa: F821 (3.11+ builtin)
    assert not is_transient(ExceptionGroup("task group", [timeout, bad]))  # noqa: F821


@pytest.mark.parametrize("retry_number", [0, -1])
def test_backoff_rejects_retry_numbers_below_one(retry_number: int) -> None:
    """backoff(0) and backoff(-1) are mistakes, not half a delay."""
    with pytest.raises(ValueError, match="retry_number"):
        RetryConfig().backoff(retry_number)
