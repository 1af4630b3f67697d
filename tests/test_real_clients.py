"""The classifier and the server's hints against errors the real clients raise themselves:
the anthropic and openai SDKs (``max_retries=0``), httpx, httpx2, requests, aiohttp, botocore
and Google's api_core, each talking HTTP to a server on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from retrysafe import RetryConfig, with_retry
from retrysafe._classify import is_transient, server_hint, server_said

from .http_server import Exchange, closed_port, serving

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ANTHROPIC_MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-test",
    "content": [{"type": "text", "text": "done"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 1, "output_tokens": 1},
}
OPENAI_COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-test",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "done"}, "finish_reason": "stop"}
    ],
}


def _json(
    status: int, body: Any, headers: dict[str, str] | None = None
) -> Callable[[Exchange], None]:
    def answer(ex: Exchange) -> None:
        ex.body()
        ex.reply(status, json.dumps(body).encode(), headers)

    return answer


def _rate_limited(after: str = "1") -> Callable[[Exchange], None]:
    return _json(
        429,
        {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
        {"Retry-After": after},
    )


def _dropped(ex: Exchange) -> None:
    ex.body()
    ex.drop()


def _truncated(ex: Exchange) -> None:
    ex.body()
    ex.truncated()


def _slow(ex: Exchange) -> None:
    time.sleep(1.0)
    with_body = json.dumps({"late": True}).encode()
    try:
        ex.reply(200, with_body)
    except OSError:
        pass


def _raised(call: Callable[[str], Any], handler: Callable[[Exchange], None]) -> BaseException:
    with serving(handler) as url:
        try:
            call(url)
        except BaseException as error:
            return error
    raise AssertionError("the client raised nothing")


# --- the clients, each making one request to the server at `url` ----------------------------


def _anthropic(url: str) -> Any:
    import anthropic

    with anthropic.Anthropic(base_url=url, api_key="test", max_retries=0, timeout=0.5) as client:
        return client.messages.create(
            model="claude-test", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )


def _anthropic_stream(url: str) -> Any:
    import anthropic

    with anthropic.Anthropic(base_url=url, api_key="test", max_retries=0) as client:
        stream = client.messages.create(
            model="claude-test",
            max_tokens=8,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
        return list(stream)


def _openai(url: str) -> Any:
    import openai

    with openai.OpenAI(base_url=url + "/v1", api_key="test", max_retries=0, timeout=0.5) as client:
        return client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}]
        )


def _httpx_module(name: str) -> Callable[[str], Any]:
    def call(url: str) -> Any:
        module = pytest.importorskip(name)
        with module.Client(timeout=0.5) as client:
            response = client.post(url + "/charge", json={"amount": 5})
            response.raise_for_status()
            return response.json()

    return call


def _requests(url: str) -> Any:
    import requests

    with requests.Session() as client:
        response = client.post(url + "/charge", json={"amount": 5}, timeout=0.5)
        response.raise_for_status()
        return response.json()


def _aiohttp(url: str) -> Any:
    import aiohttp

    async def go() -> Any:
        async with aiohttp.ClientSession() as client:
            async with client.post(url + "/charge", json={"amount": 5}) as response:
                response.raise_for_status()
                return await response.read()

    return anyio.run(go)


def _dynamodb(url: str) -> Any:
    import botocore.session
    from botocore.config import Config

    client = botocore.session.get_session().create_client(
        "dynamodb",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=0.5, connect_timeout=0.5),
    )
    try:
        return client.get_item(TableName="orders", Key={"id": {"S": "o-1"}})
    finally:
        client.close()


def _google(url: str) -> Any:
    import requests
    from google.api_core import exceptions

    response = requests.get(url + "/v1/things", timeout=0.5)
    if response.status_code >= 400:
        raise exceptions.from_http_response(response)
    return response.json()


def _dynamo_error(code: str) -> Callable[[Exchange], None]:
    def answer(ex: Exchange) -> None:
        ex.body()
        body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": code})
        ex.reply(400, body.encode(), content_type="application/x-amz-json-1.0")

    return answer


TRANSIENT = [
    # (client, server behaviour, the wait the server asked for)
    pytest.param(_anthropic, _rate_limited("1"), 1.0, id="anthropic-429-retry-after"),
    pytest.param(
        _anthropic,
        _json(529, {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}),
        None,
        id="anthropic-529",
    ),
    pytest.param(_anthropic, _dropped, None, id="anthropic-connection-lost"),
    pytest.param(_anthropic, _slow, None, id="anthropic-timeout"),
    pytest.param(
        _openai,
        _json(
            429,
            {"error": {"message": "rate", "type": "requests", "code": "rate_limit_exceeded"}},
            {"retry-after-ms": "250"},
        ),
        0.25,
        id="openai-429-retry-after-ms",
    ),
    pytest.param(
        _openai,
        _json(503, {"error": {"message": "down"}}, {"Retry-After": "2"}),
        2.0,
        id="openai-503",
    ),
    pytest.param(_httpx_module("httpx"), _dropped, None, id="httpx-remote-protocol"),
    pytest.param(_httpx_module("httpx"), _slow, None, id="httpx-read-timeout"),
    pytest.param(_httpx_module("httpx2"), _dropped, None, id="httpx2-remote-protocol"),
    pytest.param(_httpx_module("httpx2"), _slow, None, id="httpx2-read-timeout"),
    pytest.param(_httpx_module("httpx2"), _rate_limited("3"), 3.0, id="httpx2-429"),
    pytest.param(_httpx_module("httpx2"), _truncated, None, id="httpx2-truncated"),
    pytest.param(_requests, _dropped, None, id="requests-connection"),
    pytest.param(_requests, _truncated, None, id="requests-chunked-encoding"),
    pytest.param(_requests, _slow, None, id="requests-timeout"),
    pytest.param(_requests, _rate_limited("1"), 1.0, id="requests-429"),
    pytest.param(_aiohttp, _truncated, None, id="aiohttp-payload"),
    pytest.param(_aiohttp, _dropped, None, id="aiohttp-disconnected"),
    pytest.param(_aiohttp, _rate_limited("2"), 2.0, id="aiohttp-429"),
    pytest.param(
        _dynamodb, _dynamo_error("ThrottlingException"), None, id="botocore-throttling-400"
    ),
    pytest.param(
        _dynamodb,
        _dynamo_error("ProvisionedThroughputExceededException"),
        None,
        id="botocore-provisioned-throughput-400",
    ),
    pytest.param(_dynamodb, _dynamo_error("LimitExceededException"), None, id="botocore-limit-400"),
    pytest.param(_dynamodb, _dropped, None, id="botocore-connection-closed"),
    pytest.param(_google, _json(429, {"error": {"message": "quota"}}), None, id="google-429"),
    pytest.param(_google, _json(503, {"error": {"message": "down"}}), None, id="google-503"),
    pytest.param(_google, _json(504, {"error": {"message": "late"}}), None, id="google-504"),
]


@pytest.mark.parametrize(("client", "handler", "delay"), TRANSIENT)
def test_transient_failures_raised_by_the_real_clients(
    client: Callable[[str], Any], handler: Callable[[Exchange], None], delay: float | None
) -> None:
    error = _raised(client, handler)
    assert isinstance(error, Exception), error
    assert is_transient(error), f"{type(error).__module__}.{type(error).__qualname__}: {error}"
    hint = server_hint(error)
    assert (None if hint is None else hint.delay) == delay


def test_a_closed_port_is_a_transient_connect_error() -> None:
    for name in ("httpx", "httpx2"):
        module = pytest.importorskip(name)
        with module.Client(timeout=0.5) as client:
            with pytest.raises(module.ConnectError) as raised:
                client.get(f"http://127.0.0.1:{closed_port()}/")
        assert is_transient(raised.value)


def _anthropic_overloaded_stream(ex: Exchange) -> None:
    """A stream that starts (HTTP 200) and then reports an overload, as Anthropic's does."""
    ex.body()
    start = {"type": "message_start", "message": {**ANTHROPIC_MESSAGE, "content": []}}
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    body = (
        f"event: message_start\ndata: {json.dumps(start)}\n\n"
        f"event: error\ndata: {json.dumps(error)}\n\n"
    ).encode()
    ex.reply(200, body, content_type="text/event-stream")


