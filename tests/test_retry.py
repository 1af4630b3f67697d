"""Retry: backoff, classification, hints, deadlines, budgets, and cancellation that is never lost."""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import logging
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from retrysafe import (
    Effect,
    RetryBudget,
    RetryConfig,
    RetryEvent,
    RetryExhausted,
    RetryRefusedError,
    collect_retry_stats,
    effect,
    is_transient,
    on_result,
    retry,
    retrying,
    with_retry,
)
from retrysafe.testing import retries_disabled_waits

FAST = RetryConfig(max_attempts=4, base_delay=0.001, max_delay=0.002)


class Flaky:
    """Fails with the given errors in turn, then returns "ok"; counts calls."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"

    async def acall(self, *args: Any, **kwargs: Any) -> str:
        return self(*args, **kwargs)


class HTTPError(Exception):
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status
        self.response = type("Response", (), {"status_code": status, "headers": headers or {}})()


# --- basic behaviour, sync and async -----------------------------------------------------


def test_sync_success_is_one_call_and_keeps_signature() -> None:
    """A sync function stays sync, keeps its signature and is called once on success."""

    def lookup(order_id: int, *, region: str = "eu") -> str:
        return f"{order_id}-{region}"

    wrapped = with_retry(lookup, config=FAST)
    assert "7-eu" == wrapped(7)
    assert not inspect.iscoroutinefunction(wrapped)
    assert inspect.signature(lookup) == inspect.signature(wrapped)
    assert lookup is wrapped.__wrapped__  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_async_retries_transient_then_succeeds() -> None:
    """Two connection errors, then success: three calls, the result returned."""
    flaky = Flaky(ConnectionError("reset"), TimeoutError("slow"))
    wrapped = with_retry(flaky.acall, config=FAST)
    assert inspect.iscoroutinefunction(wrapped)
    assert "ok" == await wrapped()
    assert 3 == flaky.calls


def test_sync_retries_transient_then_succeeds() -> None:
    """The sync path retries the same way."""
    flaky = Flaky(HTTPError(503), HTTPError(429))
    assert "ok" == with_retry(flaky, config=FAST)()
    assert 3 == flaky.calls


@pytest.mark.anyio
async def test_non_retryable_error_propagates_unchanged() -> None:
    """A 400 is not transient: the very same exception object, after one call."""
    error = HTTPError(400)
    flaky = Flaky(error)
    with pytest.raises(HTTPError) as info:
        await with_retry(flaky.acall, config=FAST)()
    assert error is info.value
    assert 1 == flaky.calls


@pytest.mark.anyio
async def test_exhaustion_raises_retry_exhausted_from_last_error() -> None:
    """Out of attempts: RetryExhausted with attempts and last_error, chained from it."""
    errors = [ConnectionError(str(i)) for i in range(4)]
    flaky = Flaky(*errors)
    with pytest.raises(RetryExhausted) as info:
        await with_retry(flaky.acall, config=FAST)()
    assert 4 == info.value.attempts
    assert errors[-1] is info.value.last_error
    assert errors[-1] is info.value.__cause__
    assert 4 == flaky.calls


# --- cancellation --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_cancel_scope_stops_at_once_without_another_attempt() -> None:
    """Cancelled while waiting to retry: no further attempt, on asyncio and trio."""
    flaky = Flaky(*[ConnectionError()] * 10)
    wrapped = with_retry(
        flaky.acall, config=RetryConfig(max_attempts=10, base_delay=5, max_delay=5, jitter=False)
    )
    start = time.monotonic()
    with anyio.move_on_after(0.05):
        await wrapped()
    assert time.monotonic() - start < 1.0
    assert 1 == flaky.calls


def test_plain_asyncio_wait_for_cancellation_is_not_swallowed() -> None:
    """asyncio.wait_for delivers cancellation once; a permissive retry_on must not eat it."""
    flaky = Flaky(*[ConnectionError()] * 10)
    config = RetryConfig(
        max_attempts=10, base_delay=0.2, max_delay=0.2, jitter=False, retry_on=lambda e: True
    )
    wrapped = with_retry(flaky.acall, config=config)

    async def main() -> None:
        await asyncio.wait_for(wrapped(), 0.05)

    start = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(main())
    assert time.monotonic() - start < 0.5
    assert 1 == flaky.calls


def test_plain_asyncio_task_cancel_mid_call() -> None:
    """Task.cancel() during an attempt: CancelledError propagates, no retry."""
    calls = 0

    @retry(FAST.replace(retry_on=lambda e: True))
    async def slow() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.ensure_future(slow())
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert 1 == calls


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(1), GeneratorExit()])
def test_base_exceptions_pass_through_at_once(exc: BaseException) -> None:
    """KeyboardInterrupt, SystemExit, GeneratorExit: never retried, even with retry_on=True."""
    flaky = Flaky(exc)
    with pytest.raises(type(exc)):
        with_retry(flaky, config=FAST.replace(retry_on=lambda e: True))()
    assert 1 == flaky.calls


def test_retry_on_refuses_base_exception_types() -> None:
    """Naming CancelledError in retry_on is a configuration error, said clearly."""
    with pytest.raises(ValueError, match="never retried"):
        RetryConfig(retry_on=asyncio.CancelledError)


# --- waits ---------------------------------------------------------------------------------


@given(st.floats(0, 0.999999), st.integers(1, 12))
def test_jitter_bounds(r: float, n: int) -> None:
    """full in [0, c], equal in [c/2, c], none = c, decorrelated in [base, min(max, 3 prev)]."""
    base = dict(base_delay=0.5, max_delay=20.0, multiplier=2.0, random=lambda: r)
    ceiling = min(20.0, 0.5 * 2.0 ** (n - 1))
    assert 0 <= RetryConfig(**base, jitter="full").backoff(n) <= ceiling  # type: ignore[arg-type]
    assert ceiling / 2 <= RetryConfig(**base, jitter="equal").backoff(n) <= ceiling  # type: ignore[arg-type]
    assert ceiling == RetryConfig(**base, jitter=False).backoff(n)  # type: ignore[arg-type]
    wait = RetryConfig(**base, jitter="decorrelated").backoff(n, previous=ceiling)  # type: ignore[arg-type]
    assert 0.5 <= wait <= min(20.0, 3 * ceiling)


def test_injected_random_gives_deterministic_waits() -> None:
    """With a fixed random source the waits are exactly half the ceilings (full jitter)."""
    waits: list[float] = []
    config = RetryConfig(
        max_attempts=4,
        base_delay=0.002,
        multiplier=2,
        max_delay=1,
        random=lambda: 0.5,
        on_retry=lambda e: waits.append(e.wait),
    )
    flaky = Flaky(ConnectionError(), ConnectionError(), ConnectionError())
    assert "ok" == with_retry(flaky, config=config)()
    assert [0.001, 0.002, 0.004] == waits


def test_huge_attempt_numbers_do_not_overflow() -> None:
    """The ceiling stays max_delay however many retries."""
    assert 30.0 == RetryConfig(jitter=False).backoff(5000)


@pytest.mark.anyio
async def test_deadline_is_never_overshot() -> None:
    """A 0.3 s deadline with 0.12 s waits: RetryExhausted well within it."""
    flaky = Flaky(*[ConnectionError()] * 20)
    config = RetryConfig(
        max_attempts=20, base_delay=0.12, max_delay=0.12, jitter=False, deadline=0.3
    )
    start = time.monotonic()
    with pytest.raises(RetryExhausted, match=r"deadline|cross") as raised:
        await with_retry(flaky.acall, config=config)()
    # The waits it chose stay within the deadline (exact); the wall clock adds whatever a
    # loaded 2-core machine adds to the attempts themselves.
    assert raised.value.stats.waited < 0.3  # type: ignore[attr-defined]
    assert time.monotonic() - start < 1.0
    assert 2 <= flaky.calls <= 3


@pytest.mark.anyio
async def test_deadline_cancels_a_slow_attempt() -> None:
    """An async attempt still running at the deadline is cut off there."""

    async def hang() -> None:
        await anyio.sleep(10)

    start = time.monotonic()
    with pytest.raises(RetryExhausted):
        await with_retry(hang, config=RetryConfig(deadline=0.1))()
    assert time.monotonic() - start < 0.5


@pytest.mark.anyio
async def test_attempt_timeout_is_a_transient_failure() -> None:
    """The first attempt hangs past attempt_timeout; the second answers. Even a narrow
    retry_on retries the timeout."""
    calls = 0

    async def sometimes_hangs() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await anyio.sleep(10)
        return "answer"

    config = FAST.replace(attempt_timeout=0.05, retry_on=ValueError)
    start = time.monotonic()
    assert "answer" == await with_retry(sometimes_hangs, config=config)()
    assert 2 == calls
    assert time.monotonic() - start < 1.0


def test_attempt_timeout_on_a_sync_function_is_refused() -> None:
    """A running sync call cannot be interrupted: said at decoration time."""
    with pytest.raises(ValueError, match="needs an async function"):
        with_retry(lambda: None, config=RetryConfig(attempt_timeout=1))


# --- server hints --------------------------------------------------------------------------


def _waits_for(error: Exception, config: RetryConfig = FAST) -> list[float]:
    waits: list[float] = []
    flaky = Flaky(error)
    with_retry(flaky, config=config.replace(on_retry=lambda e: waits.append(e.wait)))()
    return waits


def test_retry_after_seconds() -> None:
    """retry-after in seconds sets the wait."""
    assert [0.03] == _waits_for(HTTPError(503, {"Retry-After": "0.03"}))


def test_retry_after_http_date() -> None:
    """retry-after as an HTTP date: the wait is the time until then."""
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    [wait] = _waits_for(HTTPError(429, {"retry-after": when}), FAST.replace(max_retry_after=5))
    assert 0.9 < wait <= 2.0
    # and with waits off for the test run, the hint is still read but not slept
    with retries_disabled_waits():
        assert [0.0] == _waits_for(
            HTTPError(429, {"retry-after": when}), FAST.replace(max_retry_after=5)
        )


def test_retry_after_ms_wins_over_retry_after() -> None:
    """retry-after-ms is more precise and is read first."""
    assert [0.02] == _waits_for(HTTPError(429, {"retry-after": "9", "retry-after-ms": "20"}))


def test_x_should_retry_overrides_the_status() -> None:
    """x-should-retry: false stops a 503; true retries a 400."""
    stop = HTTPError(503, {"x-should-retry": "false"})
    flaky = Flaky(stop)
    with pytest.raises(HTTPError):
        with_retry(flaky, config=FAST)()
    assert 1 == flaky.calls
    assert 1 == len(_waits_for(HTTPError(400, {"x-should-retry": "true"})))


def test_hint_above_the_cap_gives_up_instead_of_sleeping() -> None:
    """Asked to wait 10 minutes with max_retry_after=60: the error now, no sleep."""
    error = HTTPError(429, {"retry-after": "600"})
    flaky = Flaky(error)
    start = time.monotonic()
    with pytest.raises(HTTPError) as info:
        with_retry(flaky, config=FAST)()
    assert error is info.value
    assert time.monotonic() - start < 0.5


# --- classification ------------------------------------------------------------------------


def _foreign(module: str, name: str, base: type[Exception] = Exception) -> Exception:
    cls = type(name, (base,), {})
    cls.__module__ = module
    return cls("x")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TimeoutError(), True),
        (ConnectionResetError(), True),
        (HTTPError(408), True),
        (HTTPError(409), True),
        (HTTPError(425), True),
        (HTTPError(429), True),
        (HTTPError(500), True),
        (HTTPError(529), True),
        (HTTPError(400), False),
        (HTTPError(404), False),
        (HTTPError(501), False),
        (ValueError("timeout"), False),  # never by message
        (_foreign("httpx._exceptions", "TimeoutException"), True),
        (_foreign("anthropic._exceptions", "APIConnectionError"), True),
        (_foreign("openai", "APIConnectionError"), True),
        (_foreign("requests.exceptions", "ConnectionError"), True),
        (_foreign("mylib", "APIConnectionError"), False),
    ],
)
def test_default_classifier(error: Exception, expected: bool) -> None:
    """Status codes and SDK error types decide; messages never do."""
    assert expected == is_transient(error)


def test_sdk_subclasses_are_recognised_through_the_mro() -> None:
    """httpx.ConnectError derives from NetworkError: found by walking the MRO."""
    network = type("NetworkError", (Exception,), {"__module__": "httpx._exceptions"})
    connect = type("ConnectError", (network,), {"__module__": "httpx._exceptions"})
    assert is_transient(connect("refused"))


def test_botocore_throttling_codes() -> None:
    """A botocore ClientError is transient by its error code or HTTP status."""
    client_error = type("ClientError", (Exception,), {"__module__": "botocore.exceptions"})

    def make(code: str, status: int = 400) -> Exception:
        e = client_error(code)
        e.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}  # type: ignore[attr-defined]
        return e

    assert is_transient(make("ThrottlingException", 500))
    assert is_transient(make("SlowDown", 503))
    assert not is_transient(make("ValidationException"))


def test_sdks_are_not_imported() -> None:
    """Classifying never imports httpx, anthropic, openai or botocore."""
    before = set(sys.modules)
    is_transient(HTTPError(500))
    is_transient(ValueError())
    assert not {"httpx", "anthropic", "openai", "botocore"} & (set(sys.modules) - before)


@pytest.mark.parametrize(
    "retry_on",
    [
        ValueError,
        (KeyError, ValueError),
        lambda e: isinstance(e, ValueError),
        [KeyError, lambda e: "x" in str(e)],
    ],
)
def test_retry_on_forms(retry_on: Any) -> None:
    """retry_on takes a type, a tuple, a predicate, or a list of them."""
    flaky = Flaky(ValueError("x"))
    assert "ok" == with_retry(flaky, config=FAST.replace(retry_on=retry_on))()
    with pytest.raises(ConnectionError):
        with_retry(Flaky(ConnectionError()), config=FAST.replace(retry_on=retry_on))()


def test_retry_on_result() -> None:
    """A result predicate retries bad results and reports the last one when out of attempts."""
    results = iter([{"status": "pending"}, {"status": "pending"}, {"status": "done"}])
    config = FAST.replace(retry_on=on_result(lambda r: r["status"] == "pending"))
    assert {"status": "done"} == with_retry(lambda: next(results), config=config)()
    with pytest.raises(RetryExhausted) as info:
        with_retry(lambda: {"status": "pending"}, config=config)()
    assert {"status": "pending"} == info.value.last_result  # type: ignore[attr-defined]


# --- budget, hooks, stats, testing ---------------------------------------------------------


def test_budget_stops_retries_and_fails_with_the_last_error() -> None:
    """With half the tokens gone, the call fails with its own error instead of retrying."""
    budget = RetryBudget(max_tokens=4, token_ratio=1)
    config = FAST.replace(max_attempts=10, budget=budget)
    first = ConnectionError("first")
    flaky = Flaky(first, ConnectionError("second"), ConnectionError("third"))
    with pytest.raises(ConnectionError) as info:
        with_retry(flaky, config=config)()
    assert "second" == str(info.value)  # tokens 4 -> 3 (retry) -> 2 (refused)
    assert 2 == flaky.calls
    assert 2.0 == budget.tokens
    with_retry(lambda: "ok", config=config)()
    assert 3.0 == budget.tokens  # a success refills token_ratio


def test_budget_validation() -> None:
    """Nonsensical budgets are refused."""
    with pytest.raises(ValueError, match="max_tokens"):
        RetryBudget(max_tokens=0)
    with pytest.raises(ValueError, match="token_ratio"):
        RetryBudget(token_ratio=-1)


@pytest.mark.anyio
async def test_async_hook_and_logging(caplog: pytest.LogCaptureFixture) -> None:
    """on_retry may be async; each retry logs one WARNING on the 'retrysafe' logger."""
    events: list[RetryEvent] = []

    async def hook(event: RetryEvent) -> None:
        events.append(event)

    flaky = Flaky(ConnectionError("a"), ConnectionError("b"))
    with caplog.at_level(logging.WARNING, logger="retrysafe"):
        await with_retry(flaky.acall, config=FAST.replace(on_retry=hook))()
    assert [1, 2] == [e.attempt for e in events]
    assert ["a", "b"] == [str(e.error) for e in events]
    records = [r for r in caplog.records if r.name == "retrysafe"]
    assert 2 == len(records)
    assert "attempt 1 of 4 failed" in records[0].getMessage()


@pytest.mark.anyio
async def test_stats_are_per_call_even_when_concurrent() -> None:
    """Two concurrent calls each see only their own statistics."""
    seen: dict[str, int] = {}

    async def one(label: str, failures: int) -> None:
        flaky = Flaky(*[ConnectionError()] * failures)
        with collect_retry_stats() as stats:
            await with_retry(flaky.acall, config=FAST)()
        seen[label] = stats[0].attempts
        assert 1 == len(stats)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "a", 0)
        tg.start_soon(one, "b", 2)
    assert {"a": 1, "b": 3} == seen


def test_testing_mode_zero_waits_and_attempt_cap() -> None:
    """retries_disabled_waits(): no sleeping, and attempts capped when asked."""
    slow = RetryConfig(max_attempts=5, base_delay=10, max_delay=10, jitter=False)
    flaky = Flaky(ConnectionError(), ConnectionError())
    start = time.monotonic()
    with retries_disabled_waits():
        assert "ok" == with_retry(flaky, config=slow)()
    assert time.monotonic() - start < 0.5
    with retries_disabled_waits(attempts=1), pytest.raises(RetryExhausted):
        with_retry(Flaky(ConnectionError()), config=slow)()


# --- safety and forms ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", [Effect.WRITE, Effect.DESTRUCTIVE])
def test_write_and_destructive_tools_are_refused(kind: Effect) -> None:
    """Retrying a WRITE/DESTRUCTIVE tool could repeat its side effect: refused when wrapped."""

    @effect(kind)
    def charge(amount: int) -> None: ...

    with pytest.raises(RetryRefusedError, match="remote_idempotent=True") as info:
        with_retry(charge)
    assert "charge" in (info.value.tool or "")
    with pytest.raises(RetryRefusedError):
        retry()(charge)
    assert callable(with_retry(charge, remote_idempotent=True))


def test_read_and_untagged_tools_are_retried() -> None:
    """READ, IDEMPOTENT and untagged functions are retried as asked."""
    for fn in (effect(Effect.READ)(Flaky(ConnectionError())), Flaky(ConnectionError())):
        assert "ok" == with_retry(fn, config=FAST)()


def test_an_untagged_function_is_retried_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """DESIGN treats untagged as DESTRUCTIVE where a policy is chosen: the explicit wrap is
    obeyed, and the first retry of each untagged function says so once."""

    def untagged_lookup() -> str:
        raise ConnectionError

    @effect(Effect.READ)
    def tagged_lookup() -> str:
        raise ConnectionError

    with caplog.at_level(logging.WARNING, logger="retrysafe"):
        for fn in (untagged_lookup, untagged_lookup, tagged_lookup):
            with pytest.raises(RetryExhausted):
                with_retry(fn, config=FAST)()
    noted = [r for r in caplog.records if "is untagged and retried" in r.getMessage()]
    assert 1 == len(noted)
    assert "untagged_lookup" in noted[0].getMessage()
    assert noted[0].retrysafe_tool.endswith("untagged_lookup")  # type: ignore[attr-defined]


def test_decorator_forms() -> None:
    """@retry, @retry(), @retry(config) and @retry(**overrides) all work."""

    @retry
    def a() -> int:
        return 1

    @retry()
    def b() -> int:
        return 2

    @retry(FAST)
    def c() -> int:
        return 3

    @retry(max_attempts=7)
    def d() -> int:
        return 4

    assert (1, 2, 3, 4) == (a(), b(), c(), d())
    assert 7 == d.retry_config.max_attempts  # type: ignore[attr-defined]


def test_the_posts_refund_pattern_runs_as_written() -> None:
    """with_retry(refund_order, config=RetryConfig(max_attempts=3, base_delay=1.0, jitter=True))."""
    flaky = Flaky(TimeoutError())

    def refund_order(order_id: str) -> str:
        return flaky(order_id)

    with retries_disabled_waits():
        safe = with_retry(
            refund_order, config=RetryConfig(max_attempts=3, base_delay=1.0, jitter=True)
        )
        assert "ok" == safe("ord_1")
    assert 2 == flaky.calls


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"base_delay": -1}, "base_delay"),
        ({"base_delay": float("nan")}, "base_delay"),
        ({"max_delay": 0.5, "base_delay": 1}, "max_delay"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"deadline": 0}, "deadline"),
        ({"attempt_timeout": -2}, "attempt_timeout"),
        ({"jitter": "wild"}, "jitter"),
        ({"retry_on": 42}, "retry_on"),
        ({"budget": 3}, "budget"),
    ],
)
def test_config_validation(kwargs: dict[str, Any], message: str) -> None:
    """Bad settings fail when the config is built, naming the field."""
    with pytest.raises((ValueError, TypeError), match=message):
        RetryConfig(**kwargs)


def test_config_is_immutable() -> None:
    """RetryConfig cannot be changed in place; replace() makes a validated copy."""
    with pytest.raises(AttributeError):
        FAST.max_attempts = 9  # type: ignore[misc]
    assert 9 == FAST.replace(max_attempts=9).max_attempts
    with pytest.raises(ValueError):
        FAST.replace(max_attempts=-1)


# --- the iterator form ---------------------------------------------------------------------


def test_iterator_form_sync() -> None:
    """for attempt in retrying(): with attempt: ... retries the block."""
    flaky = Flaky(ConnectionError(), ConnectionError())
    numbers = []
    for attempt in retrying(FAST):
        with attempt:
            numbers.append(attempt.number)
            result = flaky()
    assert "ok" == result
    assert [1, 2, 3] == numbers


def test_iterator_form_exhausts_and_propagates() -> None:
    """Out of attempts: RetryExhausted; a non-retryable error: itself."""
    with pytest.raises(RetryExhausted):
        for attempt in retrying(FAST.replace(max_attempts=2)):
            with attempt:
                raise ConnectionError()
    with pytest.raises(KeyError):
        for attempt in retrying(FAST):
            with attempt:
                raise KeyError("x")


@pytest.mark.anyio
async def test_iterator_form_async_with_attempt_timeout() -> None:
    """async for attempt in retrying(): the attempt timeout applies inside `with attempt:`."""
    numbers = []
    async for attempt in retrying(FAST.replace(attempt_timeout=0.05)):
        with attempt:
            numbers.append(attempt.number)
            if attempt.number == 1:
                await anyio.sleep(10)
    assert [1, 2] == numbers


@pytest.mark.anyio
async def test_iterator_form_async_cancellation_passes_through() -> None:
    """Outer cancellation inside `with attempt:` is not turned into a retry."""
    attempts = 0
    with anyio.move_on_after(0.05):
        async for attempt in retrying(FAST.replace(attempt_timeout=5)):
            with attempt:
                attempts += 1
                await anyio.sleep(10)
    assert 1 == attempts


# --- a budget shared through a store ---------------------------------------------------------


def _shared_budget(store: Any, name: str) -> RetryBudget:
    return RetryBudget(max_tokens=4, token_ratio=1, store=store, name=name)


def test_budget_shared_through_a_store(store: Any) -> None:
    """Two budgets with one name on one store (two processes) drain one bucket."""
    name = f"b-{uuid.uuid4().hex[:6]}"
    a, b = _shared_budget(store, name), _shared_budget(store, name)
    assert a.record_failure()  # 4 -> 3
    assert not b.record_failure()  # 3 -> 2: the other "process" sees the drain
    assert 2.0 == a.tokens == b.tokens
    b.record_success()
    assert 3.0 == a.tokens
    config = FAST.replace(max_attempts=10, budget=a)
    flaky = Flaky(ConnectionError("one"), ConnectionError("two"))
    with pytest.raises(ConnectionError, match="one"):
        with_retry(flaky, config=config)()  # 3 -> 2: at half, so not even one retry
    assert 1 == flaky.calls


@pytest.mark.anyio
async def test_budget_shared_async(astore: Any) -> None:
    """The async retry path uses the store's async operations."""
    budget = _shared_budget(astore, f"b-{uuid.uuid4().hex[:6]}")
    flaky = Flaky(ConnectionError("one"), ConnectionError("two"), ConnectionError("three"))
    with pytest.raises(ConnectionError, match="two"):
        await with_retry(flaky.acall, config=FAST.replace(max_attempts=10, budget=budget))()
    assert 2 == flaky.calls


