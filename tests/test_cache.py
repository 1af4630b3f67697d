"""cache_tool on the memory store and a real Redis, on asyncio and trio."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from hypothesis import given

from retrysafe import FingerprintTypeError, MemoryStore, cache_tool
from retrysafe.stores import MISS, RedisStore, Store, resolve_store

from .redis_clients import delete_prefix, raw_client, wait_for_server
from .strategies import extended

ROOT = Path(__file__).resolve().parent.parent


class Counter:
    def __init__(self) -> None:
        self.calls = 0


# --- keys ----------------------------------------------------------------------------------


def test_binding_rules(store: Store) -> None:
    """f(1), f(x=1) and f(1, region="eu") are one call; f(1, region="") is another."""
    seen = Counter()

    @cache_tool(store=store)
    def f(x: int, region: str = "eu") -> str:
        seen.calls += 1
        return f"{x}-{region}"

    assert "1-eu" == f(1) == f(x=1) == f(1, region="eu") == f(region="eu", x=1)
    assert 1 == seen.calls
    assert "1-" == f(1, region="")
    assert 2 == seen.calls


def test_dict_order_and_number_forms_share_a_key(store: Store) -> None:
    """Argument dicts in any order and 1 vs 1.0 hit the same entry."""
    seen = Counter()

    @cache_tool(store=store)
    def search(filters: dict[str, Any]) -> int:
        seen.calls += 1
        return 7

    search({"a": 1, "b": [1, 2]})
    search({"b": [1.0, 2], "a": 1.0})
    assert 1 == seen.calls


@given(extended, extended)
def test_native_binding_equals_inspect_binding(a: Any, b: Any) -> None:
    """The native keyer and the inspect.signature path give the same key for every value."""

    def f(x: Any, y: Any = None, *, z: Any = 3) -> None: ...

    info = cache_tool(store=MemoryStore())(f).cache  # type: ignore[attr-defined]
    for args, kwargs in [((a,), {}), ((a, b), {}), ((), {"x": a, "z": b}), ((a,), {"y": b})]:
        assert info._slow_key(info._partition(), args, kwargs) == info._key(args, kwargs)


def test_varargs_and_custom_key(store: Store) -> None:
    """*args/**kwargs bind through inspect; key= picks what identifies a call."""
    seen = Counter()

    @cache_tool(store=store)
    def g(*parts: str, **opts: int) -> int:
        seen.calls += 1
        return len(parts)

    assert 2 == g("a", "b", n=1) == g("a", "b", n=1)
    assert 1 == seen.calls

    @cache_tool(store=store, key=lambda user, request_id: user)
    def profile(user: str, request_id: str) -> str:
        seen.calls += 1
        return user.upper()

    assert "ADA" == profile("ada", "r1") == profile("ada", "r2")
    assert 2 == seen.calls


def test_bad_arguments_raise_like_the_call() -> None:
    """A wrong call raises the TypeError the function would; an uncanonicalizable
    argument names its path."""

    @cache_tool
    def f(x: int) -> int:
        return x

    with pytest.raises(TypeError):
        f(1, 2)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        f(y=1)  # type: ignore[call-arg]
    with pytest.raises(FingerprintTypeError, match=r"at args\['x'\]\[0\]"):
        f([object()])  # type: ignore[arg-type]


def test_methods_share_the_cache_by_arguments() -> None:
    """On a method, self is not part of the key (like dogpile): key on state with key=."""
    seen = Counter()

    class Tools:
        @cache_tool
        def weather(self, city: str) -> str:
            seen.calls += 1
            return city.title()

    assert "Paris" == Tools().weather("paris") == Tools().weather(city="paris")
    assert 1 == seen.calls
    assert 1 == Tools.weather.cache.stats()["hits"]  # type: ignore[attr-defined]


# --- values --------------------------------------------------------------------------------


def test_none_is_a_hit_and_exceptions_are_not_cached(store: Store) -> None:
    """A cached None is served; an exception is not stored and the next call runs again."""
    seen = Counter()

    @cache_tool(store=store)
    def maybe(x: int) -> None:
        seen.calls += 1
        if x < 0:
            raise ValueError("negative")
        return None

    assert maybe(1) is None
    assert maybe(1) is None
    assert 1 == seen.calls
    for _ in range(2):
        with pytest.raises(ValueError):
            maybe(-1)
    assert 3 == seen.calls


def test_chosen_exceptions_cached_briefly() -> None:
    """cache_errors: a listed exception is re-raised from the cache until its short TTL ends."""
    seen = Counter()

    @cache_tool(cache_errors=(LookupError,), error_ttl_seconds=0.1)
    def find(x: int) -> int:
        seen.calls += 1
        raise KeyError(x)

    for _ in range(3):
        with pytest.raises(KeyError):
            find(1)
    assert 1 == seen.calls
    time.sleep(0.15)
    with pytest.raises(KeyError):
        find(1)
    assert 2 == seen.calls


def test_ttl_expiry(store: Store) -> None:
    """After ttl_seconds the result is computed again."""
    seen = Counter()

    @cache_tool(store=store, ttl_seconds=0.2)
    def now() -> int:
        seen.calls += 1
        return seen.calls

    assert 1 == now() == now()
    time.sleep(0.3)
    assert 2 == now()


def test_lru_bound() -> None:
    """max_size bounds the memory store; the least recently used entry goes first."""
    seen = Counter()

    @cache_tool(max_size=2)
    def square(x: int) -> int:
        seen.calls += 1
        return x * x

    square(1)
    square(2)
    square(1)  # 1 is now the most recent
    square(3)  # evicts 2
    assert 3 == seen.calls
    square(1)
    assert 3 == seen.calls
    square(2)
    assert 4 == seen.calls
    assert square.cache.stats()["evictions"] >= 1  # type: ignore[attr-defined]


def test_mutating_a_result(store: Store) -> None:
    """Redis serializes, so a caller's mutation never reaches the next caller; the memory
    store keeps values by reference (documented), like functools.lru_cache."""

    @cache_tool(store=store)
    def config() -> dict[str, list[int]]:
        return {"items": [1, 2]}

    first = config()
    first["items"].append(99)
    if store.shared:
        assert {"items": [1, 2]} == config()
    else:
        assert config() is first


def test_invalidate_clear_bypass_stats(store: Store) -> None:
    """invalidate() drops one call, clear() all of them, bypass() skips the cache."""
    seen = Counter()

    @cache_tool(store=store)
    def f(x: int) -> int:
        seen.calls += 1
        return x

    f(1), f(2), f(1)
    assert f.cache.invalidate(1)  # type: ignore[attr-defined]
    assert not f.cache.invalidate(1)  # type: ignore[attr-defined]
    f(1)
    assert 3 == seen.calls
    assert 2 == f.cache.clear()  # type: ignore[attr-defined]
    f(2)
    assert 4 == seen.calls
    assert 5 == f.cache.bypass(5)  # type: ignore[attr-defined]
    assert 5 == seen.calls
    stats = f.cache.stats()  # type: ignore[attr-defined]
    # clear() started the counts over: only f(2) since (bypass is not counted).
    assert {"hits": 0, "misses": 1, "executions": 1} == {
        k: stats[k] for k in ("hits", "misses", "executions")
    }


def test_garbage_and_foreign_values_read_as_misses(redis_url: str) -> None:
    """Bytes under the prefix that retrysafe did not write are a miss, never a wrong result."""
    store = RedisStore(redis_url, prefix=f"test-{uuid.uuid4().hex[:8]}")
    raw = redis.Redis.from_url(redis_url)

    @cache_tool(store=store)
    def answer(q: str) -> str:
        return q + "!"

    key = answer.cache.key("x")  # type: ignore[attr-defined]
    try:
        for garbage in (b"\xff\x00garbage", b'"a foreign json value"', b"rs1:{not json"):
            raw.set(store._key(key), garbage)
            assert "x!" == answer("x")
            assert "x!" == answer("x")  # and now a real hit
    finally:
        store.clear("")
        store.close()
        raw.close()


# --- single-flight -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_1000_concurrent_misses_run_once(astore: Store) -> None:
    """1,000 concurrent identical calls: one execution, everyone gets the result."""
    seen = Counter()

    @cache_tool(store=astore)
    async def slow(q: str) -> dict[str, str]:
        seen.calls += 1
        await anyio.sleep(0.05)
        return {"q": q}

    results: list[Any] = []

    async def one() -> None:
        results.append(await slow("same"))

    async with anyio.create_task_group() as tg:
        for _ in range(1000):
            tg.start_soon(one)
    assert 1 == seen.calls
    assert [{"q": "same"}] * 1000 == results
    stats = slow.cache.stats()  # type: ignore[attr-defined]
    assert 999 <= stats["coalesced"] + stats["hits"]  # a shared store may answer late ones


@pytest.mark.anyio
async def test_cancelling_a_waiter_never_cancels_the_call(astore: Store) -> None:
    """One waiter cancelled: the leader and the other waiters still get the result."""
    seen = Counter()
    started = anyio.Event()

    @cache_tool(store=astore)
    async def slow() -> str:
        seen.calls += 1
        started.set()
        await anyio.sleep(0.2)
        return "done"

    results: list[str] = []

    async def waiter(cancel_after: float | None) -> None:
        if cancel_after is None:
            results.append(await slow())
            return
        with anyio.move_on_after(cancel_after):
            await slow()
            results.append("not cancelled?")

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, None)
        await started.wait()  # the first caller leads, however slow the store is
        tg.start_soon(waiter, 0.05)
        tg.start_soon(waiter, None)
    assert ["done", "done"] == results
    assert 1 == seen.calls


@pytest.mark.anyio
async def test_cancelling_the_leader_returns_promptly_and_waiters_get_a_result(
    astore: Store,
) -> None:
    """The executing caller is cancelled: it returns at once; a waiter runs the READ again."""
    seen = Counter()

    started = anyio.Event()

    @cache_tool(store=astore)
    async def slow() -> str:
        seen.calls += 1
        started.set()
        await anyio.sleep(0.2)
        return "done"

    results: list[str] = []
    leader_done = anyio.Event()
    leader_scope = anyio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            await slow()
        leader_done.set()

    async def waiter() -> None:
        results.append(await slow())

    async with anyio.create_task_group() as tg:
        tg.start_soon(leader)
        await started.wait()  # the leader is executing, however slow the store is
        tg.start_soon(waiter)
        tg.start_soon(waiter)
        await anyio.sleep(0.01)
        cancelled_at = time.monotonic()
        leader_scope.cancel()
        await leader_done.wait()
        assert time.monotonic() - cancelled_at < 0.1
    assert ["done", "done"] == results
    assert 2 == seen.calls


def test_threads_single_flight(store: Store) -> None:
    """A sync tool called by 20 threads at once runs once."""
    seen = Counter()
    lock = threading.Lock()

    @cache_tool(store=store)
    def slow(q: str) -> str:
        with lock:
            seen.calls += 1
        time.sleep(0.2)
        return q

    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(slow("x"))) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ["x"] * 20 == results
    assert 1 == seen.calls


def test_one_function_many_loops_and_threads() -> None:
    """The same async tool used from four event loops in four threads at once."""
    seen = Counter()
    lock = threading.Lock()

    @cache_tool
    async def slow(q: str) -> str:
        with lock:
            seen.calls += 1
        await anyio.sleep(0.05)
        return q * 2

    results: list[str] = []
    errors: list[BaseException] = []

    def run(backend: str, q: str) -> None:
        async def main() -> None:
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(lambda: _append(results, slow(q)))

        try:
            anyio.run(main, backend=backend)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(b, q))
        for b, q in [("asyncio", "a"), ("trio", "b"), ("asyncio", "c"), ("trio", "a")]
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [] == errors
    assert sorted(["aa"] * 40 + ["bb"] * 20 + ["cc"] * 20) == sorted(results)
    assert 3 <= seen.calls <= 4  # "a" may run once in each loop: no cross-loop waiting


async def _append(results: list[str], awaitable: Any) -> None:
    results.append(await awaitable)


# --- across processes (real Redis) ---------------------------------------------------------


def _worker(redis_url: str, prefix: str, mode: str, calls: int = 1) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.swarm_worker", redis_url, prefix, mode, str(calls)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_four_processes_fifty_calls_run_once(shared_url: str) -> None:
    """4 processes x 50 concurrent identical calls through Redis (a server or a cluster):
    one execution in all."""
    prefix = f"swarm-{uuid.uuid4().hex[:8]}"
    raw = raw_client(shared_url)
    try:
        workers = [_worker(shared_url, prefix, "concurrent", 50) for _ in range(4)]
        outputs = [w.communicate(timeout=60)[0] for w in workers]
        assert [0, 0, 0, 0] == [w.returncode for w in workers]
        assert ["50"] * 4 == [o.strip() for o in outputs]
        assert b"1" == raw.get(f"{prefix}:executions")
    finally:
        delete_prefix(raw, prefix)
        raw.close()


def test_killed_holder_is_taken_over_after_its_lease(redis_url: str) -> None:
    """The process executing the call is SIGKILLed: another takes over when the lease ends."""
    prefix = f"swarm-{uuid.uuid4().hex[:8]}"
    raw = redis.Redis.from_url(redis_url)
    holder = _worker(redis_url, prefix, "hang")
    try:
        deadline = time.monotonic() + 20
        while raw.get(f"{prefix}:executions") != b"1":
            assert time.monotonic() < deadline, "the holder never started"
            time.sleep(0.05)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        store = RedisStore(redis_url, prefix=prefix)

        @cache_tool(store=store, namespace="swarm.slow", lease_seconds=1.0)
        def slow(query: str) -> dict[str, str]:
            raw.incr(f"{prefix}:executions")
            return {"answer": query.upper()}

        start = time.monotonic()
        assert {"answer": "SWARM"} == slow("swarm")
        assert time.monotonic() - start < 5
        assert b"2" == raw.get(f"{prefix}:executions")
        store.close()
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate()
        for k in raw.scan_iter(match=f"{prefix}*"):
            raw.delete(k)
        raw.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_redis(port: int) -> subprocess.Popen[bytes]:
    binary = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run the suite through `make test`")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_server(port)
    return proc


def test_redis_down_fails_open_then_caches_again(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stopped mid-run: calls go through (errors counted, logged once); restarted:
    caching resumes."""
    port = _free_port()
    server = _start_redis(port)
    seen = Counter()
    store = RedisStore(f"redis://127.0.0.1:{port}/0", prefix="restart")

    @cache_tool(store=store)
    def lookup(x: int) -> int:
        seen.calls += 1
        return x * 10

    try:
        assert 10 == lookup(1) == lookup(1)
        assert 1 == seen.calls
        server.terminate()
        server.wait()
        assert 10 == lookup(1) == lookup(1)
        assert 3 == seen.calls
        stats = lookup.cache.stats()  # type: ignore[attr-defined]
        assert stats["errors"] >= 1
        assert 1 == sum("calling through" in r.getMessage() for r in caplog.records)
        server = _start_redis(port)
        time.sleep(1.1)  # past the fail-open cool-down
        lookup(2)
        lookup(2)
        assert 4 == seen.calls
    finally:
        server.terminate()
        server.wait()
        store.close()


# --- stores themselves ---------------------------------------------------------------------


def test_store_operations(store: Store) -> None:
    """get/set/delete/clear/incr/leases behave alike on both stores."""
    assert MISS is store.get("k")
    store.set("k", {"v": [1, None]}, 10)
    assert {"v": [1, None]} == store.get("k")
    store.set("none", None, 10)
    assert store.get("none") is None
    assert 3.0 == store.incr("n", 3, 10) and 4.5 == store.incr("n", 1.5, 10)
    assert store.acquire_lease("k", "a", 5)
    assert not store.acquire_lease("k", "b", 5)
    assert store.extend_lease("k", "a", 5) and not store.extend_lease("k", "b", 5)
    assert not store.release_lease("k", "b")
    assert store.release_lease("k", "a")
    assert store.acquire_lease("k", "b", 0.05)
    time.sleep(0.1)
    assert store.acquire_lease("k", "c", 5)  # an expired lease is free
    assert store.delete("k") and not store.delete("k")
    store.set("pre:1", 1, 10)
    store.set("pre:2", 2, 10)
    assert 2 == store.clear("pre:")


def test_resolve_store_accepts_every_form(redis_url: str) -> None:
    """store= takes a Store, a redis.Redis, a redis.asyncio.Redis or a URL; nothing else."""
    import redis.asyncio

    assert isinstance(resolve_store(None), MemoryStore)
    for client in (
        redis.Redis.from_url(redis_url),
        redis.asyncio.Redis.from_url(redis_url),
        redis_url,
    ):
        made = resolve_store(client)
        assert isinstance(made, RedisStore)
        made.set("probe", 1, 5)
        assert 1 == made.get("probe")
        made.clear("")
        made.close()
    with pytest.raises(TypeError, match="store must be"):
        resolve_store(42)
    with pytest.raises(ValueError, match="not a Redis URL"):
        RedisStore("http://localhost")


def test_the_posts_sync_redis_pattern(redis_url: str) -> None:
    """@cache_tool(ttl_seconds=120, store=redis.Redis(host=..., port=...)) on a sync function."""
    host, port = redis_url.split("//")[1].split("/")[0].split(":")
    seen = Counter()

    @cache_tool(ttl_seconds=120, store=redis.Redis(host=host, port=int(port)))
    def exchange_rate(base: str, quote: str) -> float:
        seen.calls += 1
        return 1.08

    try:
        assert 1.08 == exchange_rate("EUR", "USD") == exchange_rate(base="EUR", quote="USD")
        assert 1 == seen.calls
    finally:
        exchange_rate.cache.clear()  # type: ignore[attr-defined]


def test_option_validation() -> None:
    """Bad options are refused when decorating."""
    with pytest.raises(ValueError, match="ttl_seconds"):
        cache_tool(ttl_seconds=-1)(lambda: None)
    with pytest.raises(TypeError, match="cache_errors"):
        cache_tool(cache_errors=(int,))(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_size"):
        cache_tool(max_size=0)(lambda: None)


def test_a_plain_url_to_a_cluster_node_names_the_cluster_url(redis_cluster_url: str) -> None:
    """redis:// to one node of a cluster: the StoreError says to use redis+cluster://."""
    from retrysafe import StoreError

    store = RedisStore(redis_cluster_url.replace("+cluster", "", 1), prefix="plain")
    try:
        with pytest.raises(StoreError, match=r"redis\+cluster://"):
            for i in range(50):  # some of these keys live on other nodes
                store.get(f"key-{i}")
    finally:
        store.close()


@pytest.mark.anyio
async def test_redis_dying_under_a_waiter_fails_open_for_it(anyio_backend: str) -> None:
    """A waiter (another process's call, here a second store) waits on the leader's lease;
    Redis dies meanwhile: the waiter gets a result (it calls through), never an error."""
    port = _free_port()
    server = _start_redis(port)
    url = f"redis://127.0.0.1:{port}/0"
    leader_store, waiter_store = RedisStore(url, prefix="dying"), RedisStore(url, prefix="dying")
    started = anyio.Event()
    executions: list[str] = []

    def make(store: RedisStore, who: str) -> Any:
        @cache_tool(store=store, namespace="dying.slow", lease_seconds=30)
        async def slow(q: str) -> str:
            executions.append(who)
            started.set()
            await anyio.sleep(3600 if who == "leader" else 0)
            return q.upper()

        return slow

    leader, waiter = make(leader_store, "leader"), make(waiter_store, "waiter")
    result: list[str] = []
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(leader, "x")
            await started.wait()

            answered = anyio.Event()

            async def wait_then_record() -> None:
                result.append(await waiter("x"))
                answered.set()

            tg.start_soon(wait_then_record)
            await anyio.sleep(0.3)  # the waiter is waiting on the leader's lease
            server.kill()
            server.wait()
            with anyio.fail_after(20):
                await answered.wait()
            tg.cancel_scope.cancel()
        assert ["X"] == result
        assert ["leader", "waiter"] == executions
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        for store in (leader_store, waiter_store):
            with anyio.CancelScope(shield=True):
                await store.aclose()
            store.close()


# --- entries by call, expirations, stats reset ----------------------------------------------


def test_entries_are_read_and_written_by_the_calls_arguments(store: Store) -> None:
    """get/set/contains/get_or_set and `in` bind arguments as a call does: defaults applied,
    positional or keyword alike."""
    runs: list[str] = []

    @cache_tool(ttl_seconds=60, store=store, namespace=f"entries-{id(store)}")
    def weather(city: str, units: str = "metric") -> dict[str, Any]:
        runs.append(city)
        return {"city": city, "units": units}

    from retrysafe.stores import MISS

    assert MISS is weather.cache.get("Paris")
    assert not weather.cache.contains("Paris")
    weather.cache.set({"city": "Paris", "temp": 21}, "Paris")
    assert {"city": "Paris", "temp": 21} == weather("Paris", units="metric")
    assert {"city": "Paris", "temp": 21} == weather.cache.get(city="Paris")
    assert weather.cache.contains("Paris", "metric")
    assert weather.cache.contains(city="Paris")
    assert "Paris" in weather.cache
    assert not weather.cache.contains("Paris", "imperial")
    assert {"city": "Rome", "warm": True} == weather.cache.get_or_set(
        lambda: {"city": "Rome", "warm": True}, "Rome"
    )
    assert {"city": "Rome", "warm": True} == weather.cache.get_or_set(lambda: {"no": 1}, "Rome")
    assert {"city": "Rome", "warm": True} == weather("Rome")
    assert [] == runs
    with pytest.raises(TypeError):
        weather.cache.get("Paris", "metric", "extra")  # the TypeError a call would raise


@pytest.mark.anyio
async def test_async_entries(astore: Store) -> None:
    @cache_tool(ttl_seconds=60, store=astore, namespace=f"aentries-{id(astore)}")
    async def lookup(sku: str) -> int:
        raise AssertionError("served from the warmed cache")

    await lookup.cache.aset(7, "sku-1")
    assert await lookup.cache.acontains(sku="sku-1")
    assert 7 == await lookup.cache.aget("sku-1")
    assert 7 == await lookup("sku-1")

    async def fetch() -> int:
        return 9

    assert 9 == await lookup.cache.aget_or_set(fetch, "sku-2")
    assert 9 == await lookup("sku-2")


def test_expirations_are_counted_and_clear_resets_the_stats() -> None:
    """An expired entry is a miss counted as an expiration; clear() (like lru_cache's
    cache_clear) and reset_stats() start the counts over."""

    @cache_tool(ttl_seconds=0.05)
    def square(x: int) -> int:
        return x * x

    square(3)
    square(3)
    time.sleep(0.08)
    square(3)
    stats = square.cache.stats()
    assert (1, 2, 1, 2) == (
        stats["hits"],
        stats["misses"],
        stats["expirations"],
        stats["executions"],
    )
    square.cache.reset_stats()
    assert {0} == set(square.cache.stats().values())
    square(3)
    assert 1 == square.cache.stats()["hits"]
    assert 1 == square.cache.clear()
    assert {0} == set(square.cache.stats().values())
    square(3)
    assert (0, 1, 0) == tuple(square.cache.stats()[k] for k in ("hits", "misses", "expirations"))


def test_in_takes_the_one_argument_as_a_call_does(store: Store) -> None:
    """``x in fn.cache`` asks about ``fn(x)``: a dict or a tuple is the argument itself (it
    was read as keyword or positional arguments, so ``{"k": 1} in fn.cache`` asked about
    ``fn(k=1)``)."""

    @cache_tool(ttl_seconds=60, store=store, namespace=f"in-{id(store)}")
    def lookup(query: Any) -> str:
        return "found"

    lookup({"k": 1})
    lookup(("a", "b"))
    assert {"k": 1} in lookup.cache
    assert ("a", "b") in lookup.cache
    assert {"k": 2} not in lookup.cache
    assert "a" not in lookup.cache