PERMANENT = [
    pytest.param(
        _openai,
        _json(
            429,
            {
                "error": {
                    "message": "You exceeded your current quota",
                    "type": "insufficient_quota",
                    "code": "insufficient_quota",
                }
            },
        ),
        id="openai-insufficient-quota",
    ),
    pytest.param(
        _anthropic,
        _json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "no"}}),
        id="anthropic-400",
    ),
    pytest.param(_httpx_module("httpx2"), _json(404, {}), id="httpx2-404"),
    pytest.param(_dynamodb, _dynamo_error("ValidationException"), id="botocore-validation-400"),
    pytest.param(_google, _json(403, {"error": {"message": "denied"}}), id="google-403"),
]


@pytest.mark.parametrize(("client", "handler"), PERMANENT)
def test_permanent_failures_raised_by_the_real_clients(
    client: Callable[[str], Any], handler: Callable[[Exchange], None]
) -> None:
    error = _raised(client, handler)
    assert not is_transient(error), f"{type(error).__qualname__}: {error}"


def test_an_overload_inside_an_anthropic_stream_is_transient() -> None:
    import anthropic

    error = _raised(_anthropic_stream, _anthropic_overloaded_stream)
    assert isinstance(error, anthropic.APIStatusError)
    assert 200 == error.status_code
    assert is_transient(error)


