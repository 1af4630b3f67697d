"""@idempotent: one side effect per key, replay to retries, UNKNOWN instead of a silent re-run."""

from __future__ import annotations

import contextvars
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
import redis

from retrysafe import (
    Effect,
    IdempKey,
    IdempotencyInProgressError,
    IdempotencyKeyMismatchError,
    LeaseLostError,
    MemoryStore,
    NotApplied,
    OutcomeUnknownError,
    StoreError,
    current_key,
    effect,
    idempotent,
    resolve,
    session,
    side_effect_started,
)
from retrysafe.stores import RedisStore, Store

from .redis_clients import delete_prefix, raw_client, wait_for_server
from .test_cache import _free_port, _start_redis

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _conversation() -> Any:
    """Every test runs in a session (writes need one); threads bind their own."""
    with session("conversation-1"):
        yield


class Remote:
    """A fake payments API that counts the charges it really made."""

    def __init__(self) -> None:
        self.charges: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def charge(self, customer: str, amount: int) -> dict[str, Any]:
        with self.lock:
            self.charges.append((customer, amount))
            return {"id": f"ch_{len(self.charges)}", "amount": amount}


@pytest.mark.anyio
async def test_100_concurrent_identical_writes_charge_once(astore: Store) -> None:
    """100 concurrent identical WRITE calls: one charge, every caller the same result."""
    remote = Remote()

    @idempotent(store=astore, effect=Effect.WRITE)
    async def charge(customer: str, amount: int) -> dict[str, Any]:
        await anyio.sleep(0.05)
        return remote.charge(customer, amount)

    results: list[dict[str, Any]] = []

    async def one() -> None:
        results.append(await charge("cus_1", 500))

    async with session("s-1"):
        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(one)
        assert 1 == len(remote.charges)
        assert [{"id": "ch_1", "amount": 500}] * 100 == results
        assert {"id": "ch_1", "amount": 500} == await charge(amount=500, customer="cus_1")  # replay
    assert 1 == len(remote.charges)


def test_sync_threads_charge_once(store: Store) -> None:
    """The sync path: 20 threads, one charge."""
    remote = Remote()

    @idempotent(store=store, effect=Effect.WRITE)
    def charge(customer: str, amount: int) -> dict[str, Any]:
        time.sleep(0.1)
        return remote.charge(customer, amount)

    results: list[dict[str, Any]] = []

    def one() -> None:
        with session("conversation-1"):
            results.append(charge("c", 1))

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 == len(remote.charges)
    assert 20 == len(results) and all(r == results[0] for r in results)


def test_sessions_scope_the_key(store: Store) -> None:
    """The same call in two sessions is two operations; the tool sees its key."""
    remote = Remote()
    seen: list[tuple[str | None, str | None]] = []

    @idempotent(store=store, effect=Effect.WRITE)
    def charge(customer: str, amount: int, idempotency_key: str | None = None) -> dict[str, Any]:
        key = current_key()
        seen.append((idempotency_key, str(key) if key else None))
        return remote.charge(customer, amount)

    with session("a"):
        charge("c", 1)
        charge("c", 1)
    with session("b", tenant="t"):
        charge("c", 1)
    assert 2 == len(remote.charges)
    assert seen[0][0] == seen[0][1] and seen[0][0] != seen[1][0]
    assert seen[0][0] is not None and seen[0][0].startswith("ik_")
    with session("a"):
        tool = charge.idempotency.tool  # type: ignore[attr-defined]
        # The key's scope: the session's encoded identity, then the tool's scope.
        expected = IdempKey.for_args(scope=f"s/c=a:{tool}", args={"customer": "c", "amount": 1})
        assert expected == charge.idempotency.key_for("c", 1)  # type: ignore[attr-defined]


def test_explicit_key_mismatch(store: Store) -> None:
    """The caller's idempotency_key reused with other arguments: 422-style mismatch, no wait."""
    remote = Remote()

    @idempotent(store=store, effect=Effect.WRITE)
    def charge(customer: str, amount: int, idempotency_key: str | None = None) -> dict[str, Any]:
        return remote.charge(customer, amount)

    charge("c", 1, idempotency_key="order-1")
    assert {"id": "ch_1", "amount": 1} == charge("c", 1, idempotency_key="order-1")
    start = time.monotonic()
    with pytest.raises(IdempotencyKeyMismatchError) as info:
        charge("c", 2, idempotency_key="order-1")
    assert time.monotonic() - start < 0.5
    assert "different arguments" in info.value.llm_hint
    assert 1 == len(remote.charges)


