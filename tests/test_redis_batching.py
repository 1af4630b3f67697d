"""RedisStore's batching on one server (asyncio): concurrent tasks' commands share round
trips, yet each caller gets its own reply or its own error, a broken connection is resent
by each caller, a server that lost its scripts gets them again, and a caller cancelled
before its batch left never sends its command. Real redis-server."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis

from retrysafe import StoreError, idempotent, session
from retrysafe.stores import RedisStore


def _store(redis_url: str) -> RedisStore:
    return RedisStore(redis_url, prefix=f"batch-{uuid.uuid4().hex[:8]}")


def _clients(raw: redis.Redis, name: str) -> int:
    """Connections open under ``name`` (other tests' background threads open their own)."""
    return sum(1 for client in raw.client_list() if client.get("name") == name)


async def _done(store: RedisStore) -> None:
    await store.aclose()
    store.clear("")
    store.close()


def test_concurrent_reads_share_one_connection(redis_url: str) -> None:
    """200 concurrent cache writes, then reads, of one process: each gets its own value, over
    two connections (the first command of each goes out alone, the other 199 queue behind
    it in one batch), where a command per task would open up to 64."""
    raw = redis.Redis.from_url(redis_url)
    name = f"batching-{uuid.uuid4().hex[:8]}"

    async def main() -> tuple[list[Any], int]:
        store = _store(f"{redis_url}?client_name={name}")
        try:
            await asyncio.gather(*(store.aset(f"k{i}", {"i": i}, 60) for i in range(200)))
            got = await asyncio.gather(*(store.aget(f"k{i}") for i in range(200)))
            return got, _clients(raw, name)
        finally:
            await _done(store)

    got, opened = asyncio.run(main())
    raw.close()
    assert [{"i": i} for i in range(200)] == got
    assert 1 <= opened <= 3, opened  # (2, and a sync client's if one was made)


def test_an_error_reply_fails_its_own_caller_only(redis_url: str) -> None:
    """A command whose reply is an error (a key of the wrong type) in a batch with 99 others:
    its caller gets a StoreError naming it, every other caller its value."""
    raw = redis.Redis.from_url(redis_url)

    async def main() -> list[Any]:
        store = _store(redis_url)
        try:
            for i in range(100):
                await store.aset(f"k{i}", i, 60)
            raw.delete(store._key("k50"))
            raw.lpush(store._key("k50"), "a list, not a string")
            return await asyncio.gather(
                *(store.aget(f"k{i}") for i in range(100)), return_exceptions=True
            )
        finally:
            await _done(store)

    got = asyncio.run(main())
    raw.close()
    assert isinstance(got[50], StoreError) and "WRONGTYPE" in str(got[50]), got[50]
    assert list(range(50)) + list(range(51, 100)) == got[:50] + got[51:]


def test_a_broken_connection_is_resent_by_each_caller(redis_url: str) -> None:
    """The server closes the store's connections between two batches: the next batch fails
    as a whole, and each of its callers resends on a fresh connection (reads and the
    record scripts alike); nothing is charged twice."""
    raw = redis.Redis.from_url(redis_url)
    runs: list[str] = []

    async def main() -> tuple[list[Any], list[Any]]:
        store = _store(redis_url)

        @idempotent(store=store, effect="write", scope="batch.charge")
        async def charge(order: str) -> str:
            runs.append(order)
            return f"charged {order}"

        try:
            async with session("s"):
                await asyncio.gather(*(charge(f"o{i}") for i in range(50)))
                await store.aset("k", "v", 60)
                raw.client_kill_filter(_type="normal", skipme=True)
                reads = await asyncio.gather(*(store.aget("k") for _ in range(50)))
                raw.client_kill_filter(_type="normal", skipme=True)
                replays = await asyncio.gather(*(charge(f"o{i}") for i in range(50)))
            return reads, replays
        finally:
            await _done(store)

    reads, replays = asyncio.run(main())
    raw.close()
    assert ["v"] * 50 == reads
    assert [f"charged o{i}" for i in range(50)] == replays
    assert sorted(runs) == sorted(f"o{i}" for i in range(50))  # each charged once


def test_scripts_a_server_lost_are_loaded_again(redis_url: str) -> None:
    """SCRIPT FLUSH (a restarted server, a failover to a replica without them): the batched
    EVALSHA replies NOSCRIPT, and each call loads its script and runs once."""
    raw = redis.Redis.from_url(redis_url)
    runs: list[str] = []

    async def main() -> list[str]:
        store = _store(redis_url)

        @idempotent(store=store, effect="write", scope="batch.charge")
        async def charge(order: str) -> str:
            runs.append(order)
            return order

        try:
            async with session("s"):
                await charge("warm")
                raw.script_flush()
                return await asyncio.gather(*(charge(f"o{i}") for i in range(40)))
        finally:
            await _done(store)

    done = asyncio.run(main())
    raw.close()
    assert [f"o{i}" for i in range(40)] == done
    assert ["warm", *sorted(f"o{i}" for i in range(40))] == ["warm", *sorted(runs[1:])]


def test_a_caller_cancelled_before_its_batch_left_sends_nothing(redis_url: str) -> None:
    """Tasks that queued their writes behind a command in flight and were cancelled before
    the loop's next turn: their batch is empty and nothing reaches the server; the command
    in flight and later ones are unaffected."""
    raw = redis.Redis.from_url(redis_url)

    async def main() -> tuple[list[Any], Any]:
        store = _store(redis_url)
        try:
            await store.aset("warm", 1, 60)  # the loop's client and its connection exist
            # A command in flight first (one sent while none is goes out at once), then 20
            # that queue behind it.
            reading = asyncio.ensure_future(store.aget("warm"))
            tasks = [asyncio.ensure_future(store.aset(f"c{i}", i, 60)) for i in range(20)]
            await asyncio.sleep(0)  # each task ran up to its queued command
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(isinstance(r, asyncio.CancelledError) for r in results), results
            await asyncio.sleep(0.05)
            left = [raw.exists(store._key(f"c{i}")) for i in range(20)]
            assert 1 == await reading
            await store.aset("after", 2, 60)
            return left, await store.aget("after")
        finally:
            await _done(store)

    left, after = asyncio.run(main())
    raw.close()
    assert [0] * 20 == left
    assert 2 == after


@pytest.mark.parametrize("tasks", [1, 7, 300])
def test_every_caller_gets_its_own_reply_at_any_concurrency(redis_url: str, tasks: int) -> None:
    """One task alone (sent as is), a few, and more than one batch holds (256): replies
    never cross callers."""

    async def main() -> list[Any]:
        store = _store(redis_url)
        try:
            await asyncio.gather(
                *(store.aset(f"k{i}", [i, "x" * (i % 7)], 60) for i in range(tasks))
            )
            return await asyncio.gather(*(store.aget(f"k{i}") for i in range(tasks)))
        finally:
            await _done(store)

    assert [[i, "x" * (i % 7)] for i in range(tasks)] == asyncio.run(main())


def test_a_wait_that_errs_fails_no_caller(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The WAIT ending a batch of writes answered with an error (a master demoted meanwhile
    says WAIT cannot be used on a replica): it counts as no replica, logged once; the batch's
    callers keep their own replies."""
    store = _store(redis_url)
    try:
        error = redis.ResponseError("ERR WAIT cannot be used with replica instances")
        store._acked(error)
        store._acked(error)
        store._acked(1)
    finally:
        store.close()
    warned = [r for r in caplog.records if "no Redis replica confirmed" in r.getMessage()]
    assert 1 == len(warned)
