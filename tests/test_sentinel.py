"""A Sentinel-managed client: RedisStore serves sync and asyncio callers through the same
sentinels (a real redis-server and a real redis-sentinel on free loopback ports)."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

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


def test_a_sentinel_failover_replays_completed_writes(tmp_path: Path) -> None:
    """A master with one replica and a sentinel; writes complete (each waits for the replica),
    the master is SIGKILLed, the sentinel promotes the replica. During the switch callers get
    StoreError (never a raw redis-py error, never a run); after it, every completed write is
    replayed from the promoted replica and none runs again."""
    binary = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run the suite through `make test`")
    ports = [_free_port() for _ in range(3)]
    master_port, replica_port, sentinel_port = ports
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    master = _start(binary, "--port", str(master_port), "--dir", str(tmp_path), *common)
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
    store = RedisStore(client, prefix="failover")
    runs: list[int] = []

    @idempotent(store=store, effect=Effect.WRITE)
    def charge(customer: int) -> int:
        runs.append(customer)
        return customer * 100

    try:
        deadline = time.monotonic() + 10
        while redis.Redis(port=master_port).info("replication")["connected_slaves"] < 1:
            assert time.monotonic() < deadline, "the replica never connected"
            time.sleep(0.05)
        with session("failover"):
            for customer in range(20):
                assert customer * 100 == charge(customer)
            master.kill()
            master.wait(10)
            errors: set[str] = set()
            deadline = time.monotonic() + 30
            while True:
                try:
                    assert 0 == charge(0)
                    break
                except Exception as error:
                    errors.add(type(error).__name__)
                    assert time.monotonic() < deadline, f"no failover in 30 s: {errors}"
                    time.sleep(0.1)
            assert errors <= {"StoreError"}
            assert [c * 100 for c in range(20)] == [charge(c) for c in range(20)]
        assert list(range(20)) == runs  # each write ran once, before the kill
        promoted = manager.discover_master("retrysafe")
        assert replica_port == promoted[1]
    finally:
        store.close()
        client.close()
        for proc in (sentinel, replica, master):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
