from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture(params=["asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Benchmarks time one backend: asyncio (the anchors are asyncio-only)."""
    return str(request.param)


def _server_url(variable: str) -> str:
    """The URL of a server `make bench` started, from `variable`; skipped outside it."""
    url = os.environ.get(variable)
    if not url:
        pytest.skip(f"{variable} not set (run through `make bench`)")
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _server_url("REDIS_URL")


@pytest.fixture(scope="session")
def redis_cluster_url() -> str:
    return _server_url("REDIS_CLUSTER_URL")


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


def _batch_seconds(fn: Callable[[], Any], iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    return time.perf_counter() - start


def _pairing(
    ours: Callable[[], Any], theirs: Callable[[], Any]
) -> tuple[Callable[[], None], list[float]]:
    """A round of paired batches (~2 ms of each, back to back, the order alternating from
    one round to the next) and the list its ratios time(ours) / time(theirs) go to."""
    per_call = max(_batch_seconds(ours, 50), _batch_seconds(theirs, 50)) / 50
    iterations = max(1, int(0.002 / per_call))
    ratios: list[float] = []

    def round_() -> None:
        if len(ratios) % 2:
            b, a = _batch_seconds(theirs, iterations), _batch_seconds(ours, iterations)
        else:
            a, b = _batch_seconds(ours, iterations), _batch_seconds(theirs, iterations)
        ratios.append(a / b)

    return round_, ratios


def median(ratios: list[float]) -> float:
    """The middle of `ratios` (the upper one of an even count); sorts them in place."""
    ratios.sort()
    return ratios[len(ratios) // 2]


def paired_ratio(benchmark: Any, ours: Callable[[], Any], theirs: Callable[[], Any]) -> float:
    """Median over 41 rounds of time(ours) / time(theirs), each round one ~2 ms batch of
    each, back to back, in alternating order: a burst of this machine's noise (runs
    of one contender alone swing 2x) falls on both sides of a round. The benchmark
    fixture times the rounds; the ratio goes to extra_info['paired_ratio']."""
    round_, ratios = _pairing(ours, theirs)
    benchmark.pedantic(round_, rounds=41, warmup_rounds=2)
    ratio = median(ratios)
    benchmark.extra_info["paired_ratio"] = round(ratio, 3)
    return ratio


def paired_median(ours: Callable[[], Any], theirs: Callable[[], Any]) -> float:
    """:func:`paired_ratio`'s figure (the same rounds, the warm-up ones included) without
    the benchmark fixture: for a second pairing within one benchmark."""
    round_, ratios = _pairing(ours, theirs)
    for _ in range(2 + 41):
        round_()
    return median(ratios)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return _server_url("POSTGRES_URL")
