"""Cache speed against the anchors, in one run.

Targets (issue 3):
- hit overhead of an async tool taking a small dict (per call, minus a bare await), memory:
  <= 0.5 x async-lru keyed by orjson+sha256, and <= 0.1 x aiocache and cashews;
- 1,000 concurrent identical misses of a 50 ms function: one execution, total time <= the
  floor + 10 ms (the floor: the same 1,000 tasks sharing one hand-made result);
- Redis hit: <= 1.2 x a bare redis.asyncio GET of the same value.
`python benches/ratios.py <json> --baseline bare` prints the overheads.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import orjson
import pytest
from aiocache import cached as aio_cached
from async_lru import alru_cache
from cashews import Cache as CashewsCache

from retrysafe import cache_tool
from retrysafe.stores import RedisStore

logging.getLogger("aiocache").setLevel(logging.CRITICAL)

ARGS = {"customer_id": "cus_123", "amount_cents": 4200, "currency": "usd"}
RESULT = {"ok": True, "balance": 4200}
BATCH = 1000


def orjson_sha256_key(*args: Any, **kwargs: Any) -> str:
    return hashlib.sha256(orjson.dumps([args, kwargs], option=orjson.OPT_SORT_KEYS)).hexdigest()


async def tool(args: dict[str, Any]) -> dict[str, Any]:
    return RESULT


_cashews = CashewsCache()
_cashews.setup("mem://?size=10000")

HITS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "bare": tool,
    "retrysafe": cache_tool(ttl_seconds=300, max_size=512)(tool),
    "async-lru key=orjson+sha256": alru_cache(maxsize=1024, ttl=60, key=orjson_sha256_key)(tool),
    "aiocache @cached": aio_cached(ttl=60)(tool),
    "cashews @cache": _cashews(ttl=60)(tool),
}


def _run_batch(fn: Callable[[dict[str, Any]], Any], loop: asyncio.AbstractEventLoop) -> int:
    async def batch() -> int:
        n = 0
        for _ in range(BATCH):
            n += (await fn(ARGS)) is not None
        return n

    return loop.run_until_complete(batch())


@pytest.mark.parametrize("name", list(HITS))
def test_cache_hit_overhead(benchmark: Any, name: str) -> None:
    loop = asyncio.new_event_loop()
    try:
        fn = HITS[name]
        _run_batch(fn, loop)  # the first call fills the cache
        benchmark.group = f"cache-hit per {BATCH} calls (memory)"
        assert BATCH == benchmark(_run_batch, fn, loop)
    finally:
        loop.close()


async def _floor_run() -> int:
    """1,000 tasks, the first sets an event after 50 ms, all read its result."""
    event = anyio.Event()
    box: list[Any] = []
    got: list[Any] = []

    async def first() -> None:
        await anyio.sleep(0.05)
        box.append(RESULT)
        event.set()

    async def other() -> None:
        await event.wait()
        got.append(box[0])

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        for _ in range(999):
            tg.start_soon(other)
    return len(got) + 1


async def _cached_run(counter: list[int]) -> int:
    @cache_tool(ttl_seconds=300)
    async def slow(args: dict[str, Any]) -> dict[str, Any]:
        counter.append(1)
        await anyio.sleep(0.05)
        return RESULT

    got: list[Any] = []

    async def one() -> None:
        got.append(await slow(ARGS))

    async with anyio.create_task_group() as tg:
        for _ in range(1000):
            tg.start_soon(one)
    return len(got)


def test_stampede_paired(benchmark: Any) -> None:
    """Floor and retrysafe rounds alternated (this machine's noise swings the floor by
    10 ms between runs): extra_info['median_extra_ms'] is the median paired difference."""
    executions: list[int] = []
    diffs: list[float] = []

    def pair() -> None:
        start = time.perf_counter()
        assert 1000 == anyio.run(_floor_run)
        floor = time.perf_counter() - start
        start = time.perf_counter()
        before = len(executions)
        assert 1000 == anyio.run(_cached_run, executions)
        diffs.append(time.perf_counter() - start - floor)
        assert 1 == len(executions) - before

    benchmark.group = "stampede: 1,000 identical misses of a 50 ms call"
    benchmark.pedantic(pair, rounds=21, warmup_rounds=1)
    diffs.sort()
    benchmark.extra_info["median_extra_ms"] = round(diffs[len(diffs) // 2] * 1000, 2)
    print(
        f"\nstampede: retrysafe - floor, median of 21 pairs: {benchmark.extra_info['median_extra_ms']} ms"
    )


def test_stampede_floor(benchmark: Any) -> None:
    """The floor alone (absolute times; compare with the paired figure above)."""
    benchmark.group = "stampede: 1,000 identical misses of a 50 ms call"
    assert 1000 == benchmark.pedantic(lambda: anyio.run(_floor_run), rounds=15, warmup_rounds=1)


def test_stampede_retrysafe(benchmark: Any) -> None:
    """retrysafe alone: one execution per run."""
    executions: list[int] = []
    benchmark.group = "stampede: 1,000 identical misses of a 50 ms call"
    assert 1000 == benchmark.pedantic(
        lambda: anyio.run(_cached_run, executions), rounds=15, warmup_rounds=1
    )
    assert 16 == len(executions)  # one per run


@pytest.fixture(scope="module")
def redis_setup(redis_url: str) -> Any:
    import redis

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    store = RedisStore(redis_url, prefix=prefix)
    cached = cache_tool(store=store, ttl_seconds=300)(tool)
    raw_key = f"{prefix}:raw"
    redis.Redis.from_url(redis_url).set(raw_key, orjson.dumps(RESULT))
    yield store, cached, raw_key
    store.clear("")
    redis.Redis.from_url(redis_url).delete(raw_key)
    store.close()


@pytest.mark.parametrize("name", ["bare GET", "retrysafe"])
def test_redis_hit(benchmark: Any, name: str, redis_setup: Any, redis_url: str) -> None:
    import redis.asyncio

    store, cached, raw_key = redis_setup
    loop = asyncio.new_event_loop()
    client = redis.asyncio.Redis.from_url(redis_url)

    async def bare(args: dict[str, Any]) -> Any:
        return orjson.loads(await client.get(raw_key))

    fn = bare if name == "bare GET" else cached

    async def batch() -> int:
        n = 0
        for _ in range(200):
            n += (await fn(ARGS)) == RESULT
        return n

    try:
        loop.run_until_complete(batch())
        benchmark.group = "redis hit per 200 calls"
        assert 200 == benchmark.pedantic(
            lambda: loop.run_until_complete(batch()), rounds=20, warmup_rounds=2
        )
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(store.aclose())
        loop.close()


def test_cluster_hit_paired(benchmark: Any, redis_cluster_url: str) -> None:
    """A cache hit on a Redis Cluster against a bare asyncio RedisCluster GET of the same
    value, both at 200 concurrent tasks in one process, in alternating pairs (target
    <= 1.2)."""
    import redis.asyncio.cluster

    from .conftest import paired_ratio

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    store = RedisStore(redis_cluster_url, prefix=prefix)
    cached = cache_tool(store=store, ttl_seconds=300)(tool)
    loop = asyncio.new_event_loop()
    client = redis.asyncio.cluster.RedisCluster.from_url(
        redis_cluster_url.replace("+cluster", "", 1), max_connections=256
    )
    raw_key = f"{prefix}:raw"

    async def bare(args: dict[str, Any]) -> Any:
        return orjson.loads(await client.get(raw_key))

    def concurrently(fn: Any) -> Callable[[], Any]:
        async def run() -> None:
            results = await asyncio.gather(*(fn(ARGS) for _ in range(200)))
            assert all(r == RESULT for r in results)

        return lambda: loop.run_until_complete(run())

    try:
        loop.run_until_complete(client.set(raw_key, orjson.dumps(RESULT)))
        loop.run_until_complete(cached(ARGS))
        benchmark.group = "redis cluster hit, 200 concurrent tasks: paired with a bare GET"
        ratio = paired_ratio(benchmark, concurrently(cached), concurrently(bare))
        benchmark.extra_info["target"] = 1.2
        print(f"\ncluster hit / bare RedisCluster GET = {ratio:.3f} (target <= 1.2)")
    finally:
        loop.run_until_complete(client.delete(raw_key))
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(store.aclose())
        store.clear("")
        store.close()
        loop.close()
