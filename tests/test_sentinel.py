"""A Sentinel-managed client: RedisStore serves sync and asyncio callers through the same
sentinels (a real redis-server and a real redis-sentinel on free loopback ports)."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
import redis.sentinel

from retrysafe import Effect, idempotent, session
from retrysafe.stores import RedisStore

from .redis_clients import wait_for_server
from .test_cache import _free_port


@pytest.fixture
def sentinel_client(tmp_path: Path) -> Iterator[redis.Redis]:
    """A master and a sentinel watching it; the client is ``master_for("retrysafe")``."""
    binary = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run the suite through `make test`")
    master_port, sentinel_port = _free_port(), _free_port()
    master = subprocess.Popen(
        [binary, "--port", str(master_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_server(master_port)
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\n"
        f"sentinel monitor retrysafe 127.0.0.1 {master_port} 1\n"
    )
    sentinel = subprocess.Popen(
        [binary, str(config), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for_server(sentinel_port)
    manager = redis.sentinel.Sentinel([("127.0.0.1", sentinel_port)], socket_timeout=2)
    client = manager.master_for("retrysafe", socket_timeout=2)
    try:
        yield client
    finally:
        client.close()
        for proc in (sentinel, master):
            proc.terminate()
            proc.wait(10)


def test_a_sentinel_client_serves_sync_and_asyncio(sentinel_client: redis.Redis) -> None:
    """Records and cache entries through a Sentinel client, from sync code and from asyncio
    (whose client is built from the same sentinels, not from a fixed host)."""
    store = RedisStore(sentinel_client, prefix="sentinel")
    charges: list[int] = []

    @idempotent(store=store, effect=Effect.WRITE)
    async def charge(amount: int) -> int:
        charges.append(amount)
        return amount

    store.set("k", {"v": 1}, 10)

    async def main() -> None:
        assert {"v": 1} == await store.aget("k")
        async with session("conversation-1"):
            assert 5 == await charge(5)
            assert 5 == await charge(5)
        await store.aclose()

    anyio.run(main)
    assert [5] == charges
    assert "sentinel" in repr(store)
    store.close()
    gc.collect()  # a connection aclose() left open would warn (an error) here, not later


def _start(binary: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextmanager
def _failover_topology(tmp_path: Path) -> Iterator[tuple[Any, redis.Redis, Any, int, int]]:
    """A master with one replica (connected) and a sentinel that fails over after 400 ms:
    (the sentinel manager, its master client, the master's process, master and replica
    ports)."""
    binary = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run the suite through `make test`")
    ports = [_free_port() for _ in range(3)]
    master_port, replica_port, sentinel_port = ports
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    master = _start(
        binary, "--port", str(master_port), "--dir", str(tmp_path), *common,
        "--repl-diskless-sync-delay", "0",  # (5 s by default: a replica's first sync waits)
    )  # fmt: skip
    wait_for_server(master_port)
    (tmp_path / "replica").mkdir()
    replica = _start(
        binary, "--port", str(replica_port), "--dir", str(tmp_path / "replica"),
        "--replicaof", "127.0.0.1", str(master_port), *common,
    )  # fmt: skip
    wait_for_server(replica_port)
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\n"
        f"sentinel monitor retrysafe 127.0.0.1 {master_port} 1\n"
        "sentinel down-after-milliseconds retrysafe 400\n"
        "sentinel failover-timeout retrysafe 3000\n"
    )
    sentinel = _start(binary, str(config), "--sentinel")
    wait_for_server(sentinel_port)
    manager = redis.sentinel.Sentinel([("127.0.0.1", sentinel_port)], socket_timeout=1)
    client = manager.master_for("retrysafe", socket_timeout=1)
    try:
        # Synced, not only connected: until its first full sync ends a replica acknowledges
        # nothing (every WAIT times out) and a failover would lose what it has not loaded.
        deadline = time.monotonic() + 20
        while (
            redis.Redis(port=master_port).info("replication").get("slave0", {}).get("state")
            != "online"
            or redis.Redis(port=replica_port).info("replication")["master_link_status"] != "up"
        ):
            assert time.monotonic() < deadline, "the replica never synced"
            time.sleep(0.05)
        yield manager, client, master, master_port, replica_port
    finally:
        client.close()
        for proc in (sentinel, replica, master):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)


def _waits(port: int) -> int:
    """How many WAIT commands the server at ``port`` has run."""
    return int(redis.Redis(port=port).info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


@pytest.mark.parametrize("caller", ["sync", "asyncio"])
def test_a_sentinel_failover_replays_completed_writes(tmp_path: Path, caller: str) -> None:
    """A master with one replica and a sentinel; writes complete (each waits for the replica:
    from asyncio, concurrent writes share one WAIT per batch), the master is SIGKILLed, the
    sentinel promotes the replica. During the switch callers get StoreError (never a raw
    redis-py error, never a run); after it, every completed write is replayed from the
    promoted replica and none runs again."""
    with _failover_topology(tmp_path) as (manager, client, master, master_port, replica_port):
        store = RedisStore(client, prefix="failover")
        runs: list[int] = []

        @idempotent(store=store, effect=Effect.WRITE)
        async def acharge(customer: int) -> int:
            runs.append(customer)
            return customer * 100

        @idempotent(store=store, effect=Effect.WRITE)
        def charge(customer: int) -> int:
            runs.append(customer)
            return customer * 100

        async def concurrently(customers: range) -> list[int]:
            return list(await asyncio.gather(*(acharge(c) for c in customers)))

        loop = asyncio.new_event_loop()

        def calls(customers: range) -> list[int]:
            if caller == "sync":
                return [charge(c) for c in customers]
            return loop.run_until_complete(concurrently(customers))

        try:
            with session("failover"):
                assert [2000] == calls(range(20, 21))  # (learns that the master has a replica)
                before = _waits(master_port)
                assert [c * 100 for c in range(20)] == calls(range(20))
                waits = _waits(master_port) - before
                # A claim and a completion each wait for the replica: alone 40 WAITs; batched,
                # one per batch of claims or completions.
                assert (waits == 40) if caller == "sync" else (1 <= waits < 20), waits
                master.kill()
                master.wait(10)
                errors: set[str] = set()
                deadline = time.monotonic() + 30
                while True:
                    try:
                        assert [0] == calls(range(1))
                        break
                    except Exception as error:
                        errors.add(type(error).__name__)
                        assert time.monotonic() < deadline, f"no failover in 30 s: {errors}"
                        time.sleep(0.1)
                assert errors <= {"StoreError"}
                assert [c * 100 for c in range(20)] == calls(range(20))
            assert [20, *range(20)] == sorted(runs[:1]) + sorted(runs[1:])  # each ran once
            promoted = manager.discover_master("retrysafe")
            assert replica_port == promoted[1]
        finally:
            loop.run_until_complete(store.aclose())
            loop.close()
            store.close()
