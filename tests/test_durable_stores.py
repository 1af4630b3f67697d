"""SQLiteStore and PostgresStore across processes, crashes and a database restart: the
exactly-once swarm, a SIGKILLed owner, PostgreSQL restarted with ``-m immediate``, the
application's transaction, ``store.durable`` and the URL forms."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from retrysafe import Effect, OutcomeUnknownError, idempotent, session, tool
from retrysafe.stores import PostgresStore, SQLiteStore, Store, resolve_store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", "postgres"])
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'records.db'}"
    return str(request.getfixturevalue("postgres_url"))


def _store(url: str, prefix: str) -> Store:
    return PostgresStore(url, prefix=prefix) if url.startswith("postgres") else resolve_store(url)


def _worker(url: str, prefix: str, mode: str, calls: int, effects: Path, *extra: str) -> Any:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.idempotent_worker", url, prefix, mode, str(calls), *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "RETRYSAFE_EFFECTS": str(effects),
            "RETRYSAFE_READY": str(effects) + ".ready",
        },
    )


def _effects(path: Path) -> Counter[str]:
    return Counter(path.read_text().split()) if path.exists() else Counter()


def test_eight_processes_fifty_calls_one_side_effect(durable_url: str, tmp_path: Path) -> None:
    """8 processes x 50 concurrent identical WRITE calls: one side effect, one result."""
    effects = tmp_path / "effects.txt"
    prefix = f"swarm-{uuid.uuid4().hex[:8]}"
    workers = [_worker(durable_url, prefix, "charge", 50, effects) for _ in range(8)]
    done = [w.communicate(timeout=120) for w in workers]
    assert [0] * 8 == [w.returncode for w in workers], [err[-2000:] for _, err in done]
    assert 1 == len({r for out, _ in done for r in orjson.loads(out)})
    assert {f"{prefix}:effects": 1} == dict(_effects(effects))


def test_forty_keys_one_side_effect_each(durable_url: str, tmp_path: Path) -> None:
    effects = tmp_path / "effects.txt"
    prefix = f"keys-{uuid.uuid4().hex[:8]}"
    workers = [_worker(durable_url, prefix, "keys", 5, effects) for _ in range(4)]
    done = [w.communicate(timeout=120) for w in workers]
    assert [0] * 4 == [w.returncode for w in workers], [err[-2000:] for _, err in done]
    outputs = [orjson.loads(out) for out, _ in done]
    counted = _effects(effects)
    for i in range(40):
        customer = f"cus_{i}"
        assert 1 == len({r for out in outputs for r in out[customer]}), customer
        assert 1 == counted[f"{prefix}:effects:{customer}"], customer
    assert 40 == counted[f"{prefix}:effects"]


def _wait_for(path: Path, lines: int, process: Any) -> None:
    deadline = time.monotonic() + 30
    while sum(_effects(path).values()) < lines:
        if process.poll() is not None:
            raise AssertionError(process.communicate()[1][-2000:])
        assert time.monotonic() < deadline, "the worker never acted"
        time.sleep(0.05)


def test_an_owner_killed_after_its_side_effect_leaves_unknown(
    durable_url: str, tmp_path: Path
) -> None:
    """SIGKILL after the side effect, before the tool returns: the retry (another process,
    after the lease) gets OutcomeUnknownError, never a second side effect."""
    effects = tmp_path / "effects.txt"
    prefix = f"kill-{uuid.uuid4().hex[:8]}"
    owner = _worker(durable_url, prefix, "hang-write", 1, effects)
    _wait_for(effects, 1, owner)
    os.kill(owner.pid, signal.SIGKILL)
    owner.communicate()
    store = _store(durable_url, prefix)
    ran: list[int] = []

    @idempotent(store=store, scope="payments.charge", effect=Effect.WRITE, lease_seconds=1.0)
    def charge(customer: str, amount: int) -> dict[str, object]:
        ran.append(amount)
        return {"charge": "never"}

    try:
        with session("swarm-session"):
            deadline = time.monotonic() + 10
            while True:  # within the dead owner's lease: in progress; after it: UNKNOWN
                try:
                    charge("cus_1", 500)
                except OutcomeUnknownError:
                    break
                except Exception as error:
                    assert type(error).__name__ == "IdempotencyInProgressError", error
                    assert time.monotonic() < deadline
        assert [] == ran
        assert {f"{prefix}:effects": 1} == dict(_effects(effects))
    finally:
        store.clear("")
        getattr(store, "close", lambda: None)()


def test_an_owner_killed_after_completing_is_replayed(durable_url: str, tmp_path: Path) -> None:
    """SIGKILL after the result was recorded: a restarted process gets the stored result."""
    effects = tmp_path / "effects.txt"
    prefix = f"done-{uuid.uuid4().hex[:8]}"
    owner = _worker(durable_url, prefix, "done-then-hang", 1, effects)
    assert owner.stdout is not None
    first = orjson.loads(owner.stdout.readline())
    os.kill(owner.pid, signal.SIGKILL)
    owner.communicate()
    again = _worker(durable_url, prefix, "charge", 1, effects)
    out, err = again.communicate(timeout=60)
    assert 0 == again.returncode, err[-2000:]
    assert [orjson.dumps(first).decode()] == orjson.loads(out)
    assert {f"{prefix}:effects": 1} == dict(_effects(effects))


def _restart_postgres() -> None:
    runas = os.environ.get("POSTGRES_RUNAS", "").split()
    restart = subprocess.run(
        [*runas, os.path.join(os.environ["POSTGRES_BIN"], "pg_ctl"), "-D",
         os.environ["POSTGRES_DATA"], "-l", os.environ["POSTGRES_LOG"],
         "-m", "immediate", "-w", "restart"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert 0 == restart.returncode, restart.stderr


def test_postgres_restarted_mid_run_duplicates_nothing(postgres_url: str, tmp_path: Path) -> None:
    """PostgreSQL killed (pg_ctl restart -m immediate) while 4 processes write for 40
    customers: no side effect twice, callers get results or retrysafe errors, and every
    result completed before the restart is replayed after it."""
    effects = tmp_path / "effects.txt"
    prefix = f"restart-{uuid.uuid4().hex[:8]}"
    workers = [
        _worker(postgres_url, prefix, "failover", 2, effects, str(effects)) for _ in range(4)
    ]
    try:
        # Every worker has built its store (a process starting while the server is down
        # fails to start, which is not what this test is about), and writes are under way.
        ready = Path(str(effects) + ".ready")
        deadline = time.monotonic() + 30
        while not ready.exists() or len(ready.read_text().split()) < len(workers):
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.05)
        _wait_for(effects, 5, workers[0])
        _restart_postgres()
        restarted_at = time.monotonic()
        done = [w.communicate(timeout=120) for w in workers]
        assert [0] * 4 == [w.returncode for w in workers], [
            e[e.find("Traceback") :][:3000] for _, e in done
        ]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    reports = [orjson.loads(out) for out, _ in done]
    counted = _effects(effects)
    assert [] == [c for c, n in counted.items() if n > 1], counted
    errors: Counter[str] = Counter()
    for report in reports:
        errors.update(report["errors"])
    assert set(errors) <= {"StoreError", "OutcomeUnknownError", "IdempotencyInProgressError"}
    before = {c: r for report in reports for c, rs in report["results"].items() for r in rs}
    late = _worker(postgres_url, prefix, "failover", 1, effects, str(effects))
    out, err = late.communicate(timeout=120)
    assert 0 == late.returncode, err[-2000:]
    after = orjson.loads(out)
    for customer, result in before.items():
        assert [result] == after["results"][customer], (customer, "a completed result was lost")
    assert [] == [c for c, n in _effects(effects).items() if n > 1]
    print(
        f"\npostgres restart: {sum(counted.values())} effects for {len(counted)} customers, "
        f"errors {dict(errors)}, run ended {time.monotonic() - restarted_at:.1f} s after it"
    )


# --- the application's own transaction (PostgreSQL) --------------------------------------------


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[PostgresStore]:
    store = PostgresStore(postgres_url, prefix=f"tx-{uuid.uuid4().hex[:8]}")
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS charges (order_id text PRIMARY KEY, amount int)")
    yield store
    store.clear("")
    store.close()


def test_the_outcome_commits_with_the_applications_rows(
    pg_store: PostgresStore, postgres_url: str
) -> None:
    """Inside the tool, the charge row and the record commit in one transaction: a crash
    right after it leaves a COMPLETED record to replay; a failed transaction records
    nothing and charges nothing."""
    import psycopg

    order = f"o-{uuid.uuid4().hex[:8]}"
    runs: list[str] = []

    @tool.write(store=pg_store, registry=None)
    def charge(order_id: str, amount: int, fail: bool = False) -> dict[str, Any]:
        """Charge an order."""
        runs.append(order_id)
        with psycopg.connect(postgres_url) as conn:
            with pg_store.transaction(conn) as tx:
                conn.execute("INSERT INTO charges VALUES (%s, %s)", (order_id, amount))
                tx.result = {"order": order_id, "charged": amount}
                if fail:
                    raise ValueError("declined after the insert")
            # Recorded already, in the same commit as the row:
            key = charge.idempotency.key_for(order_id, amount, fail)
            view = charge.idempotency.record(key)
            assert view is not None and "completed" == view.state
            return dict(tx.result)

    with session("tx"):
        assert {"order": order, "charged": 5} == charge(order, 5)
        assert {"order": order, "charged": 5} == charge(order, 5)  # replayed
        with pytest.raises(ValueError):
            charge(order + "-x", 7, fail=True)
        with pytest.raises(ValueError):  # released (nothing applied): it runs again
            charge(order + "-x", 7, fail=True)
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(
            "SELECT order_id FROM charges WHERE order_id LIKE %s", (order + "%",)
        ).fetchall()
    assert [(order,)] == rows
    assert [order, order + "-x", order + "-x"] == runs


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # psycopg's async connections
async def test_the_outcome_transaction_on_an_async_connection(
    pg_store: PostgresStore, postgres_url: str
) -> None:
    import psycopg

    order = f"a-{uuid.uuid4().hex[:8]}"

    @tool.write(store=pg_store, registry=None)
    async def charge(order_id: str, amount: int) -> dict[str, Any]:
        """Charge an order."""
        async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
            async with pg_store.transaction(conn) as tx:
                await conn.execute("INSERT INTO charges VALUES (%s, %s)", (order_id, amount))
                tx.result = {"order": order_id}
        return dict(tx.result)

    async with session("atx"):
        assert {"order": order} == await charge(order, 3)
        assert {"order": order} == await charge(order, 3)
    await pg_store.aclose()


# --- the forms -------------------------------------------------------------------------------


def test_urls_durability_and_errors(tmp_path: Path, postgres_url: str) -> None:
    sqlite = resolve_store(f"sqlite:///{tmp_path / 'a.db'}")
    assert isinstance(sqlite, SQLiteStore) and sqlite.durable
    postgres = resolve_store(postgres_url)
    assert isinstance(postgres, PostgresStore) and postgres.durable
    postgres.close()
    with pytest.raises(ValueError, match="sqlite:///"):
        resolve_store("sqlite://nothing")
    from retrysafe import StoreError

    unreachable = PostgresStore("postgresql://postgres@127.0.0.1:1/none", prefix="x", timeout=0.5)
    with pytest.raises(StoreError, match="PostgreSQL"):  # at first use: building connects nowhere
        unreachable.get("k")
    unreachable.close()  # its pool's threads stop here, not in a later test's collection
    broken = SQLiteStore(tmp_path / "b.db")
    broken.close()
    with pytest.raises(StoreError):
        broken.get("k")


def test_sqlite_replays_across_a_restart(tmp_path: Path) -> None:
    """A new store object on the same file (a restarted process) replays the record."""
    path = tmp_path / "restart.db"
    runs: list[int] = []

    def make() -> Any:
        @idempotent(store=SQLiteStore(path), scope="s", effect=Effect.WRITE)
        def charge(amount: int) -> int:
            runs.append(amount)
            return amount * 10

        return charge

    with session("r"):
        assert 50 == make()(5)
        assert 50 == make()(5)
    assert [5] == runs


def test_sqlite_async_on_trio_and_asyncio(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "async.db")
    runs: list[int] = []

    @idempotent(store=store, scope="s", effect=Effect.WRITE)
    async def charge(amount: int) -> int:
        runs.append(amount)
        await anyio.sleep(0.05)
        return amount

    async def main() -> None:
        async with session("a"), anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(charge, 1)

    for backend in ("asyncio", "trio"):
        anyio.run(main, backend=backend)
    assert [1] == runs
    store.close()


def test_round_trips_and_the_published_schema(pg_store: PostgresStore) -> None:
    """A fresh claim and its completion are two statements, a replay one; the schema the
    docs publish is the one the store creates."""
    from retrysafe.stores._postgres import SCHEMA_SQL

    statements: list[str] = []
    execute = pg_store._execute

    def counting(sql: str, params: Any, fetch: str) -> Any:
        statements.append(sql)
        return execute(sql, params, fetch)

    pg_store._execute = counting  # type: ignore[method-assign]

    @idempotent(store=pg_store, scope="rt", effect=Effect.WRITE)
    def charge(amount: int) -> int:
        return amount

    with session("rt"):
        charge(1)
        assert 2 == len(statements), statements
        charge(1)
    assert 3 == len(statements)
    published = (ROOT / "docs" / "postgres-schema.sql").read_text()
    assert SCHEMA_SQL.strip() in published


def test_a_replay_of_a_key_seen_completed_reads_the_record_alone(postgres_url: str) -> None:
    """Once this process has seen a key completed, its replays take a plain read of the
    record; whatever that read misses (the record gone, other arguments, expired) goes to
    the claim, which says what it is."""
    prefix = f"seen-{uuid.uuid4().hex[:8]}"
    store, other = (
        PostgresStore(postgres_url, prefix=prefix),
        PostgresStore(postgres_url, prefix=prefix),
    )
    statements: list[str] = []
    execute = store._execute

    def counting(sql: str, params: Any, fetch: str) -> Any:
        statements.append(sql.split()[0])
        return execute(sql, params, fetch)

    store._execute = counting  # type: ignore[method-assign]
    try:
        first = store.claim("k", "fp1", "me", 30.0, 600.0, False)
        assert "claimed" == first.status
        assert store.complete("k", first.fence, {"v": 1}, 600.0)
        statements.clear()
        replay = store.claim("k", "fp1", "me", 30.0, 600.0, False)
        assert ("completed", first.fence, {"v": 1}) == (replay.status, replay.fence, replay.payload)
        assert ["SELECT"] == statements  # the plain read, not the claim's statement
        # Other arguments: the read misses, the claim says mismatch.
        assert "mismatch" == store.claim("k", "fp2", "me", 30.0, 600.0, False).status
        assert "completed" == store.claim("k", "fp1", "me", 30.0, 600.0, False).status
        # A key completed by another process is seen by this one's first claim of it.
        again = other.claim("k", "fp1", "other", 30.0, 600.0, False)
        assert ("completed", {"v": 1}) == (again.status, again.payload)
        # The record gone (another process cleared it): the read misses, the claim claims.
        other.clear("")
        statements.clear()
        fresh = store.claim("k", "fp1", "me", 30.0, 600.0, False)
        assert "claimed" == fresh.status and fresh.fence != first.fence
        assert ["SELECT", "WITH"] == statements
        # Expired: completed with a short TTL, then claimed again after it.
        assert store.complete("k", fresh.fence, {"v": 2}, 0.3)
        assert "completed" == store.claim("k", "fp1", "me", 30.0, 600.0, False).status
        time.sleep(0.5)
        assert "claimed" == store.claim("k", "fp1", "me", 30.0, 600.0, False).status

        async def replay_async() -> Any:
            return await store.aclaim("k2", "fp", "me", 30.0, 600.0, False)

        claimed = anyio.run(replay_async)
        assert store.complete("k2", claimed.fence, [1, 2], 600.0)
        for backend in ("asyncio", "trio"):
            statements.clear()
            replayed = anyio.run(replay_async, backend=backend)
            assert ("completed", [1, 2]) == (replayed.status, replayed.payload)
    finally:
        store.clear("")
        store.close()
        other.close()


def test_pooled_connections_killed_by_a_restart_are_replaced(postgres_url: str) -> None:
    """After the server restarts, every pooled connection is dead: an operation that is safe
    to resend (a replay, a read) runs again on a fresh connection instead of failing."""
    store = PostgresStore(postgres_url, prefix=f"rs-{uuid.uuid4().hex[:8]}", min_size=3)
    runs: list[int] = []

    @idempotent(store=store, scope="restart", effect=Effect.WRITE)
    def charge(amount: int) -> int:
        runs.append(amount)
        return amount * 10

    try:
        with session("restart"):
            assert 50 == charge(5)
            store.set("k", {"v": 1}, 60)
            _restart_postgres()
            assert 50 == charge(5)  # replayed from the durable record, no StoreError
            assert {"v": 1} == store.get("k")
        assert [5] == runs
    finally:
        try:
            store.clear("")
        finally:
            store.close()


@pytest.mark.anyio
async def test_async_pooled_connections_after_a_restart(
    postgres_url: str, anyio_backend: str
) -> None:
    store = PostgresStore(postgres_url, prefix=f"ars-{uuid.uuid4().hex[:8]}", min_size=3)
    try:
        await store.aset("k", [1, 2], 60)
        await anyio.to_thread.run_sync(_restart_postgres)
        assert [1, 2] == await store.aget("k")
    finally:
        try:
            await store.aclear("")
        finally:  # the pools are closed even when the test failed against a dead server
            await store.aclose()
            store.close()