def test_wait_timeout_raises_in_progress(store: Store) -> None:
    """A concurrent caller waits up to wait_seconds for the owner, then gets 409-style."""
    started, release = threading.Event(), threading.Event()

    @idempotent(store=store, effect=Effect.WRITE, wait_seconds=0.2)
    def slow(x: int) -> int:
        started.set()
        release.wait(5)
        return x

    owner = threading.Thread(target=contextvars.copy_context().run, args=(slow, 1))
    owner.start()
    # The owner runs before the second call starts (a fixed sleep was not always enough
    # on a loaded machine: the second call then owned it, and the thread got the 409).
    assert started.wait(10)
    start = time.monotonic()
    with pytest.raises(IdempotencyInProgressError):
        slow(1)
    assert 0.15 < time.monotonic() - start < 2
    release.set()
    owner.join()
    assert 1 == slow(1)


def test_failures_before_the_side_effect_release(store: Store) -> None:
    """checkpoint=True: an error before side_effect_started() releases; a retry runs again."""
    remote = Remote()
    attempts = {"n": 0}

    @idempotent(store=store, effect=Effect.WRITE, checkpoint=True)
    def charge(customer: str, amount: int) -> dict[str, Any]:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise TimeoutError("could not reach the API")  # before the checkpoint
        side_effect_started()
        return remote.charge(customer, amount)

    with pytest.raises(TimeoutError):
        charge("c", 1)
    assert {"id": "ch_1", "amount": 1} == charge("c", 1)
    assert 2 == attempts["n"]


def test_ambiguous_failure_after_the_side_effect_is_unknown_then_resolved(store: Store) -> None:
    """A timeout after the request went out: UNKNOWN, never silently re-run; resolve() settles it."""
    remote = Remote()
    lose_response = {"on": True}

    @idempotent(store=store, effect=Effect.WRITE)
    def charge(customer: str, amount: int) -> dict[str, Any]:
        result = remote.charge(customer, amount)
        if lose_response["on"]:
            raise TimeoutError("read timed out")  # the remote acted, the answer was lost
        return result

    with pytest.raises(OutcomeUnknownError) as info:
        charge("c", 1)
    assert isinstance(info.value.__cause__, TimeoutError)
    lose_response["on"] = False
    with pytest.raises(OutcomeUnknownError):
        charge("c", 1)  # still unknown: not run again
    assert 1 == len(remote.charges)
    assert "unknown" == resolve(info.value, applied={"id": "ch_1", "amount": 1})
    assert {"id": "ch_1", "amount": 1} == charge("c", 1)
    assert 1 == len(remote.charges)


def test_resolve_not_applied_lets_it_run(store: Store) -> None:
    """resolve(err, not_applied=True) removes the record: the next call runs."""
    remote = Remote()
    fail = {"on": True}

    @idempotent(store=store, effect=Effect.DESTRUCTIVE)
    def delete(item: str) -> str:
        if fail["on"]:
            raise ConnectionResetError()
        remote.charge(item, 0)
        return "deleted"

    with pytest.raises(OutcomeUnknownError) as info:
        delete("x")
    fail["on"] = False
    resolve(info.value, not_applied=True)
    assert "deleted" == delete("x")
    with pytest.raises(ValueError, match="exactly one"):
        resolve(info.value)


def test_definite_refusals_release(store: Store) -> None:
    """A 4xx answer or NotApplied means nothing happened: released, a retry runs."""
    calls = {"n": 0}

    class CardDeclined(Exception):
        status_code = 402

    @idempotent(store=store, effect=Effect.WRITE)
    def charge(customer: str) -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise CardDeclined()
        if calls["n"] == 2:
            raise NotApplied("validation failed before sending")
        return "ok"

    with pytest.raises(CardDeclined):
        charge("c")
    with pytest.raises(NotApplied):
        charge("c")
    assert "ok" == charge("c")


