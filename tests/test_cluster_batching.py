"""RedisStore on a Redis Cluster with replicas (asyncio): the record writes of concurrent
tasks (claims, completions) share a worker thread's hop and, per node, one pipeline that
one WAIT ends, on the connection that wrote them; each caller still gets its own reply or
its own error, and a broken connection is resent by each caller. Real 6-node cluster."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
import redis.cluster

from retrysafe import StoreError, idempotent, session
from retrysafe.stores import RedisStore


def _ports() -> list[int]:
    ports = os.environ.get("REDIS_CLUSTER_PORTS", "")
    if not ports:
        pytest.fail("REDIS_CLUSTER_PORTS is not set: run under scripts/with-redis-cluster.sh")
    return [int(p) for p in ports.replace(",", " ").split()]


def _waits() -> int:
    """WAIT commands run by every node of the cluster so far."""
    total = 0
    for port in _ports():
        stats = redis.Redis(port=port).info("commandstats")
        total += int(stats.get("cmdstat_wait", {}).get("calls", 0))
    return total


def _kill_connections() -> None:
    """Every node closes every client connection but the caller's."""
    for port in _ports():
        node = redis.Redis(port=port)
        node.client_kill_filter(_type="normal", skipme=True)
        node.close()


def _store(url: str) -> RedisStore:
    return RedisStore(url, prefix=f"cbatch-{uuid.uuid4().hex[:8]}")


async def _done(store: RedisStore) -> None:
    await store.aclose()
    store.clear("")
    store.close()


def _charger(store: RedisStore, runs: list[str]) -> Callable[[str], Awaitable[str]]:
    """An idempotent write that notes each order it charges in ``runs``."""

    @idempotent(store=store, effect="write", scope="cbatch.charge")
    async def charge(order: str) -> str:
        runs.append(order)
        return f"charged {order}"

    return charge


def test_concurrent_record_writes_share_one_wait_per_node_and_batch(
    redis_cluster_url: str,
) -> None:
    """100 concurrent first calls of an idempotent write: each charged once with its own
    result, every record replicated (each batch of a node ends with a WAIT), in far fewer
    WAITs than the 200 of one per claim and one per completion; then the 100 replays run
    nothing."""
    runs: list[str] = []

    async def main() -> tuple[list[str], int, list[str]]:
        store = _store(redis_cluster_url)
        charge = _charger(store, runs)
        try:
            async with session("s"):
                await charge("first")  # (learns which nodes have replicas)
                before = _waits()
                got = await asyncio.gather(*(charge(f"o{i}") for i in range(100)))
                waits = _waits() - before
                replays = await asyncio.gather(*(charge(f"o{i}") for i in range(100)))
            return list(got), waits, list(replays)
        finally:
            await _done(store)

    got, waits, replays = asyncio.run(main())
    expected = [f"charged o{i}" for i in range(100)]
    assert expected == got
    assert expected == replays
    assert sorted(runs) == sorted(["first", *(f"o{i}" for i in range(100))])
    assert 1 <= waits < 60, waits


def test_an_error_reply_fails_its_own_writer_only(redis_cluster_url: str) -> None:
    """A claim whose record key holds another type (the script fails with WRONGTYPE), in
    batches with 49 others spread over every node: its caller gets a StoreError naming it,
    every other caller its claim."""
    raw: Any = redis.cluster.RedisCluster.from_url(redis_cluster_url.replace("+cluster", ""))

    async def main() -> list[Any]:
        store = _store(redis_cluster_url)
        try:
            await store.aclaim("warm", "fp", "me", 30.0, 600.0, False)
            raw.lpush(store._record("k25"), "a list, not a record")
            return await asyncio.gather(
                *(store.aclaim(f"k{i}", "fp", "me", 30.0, 600.0, False) for i in range(50)),
                return_exceptions=True,
            )
        finally:
            raw.delete(store._record("k25"))
            await _done(store)

    got = asyncio.run(main())
    raw.close()
    assert isinstance(got[25], StoreError) and "WRONGTYPE" in str(got[25]), got[25]
    assert all(not isinstance(c, BaseException) and c.status == "claimed" for c in got[:25])
    assert all(not isinstance(c, BaseException) and c.status == "claimed" for c in got[26:])


def test_a_broken_connection_is_resent_by_each_writer(redis_cluster_url: str) -> None:
    """Every node closes the store's connections between two rounds of concurrent first
    calls: the next batches fail per node, each caller resends on a fresh connection, and
    nothing is charged twice."""
    runs: list[str] = []

    async def main() -> list[str]:
        store = _store(redis_cluster_url)
        charge = _charger(store, runs)
        try:
            async with session("s"):
                first = await asyncio.gather(*(charge(f"a{i}") for i in range(40)))
                _kill_connections()
                second = await asyncio.gather(*(charge(f"b{i}") for i in range(40)))
            return [*first, *second]
        finally:
            await _done(store)

    got = asyncio.run(main())
    orders = [f"a{i}" for i in range(40)] + [f"b{i}" for i in range(40)]
    assert [f"charged {o}" for o in orders] == got
    assert sorted(runs) == sorted(orders)  # each charged once
