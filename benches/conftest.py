from __future__ import annotations

import os
import time
from typing import Any, Callable

import pytest


@pytest.fixture(params=["asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Benchmarks time one backend: asyncio (the anchors are asyncio-only)."""
    return str(request.param)


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("REDIS_URL not set (run through `make bench`)")
    return url


def measure(benchmark: Any, fn: Callable[..., Any], *args: Any, rounds: int = 40) -> Any:
    """Benchmark ``fn(*args)`` in calibrated batches (~2 ms per round): single sub-microsecond
    calls are below the timer's resolution. Reported times are per call."""
    start = time.perf_counter()
    n = 0
    while time.perf_counter() - start < 0.01:
        fn(*args)
        n += 1
    per_call = (time.perf_counter() - start) / n
    iterations = max(1, int(0.002 / per_call))
    return benchmark.pedantic(fn, args=args, iterations=iterations, rounds=rounds, warmup_rounds=2)