@pytest.mark.anyio
async def test_cancellation_during_a_write_is_unknown(astore: Store) -> None:
    """Cancelled mid-call after the request went out: the next caller gets OutcomeUnknownError."""

    started = anyio.Event()

    @idempotent(store=astore, effect=Effect.WRITE)
    async def send_email(to: str) -> str:
        started.set()
        await anyio.sleep(10)
        return "sent"

    async with anyio.create_task_group() as tg:
        tg.start_soon(send_email, "a@example.com")
        # Cancel once the call is running (its claim made), however slow the store is.
        await started.wait()
        tg.cancel_scope.cancel()
    with pytest.raises(OutcomeUnknownError):
        await send_email("a@example.com")


@pytest.mark.anyio
async def test_read_failures_release(astore: Store) -> None:
    """READ and IDEMPOTENT tools release on any failure: a retry re-runs."""
    calls = {"n": 0}

    @idempotent(store=astore, effect=Effect.IDEMPOTENT)
    async def put(item: str) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise TimeoutError()
        return calls["n"]

    with pytest.raises(TimeoutError):
        await put("x")
    assert 2 == await put("x")
    assert 2 == await put("x")


def test_untagged_tools_count_as_destructive(store: Store) -> None:
    """Untagged: an ambiguous failure leaves UNKNOWN (DESTRUCTIVE outcomes)."""

    @idempotent(store=store)
    def mystery(x: int) -> int:
        raise TimeoutError()

    assert Effect.DESTRUCTIVE is mystery.idempotency.effect  # type: ignore[attr-defined]
    with pytest.raises(OutcomeUnknownError):
        mystery(1)


class NoHeartbeatStore(MemoryStore):
    """A memory store whose heartbeats fail: the owner looks stalled to everyone else."""

    def heartbeat(self, key: Any, fence: int, lease: float) -> bool:
        return False


def test_late_completion_after_takeover_is_refused() -> None:
    """A stalled READ owner is taken over by another process; its late result is refused
    with LeaseLostError. (Two decorations over one store and scope are two processes.)"""
    store = NoHeartbeatStore()
    started = threading.Event()
    outcome: list[BaseException | str] = []

    @idempotent(store=store, scope="lookup", effect=Effect.READ, lease_seconds=0.1)
    def lookup_stalled(x: int) -> str:
        started.set()
        time.sleep(0.4)
        return "late"

    @idempotent(store=store, scope="lookup", effect=Effect.READ, lease_seconds=0.1)
    def lookup_elsewhere(x: int) -> str:
        return "fresh"

    def stalled() -> None:
        try:
            outcome.append(lookup_stalled(1))
        except BaseException as exc:
            outcome.append(exc)

    owner = threading.Thread(target=contextvars.copy_context().run, args=(stalled,))
    owner.start()
    started.wait()
    time.sleep(0.2)  # the lease (0.1 s) has run out
    assert "fresh" == lookup_elsewhere(1)  # taken over
    owner.join()
    assert isinstance(outcome[0], LeaseLostError)
    assert "fresh" == lookup_stalled(1)  # the stored result, replayed


@pytest.mark.parametrize("tagged", [True, False])
def test_effect_tag_on_the_function(tagged: bool) -> None:
    """@effect under @idempotent chooses the policy: a tagged READ is taken over."""

    def fn(x: int) -> int:
        return x

    wrapped = idempotent(effect(Effect.READ)(fn) if tagged else fn)
    expected = Effect.READ if tagged else Effect.DESTRUCTIVE
    assert expected is wrapped.idempotency.effect


# --- across processes (real Redis) ---------------------------------------------------------