def test_budget_shared_with_another_process(redis_url: str) -> None:
    """A separate process drains the bucket; this one then refuses to retry."""
    name = f"b-{uuid.uuid4().hex[:6]}"
    prefix = f"test-{uuid.uuid4().hex[:6]}"
    code = (
        "from retrysafe import RetryBudget; from retrysafe.stores import RedisStore;"
        f"b = RetryBudget(max_tokens=4, token_ratio=1, store=RedisStore({redis_url!r}, prefix={prefix!r}), name={name!r});"
        "b.record_failure(); b.record_failure()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)
    from retrysafe.stores import RedisStore

    store = RedisStore(redis_url, prefix=prefix)
    try:
        budget = _shared_budget(store, name)
        assert 2.0 == budget.tokens
        flaky = Flaky(ConnectionError("first"))
        with pytest.raises(ConnectionError, match="first"):
            with_retry(flaky, config=FAST.replace(budget=budget))()
        assert 1 == flaky.calls
    finally:
        store.clear("")
        store.close()


def test_budget_falls_back_when_the_store_fails(caplog: pytest.LogCaptureFixture) -> None:
    """An unreachable shared store: the process keeps its own bucket and says so once."""
    from retrysafe.stores import RedisStore

    dead = RedisStore("redis://127.0.0.1:1/0")
    budget = RetryBudget(max_tokens=4, token_ratio=1, store=dead)
    assert budget.record_failure()
    assert not budget.record_failure()
    assert 1 == sum("store failed" in r.getMessage() for r in caplog.records)
    dead.close()


@pytest.mark.parametrize(("policy", "allowed"), [("local", 2), ("open", 6), ("closed", 0)])
def test_budget_store_failure_follows_on_store_error(
    policy: str, allowed: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A shared budget whose Redis is down: "local" spends this process's bucket (retries
    while more than half of 6 tokens remain), "open" allows every retry, "closed" none; one
    log line for the outage."""
    import logging
    import socket

    from retrysafe.stores import RedisStore

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    budget = RetryBudget(
        max_tokens=6,
        store=RedisStore(f"redis://127.0.0.1:{dead}/0"),
        on_store_error=policy,  # type: ignore[arg-type]
    )
    with caplog.at_level(logging.WARNING, logger="retrysafe"):
        verdicts = [budget.record_failure() for _ in range(6)]
    assert allowed == sum(verdicts)
    assert 1 == sum("store failed" in r.getMessage() for r in caplog.records)
