"""Happy-path overhead of retry wrappers (the first attempt succeeds), sync and async.

Targets (issue 4): overhead <= 0.5 us above a bare call, and <= 0.05 x the overhead of
tenacity and stamina. Async calls are timed in batches of 1,000 awaits inside one running
asyncio loop (per-call figure = median / 1,000); every contender returns the same value.
Overheads: `python benches/ratios.py <json> --baseline bare`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import backoff
import pytest
import stamina
import tenacity
from llm_retry import RetryPolicy
from llm_retry import retry as llm_retry
from llm_retry import retry_async as llm_retry_async

from retrysafe import RetryConfig, with_retry

from .conftest import measure

stamina.instrumentation.set_on_retry_hooks([])
BATCH = 1000


class Transient(Exception):
    pass


def target_sync(x: int = 1) -> int:
    return x


async def target_async(x: int = 1) -> int:
    return x


_pred = lambda e: isinstance(e, Transient)  # noqa: E731
_policy = RetryPolicy(max_attempts=3)
_config = RetryConfig(max_attempts=3, base_delay=0.1, retry_on=Transient)
_tenacity = dict(
    stop=tenacity.stop_after_attempt(3),
    wait=tenacity.wait_random_exponential(multiplier=0.1, max=5),
    retry=tenacity.retry_if_exception_type(Transient),
    reraise=True,
)

SYNC: dict[str, Callable[[], int]] = {
    "bare": target_sync,
    "retrysafe": with_retry(target_sync, config=_config),
    "tenacity": tenacity.retry(**_tenacity)(target_sync),
    "stamina": stamina.retry(on=Transient, attempts=3)(target_sync),
    "backoff": backoff.on_exception(backoff.expo, Transient, max_tries=3, logger=None)(target_sync),
    "llm-retry-py": lambda: llm_retry(target_sync, policy=_policy, should_retry=_pred),
}

ASYNC: dict[str, Callable[[], Any]] = {
    "bare": target_async,
    "retrysafe": with_retry(target_async, config=_config),
    "tenacity": tenacity.retry(**_tenacity)(target_async),
    "stamina": stamina.retry(on=Transient, attempts=3)(target_async),
    "backoff": backoff.on_exception(backoff.expo, Transient, max_tries=3, logger=None)(
        target_async
    ),
    "llm-retry-py": lambda: llm_retry_async(target_async, policy=_policy, should_retry=_pred),
}


@pytest.mark.parametrize("name", list(SYNC))
def test_retry_overhead_sync(benchmark: Any, name: str) -> None:
    benchmark.group = "retry-sync per call"
    assert 1 == measure(benchmark, SYNC[name])


@pytest.mark.parametrize("name", list(ASYNC))
def test_retry_overhead_async(benchmark: Any, name: str) -> None:
    fn = ASYNC[name]

    async def batch() -> int:
        total = 0
        for _ in range(BATCH):
            total += await fn()
        return total

    loop = asyncio.new_event_loop()
    try:
        benchmark.group = f"retry-async per {BATCH} calls"
        assert BATCH == benchmark(lambda: loop.run_until_complete(batch()))
    finally:
        loop.close()