def _worker(url: str, prefix: str, mode: str, calls: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.idempotent_worker", url, prefix, mode, str(calls)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def _cleanup(raw: Any, prefix: str) -> None:
    delete_prefix(raw, prefix)
    raw.close()


def test_eight_processes_fifty_calls_one_charge(shared_url: str) -> None:
    """8 processes x 50 concurrent identical WRITE calls through Redis (a server or a
    cluster): exactly one charge, and every caller in every process got that same result."""
    prefix = f"idem-{uuid.uuid4().hex[:8]}"
    raw = raw_client(shared_url)
    try:
        workers = [_worker(shared_url, prefix, "charge", 50) for _ in range(8)]
        outputs = [w.communicate(timeout=90)[0].strip() for w in workers]
        assert [0] * 8 == [w.returncode for w in workers]
        distinct = {r for out in outputs for r in orjson.loads(out)}
        assert 1 == len(distinct)
        assert b"1" == raw.get(f"{prefix}:effects")
    finally:
        _cleanup(raw, prefix)


def test_forty_keys_over_the_cluster_one_charge_each(redis_cluster_url: str) -> None:
    """4 processes x 5 calls for each of 40 customers, whose records hash to every primary
    of the cluster: one charge per customer, one result seen per customer."""
    prefix = f"idem-{uuid.uuid4().hex[:8]}"
    raw = raw_client(redis_cluster_url)
    try:
        workers = [_worker(redis_cluster_url, prefix, "keys", 5) for _ in range(4)]
        outputs = [orjson.loads(w.communicate(timeout=120)[0]) for w in workers]
        assert [0] * 4 == [w.returncode for w in workers]
        for i in range(40):
            customer = f"cus_{i}"
            assert 1 == len({r for out in outputs for r in out[customer]}), customer
            assert b"1" == raw.get(f"{prefix}:effects:{customer}"), customer
        slots = {raw.keyslot(f"retrysafe:{{idem:x-{i}}}") for i in range(40)}
        assert len({raw.nodes_manager.get_node_from_slot(s).name for s in slots}) == 3
    finally:
        _cleanup(raw, prefix)


def _killed_owner(redis_url: str, prefix: str, mode: str) -> None:
    raw = redis.Redis.from_url(redis_url)
    owner = _worker(redis_url, prefix, mode, 1)
    deadline = time.monotonic() + 20
    while raw.get(f"{prefix}:effects") != b"1":
        assert time.monotonic() < deadline, "the owner never started"
        time.sleep(0.05)
    os.kill(owner.pid, signal.SIGKILL)
    owner.communicate()
    raw.close()


def test_killed_write_owner_leaves_unknown(redis_url: str) -> None:
    """A WRITE owner SIGKILLed mid-call: after its lease, the record is UNKNOWN, not re-run."""
    prefix = f"idem-{uuid.uuid4().hex[:8]}"
    raw = redis.Redis.from_url(redis_url)
    store = RedisStore(redis_url, prefix=prefix)
    try:
        _killed_owner(redis_url, prefix, "hang-write")

        @idempotent(store=store, scope="payments.charge", effect=Effect.WRITE, lease_seconds=1.0)
        async def charge(customer: str, amount: int) -> dict[str, object]:
            raw.incr(f"{prefix}:effects")
            return {"charge": "should never run"}

        async def main() -> None:
            async with session("swarm-session"):
                with pytest.raises(OutcomeUnknownError):
                    await charge("cus_1", 500)
            await store.aclose()

        anyio.run(main)
        assert b"1" == raw.get(f"{prefix}:effects")
    finally:
        store.close()
        _cleanup(raw, prefix)


def test_killed_read_owner_is_taken_over(redis_url: str) -> None:
    """A READ owner SIGKILLed mid-call: after its lease, another process takes it over."""
    prefix = f"idem-{uuid.uuid4().hex[:8]}"
    raw = redis.Redis.from_url(redis_url)
    store = RedisStore(redis_url, prefix=prefix)
    try:
        _killed_owner(redis_url, prefix, "hang-read")

        @idempotent(store=store, scope="payments.charge", effect=Effect.READ, lease_seconds=1.0)
        def charge(customer: str, amount: int) -> dict[str, object]:
            raw.incr(f"{prefix}:effects")
            return {"charge": "ch_2", "amount": amount}

        start = time.monotonic()
        with session("swarm-session"):
            assert {"charge": "ch_2", "amount": 500} == charge("cus_1", 500)
        assert time.monotonic() - start < 5
        assert b"2" == raw.get(f"{prefix}:effects")
    finally:
        store.close()
        _cleanup(raw, prefix)


def test_redis_down_fails_closed() -> None:
    """Redis unreachable: StoreError, and the write is never run unprotected."""
    port = _free_port()
    server = _start_redis(port)
    store = RedisStore(f"redis://127.0.0.1:{port}/0", prefix="closed")
    remote = Remote()

    @idempotent(store=store, effect=Effect.WRITE)
    def charge(customer: str) -> dict[str, Any]:
        return remote.charge(customer, 1)

    try:
        charge("a")
        server.terminate()
        server.wait()
        with pytest.raises(StoreError) as info:
            charge("b")
        assert "unavailable" in info.value.llm_hint
        assert 1 == len(remote.charges)
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait()
        store.close()


def test_redis_round_trips(redis_url: str) -> None:
    """On Redis a first call is two round trips (claim, complete); a replay is one."""
    raw = redis.Redis.from_url(redis_url)
    store = RedisStore(redis_url, prefix=f"rt-{uuid.uuid4().hex[:8]}")

    @idempotent(store=store, effect=Effect.WRITE)
    def charge(customer: str) -> str:
        return "ok"

    def commands() -> int:
        stats = raw.info("commandstats")
        return sum(
            int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval")
        )

    try:
        charge("warm-up")  # loads the scripts
        before = commands()
        charge("c")
        first = commands() - before
        before = commands()
        charge("c")
        assert (2, 1) == (first, commands() - before)
    finally:
        store.clear("")
        store.close()
        raw.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_workers_draw_their_own_fence_tails() -> None:
    """The fence tails come from a generator of the process's own, seeded again in a forked
    child: workers forked from one parent (a pre-fork server) never share tails, so their
    tokens stay distinct even when a counter starts over."""
    from retrysafe.stores._sql import fence_nonce

    fence_nonce()  # the parent has drawn before forking
    tails: list[set[str]] = []
    for _ in range(3):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its draws to the pipe, then out without cleanup
            os.write(write, " ".join(fence_nonce() for _ in range(20)).encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            tails.append(set(pipe.read().split()))
        os.waitpid(pid, 0)
    parent = {fence_nonce() for _ in range(20)}
    assert all(len(t) == 20 and all(len(x) == 12 and x.isdigit() for x in t) for t in tails)
    assert not (tails[0] & tails[1] or tails[0] & tails[2] or tails[1] & tails[2])
    assert not parent & (tails[0] | tails[1] | tails[2])


def test_fences_never_repeat_after_redis_loses_its_data() -> None:
    """A Redis restarted without persistence loses the fence counter; a stale owner's token
    still never completes the new claim, and the first calls after the restart succeed on
    fresh connections (the pooled ones were closed by the dead server)."""
    port = _free_port()
    server = _start_redis(port)
    store = RedisStore(f"redis://127.0.0.1:{port}/0", prefix="restart")
    try:
        stale = store.claim("order-1", "fp", "owner-a", 30, 60, False)
        assert "claimed" == stale.status
        server.terminate()
        server.wait(10)
        server = _start_redis(port)
        fresh = store.claim("order-1", "fp", "owner-b", 30, 60, False)  # resent once
        assert "claimed" == fresh.status
        assert stale.fence // 10**12 == fresh.fence // 10**12  # the counter started over
        assert stale.fence != fresh.fence  # the token did not
        assert not store.complete("order-1", stale.fence, "stale", 60)
        assert store.complete("order-1", fresh.fence, "fresh", 60)
        assert store.complete("order-1", fresh.fence, "fresh", 60)  # a resend: still done
        assert "fresh" == store.claim("order-1", "fp", "owner-c", 30, 60, False).payload
    finally:
        store.close()
        server.terminate()
        server.wait(10)


def test_records_on_a_store_that_may_lose_them_warn_once_or_raise(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MemoryStore is not durable: one warning per process for every tool on one (twenty
    tools on their default stores printed twenty), at first use, or StoreError with
    require_durable=True before anything runs."""
    from retrysafe import _idempotent

    monkeypatch.setattr(_idempotent, "_WARNED_KINDS", set())  # this test's process-wide state
    ran: list[int] = []
    tools = []
    with caplog.at_level("WARNING", logger="retrysafe"):
        for n in range(20):

            @idempotent(effect=Effect.WRITE, scope=f"warn-{n}")  # each its own MemoryStore
            def write(x: int) -> int:
                ran.append(x)
                return x

            tools.append(write)
        assert 0 == sum("across a restart" in r.getMessage() for r in caplog.records)  # none yet
        for write in tools:
            write(1)
    assert 1 == sum("across a restart" in r.getMessage() for r in caplog.records)

    @idempotent(store=MemoryStore(), effect=Effect.WRITE, require_durable=True)
    def strict(x: int) -> int:
        ran.append(x)
        return x

    with pytest.raises(StoreError, match="require_durable"):
        strict(1)
    assert 20 == len(ran)


def test_each_shared_store_that_may_lose_records_is_warned_once(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A shared store is a server of its own: each store object is warned once (the test's
    redis-server keeps no AOF or snapshot), also where a collected one had its id()."""
    import gc

    def warn_on(store: RedisStore) -> int:
        @idempotent(store=store, effect=Effect.WRITE, scope=f"durability-{uuid.uuid4().hex}")
        def write(x: int) -> int:
            return x

        caplog.clear()
        with caplog.at_level("WARNING", logger="retrysafe"):
            write(1), write(2)
        return sum("across a restart" in r.getMessage() for r in caplog.records)

    for _ in range(3):
        store = RedisStore(redis_url, prefix=f"w-{uuid.uuid4().hex[:8]}")
        assert 1 == warn_on(store)
        store.close()
        del store
        gc.collect()


def test_redis_durability_is_read_from_its_persistence_settings(
    redis_url: str, tmp_path: Path
) -> None:
    """The test server has neither AOF nor snapshots; one with appendonly yes is durable."""
    assert RedisStore(redis_url).durable is False
    port = _free_port()
    binary = os.environ.get("REDIS_SERVER") or "redis-server"
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--appendonly",
            "yes",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_server(port)
        store = RedisStore(f"redis://127.0.0.1:{port}/0")
        assert store.durable is True
        store.close()
    finally:
        proc.terminate()
        proc.wait(10)


def test_with_aof_a_restart_keeps_completed_records(tmp_path: Path) -> None:
    """Redis with appendonly yes, appendfsync always, SIGKILLed and restarted: the completed
    write replays its result and does not run again; the store reports itself durable."""
    port = _free_port()
    binary = os.environ.get("REDIS_SERVER") or "redis-server"
    command = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--appendonly", "yes",
        "--appendfsync", "always", "--save", "", "--dir", str(tmp_path),
    ]  # fmt: skip

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_server(port)
        return proc

    server = start()
    store = RedisStore(f"redis://127.0.0.1:{port}/0", prefix="aof")
    remote = Remote()

    @idempotent(store=store, effect=Effect.WRITE, require_durable=True)
    def charge(customer: str, amount: int) -> dict[str, Any]:
        return remote.charge(customer, amount)

    try:
        assert store.durable is True
        first = charge("cus_1", 500)
        server.kill()  # no clean shutdown: only what was fsynced survives
        server.wait(10)
        server = start()
        assert first == charge("cus_1", 500)
        assert 1 == len(remote.charges)
    finally:
        store.close()
        server.kill()
        server.wait(10)


@pytest.mark.anyio
async def test_remote_idempotent_write_cancelled_in_flight_is_released_with_its_key() -> None:
    """remote_idempotent=True: a write cancelled mid-call, or one whose attempts all timed
    out, leaves no UNKNOWN record; the next call runs with the same key (the remote
    deduplicates by it)."""
    keys: list[str] = []
    started = anyio.Event()
    mode = {"hang": True, "timeout": False}

    @idempotent(effect=Effect.WRITE, remote_idempotent=True)
    async def charge(customer: str, idempotency_key: str | None = None) -> str:
        assert idempotency_key is not None
        keys.append(idempotency_key)
        started.set()
        if mode["hang"]:
            await anyio.sleep(3600)
        if mode["timeout"]:
            raise TimeoutError("the response was lost")
        return f"charged {customer}"

    async with anyio.create_task_group() as tg:
        tg.start_soon(charge, "cus_1")
        await started.wait()
        tg.cancel_scope.cancel()
    mode.update(hang=False, timeout=True)
    with pytest.raises(TimeoutError):
        await charge("cus_1")
    mode.update(timeout=False)
    assert "charged cus_1" == await charge("cus_1")
    assert "charged cus_1" == await charge("cus_1")  # now completed: replayed
    assert 3 == len(keys) and len(set(keys)) == 1
