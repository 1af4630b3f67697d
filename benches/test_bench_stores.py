"""The durable stores' replay path (issue 16), same run as their references.

- SQLiteStore: an ``@idempotent`` sync call replayed from its record (target <= 30 us),
  beside a bare ``SELECT`` of one row by primary key on the same file with sqlite3.
- PostgresStore: the same replay (one round trip: a key this process saw completed is read
  by its primary key, with its arguments' fingerprint and expiry checked in the statement)
  against a bare ``SELECT`` of one row by primary key through the
  same connection pool (target <= 1.5x, paired).
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from retrysafe import Effect, idempotent, session
from retrysafe.stores import PostgresStore, SQLiteStore

from .conftest import measure, paired_ratio


def _replayed(store: Any) -> Any:
    @idempotent(store=store, scope="bench", effect=Effect.WRITE)
    def charge(customer: str, amount_cents: int) -> dict[str, Any]:
        return {"charge": "ch_1", "customer": customer, "amount": amount_cents}

    with session("bench"):
        charge("cus_42", 1999)  # recorded once; every later call replays
    return charge


def test_sqlite_replay(benchmark: Any, tmp_path: Path) -> None:
    benchmark.group = "durable replay: SQLite (per call)"
    store = SQLiteStore(tmp_path / "bench.db", prefix=f"b{uuid.uuid4().hex[:6]}")
    charge = _replayed(store)
    with session("bench"):
        measure(benchmark, charge, "cus_42", 1999)
    store.close()


def test_sqlite_bare_select(benchmark: Any, tmp_path: Path) -> None:
    benchmark.group = "durable replay: SQLite (per call)"
    path = tmp_path / "bare.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID")
    conn.execute("INSERT INTO t VALUES ('k', x'00112233')")

    def select() -> Any:
        return conn.execute("SELECT value FROM t WHERE key = ?", ("k",)).fetchone()

    measure(benchmark, select)
    conn.close()


@pytest.fixture
def pg_store(postgres_url: str) -> Any:
    store = PostgresStore(postgres_url, prefix=f"bench-{uuid.uuid4().hex[:6]}")
    yield store
    store.clear("")
    store.close()


def _bare_select(store: PostgresStore) -> Any:
    store.set("bare", {"charge": "ch_1"}, 600)
    key = store._k("bare")
    pool = store._pool

    def select() -> Any:
        with pool.connection() as conn:
            return conn.execute("SELECT value FROM retrysafe_kv WHERE key = %s", (key,)).fetchone()

    return select


def test_postgres_replay(benchmark: Any, pg_store: PostgresStore) -> None:
    benchmark.group = "durable replay: PostgreSQL (per call)"
    charge = _replayed(pg_store)
    with session("bench"):
        measure(benchmark, charge, "cus_42", 1999, rounds=20)


def test_postgres_bare_select(benchmark: Any, pg_store: PostgresStore) -> None:
    benchmark.group = "durable replay: PostgreSQL (per call)"
    measure(benchmark, _bare_select(pg_store), rounds=20)


def test_postgres_replay_paired(benchmark: Any, pg_store: PostgresStore) -> None:
    """PostgresStore replay / a bare SELECT by primary key through the same pool."""
    benchmark.group = "postgres replay / bare SELECT"
    benchmark.extra_info["target"] = 1.5
    charge = _replayed(pg_store)
    select = _bare_select(pg_store)
    with session("bench"):
        paired_ratio(benchmark, lambda: charge("cus_42", 1999), select)