def test_a_wrapped_client_error_keeps_its_class_and_its_hint() -> None:
    """``ToolError(...) from HTTPStatusError(429)``: transient, the server's wait, its text."""

    class ToolError(Exception):
        pass

    inner = _raised(_httpx_module("httpx2"), _rate_limited("2"))
    try:
        raise ToolError("charge failed") from inner
    except ToolError as outer:
        assert is_transient(outer)
        hint = server_hint(outer)
        assert hint is not None and 2.0 == hint.delay
        assert "answered HTTP 429 and asked to wait 2 s (Retry-After)" == server_said(outer)


# --- the wait: measured between the requests the server saw ---------------------------------


class _Throttled:
    """Answers 429 with a Retry-After header first, then success; records arrival times."""

    def __init__(self, header: dict[str, str], success: Any) -> None:
        self.header = header
        self.success = success
        self.arrivals: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, ex: Exchange) -> None:
        ex.body()
        with self.lock:
            self.arrivals.append(time.monotonic())
            first = len(self.arrivals) == 1
        if first:
            ex.reply(
                429, b'{"error": {"type": "rate_limit_error", "message": "later"}}', self.header
            )
        else:
            ex.reply(200, json.dumps(self.success).encode())

    @property
    def waited(self) -> float:
        return self.arrivals[1] - self.arrivals[0]


CONFIG = RetryConfig(max_attempts=3, base_delay=0.01, max_delay=0.02, jitter=False)


def test_the_sync_sdk_waits_what_retry_after_says() -> None:
    import anthropic

    server = _Throttled({"Retry-After": "1"}, ANTHROPIC_MESSAGE)
    with serving(server) as url:
        client = anthropic.Anthropic(base_url=url, api_key="test", max_retries=0)
        with client:

            def ask() -> Any:
                return client.messages.create(
                    model="claude-test", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
                )

            message = with_retry(ask, config=CONFIG)()
    assert "done" == message.content[0].text
    assert 2 == len(server.arrivals)
    assert 1.0 <= server.waited < 1.6, server.waited


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_async_sdk_waits_what_retry_after_ms_says(backend: str) -> None:
    import openai

    server = _Throttled({"retry-after-ms": "400", "Retry-After": "9"}, OPENAI_COMPLETION)

    async def main(url: str) -> Any:
        async with openai.AsyncOpenAI(
            base_url=url + "/v1", api_key="test", max_retries=0
        ) as client:

            async def ask() -> Any:
                return await client.chat.completions.create(
                    model="gpt-test", messages=[{"role": "user", "content": "hi"}]
                )

            return await with_retry(ask, config=CONFIG)()

    with serving(server) as url:
        if backend == "trio":
            pytest.importorskip("trio")
        completion = anyio.run(main, url, backend=backend)
    assert "done" == completion.choices[0].message.content
    # retry-after-ms wins over retry-after (9 s would have failed the bound).
    assert 0.4 <= server.waited < 1.0, server.waited
