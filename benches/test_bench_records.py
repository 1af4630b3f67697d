"""Listing records for operators: the first page of ``retrysafe records list`` over
1,000,000 records, on PostgreSQL and on a single Redis (target: under 200 ms), all records
and the UNKNOWN ones (1 in 1,000). The records are written in the stores' own layout, in
bulk (a million claims through the API would take the bench's whole budget)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from retrysafe import records
from retrysafe.stores import PostgresStore, RedisStore

COUNT = int(os.environ.get("RETRYSAFE_BENCH_RECORDS", "1000000"))
META = json.dumps({"tool": "charge", "tenant": "acme", "conversation": "c"})


@pytest.fixture(scope="module")
def postgres_million(postgres_url: str) -> Iterator[PostgresStore]:
    store = PostgresStore(postgres_url, prefix=f"million-{uuid.uuid4().hex[:6]}")
    store.get("warm")  # the schema
    prefix = store._k("")
    with store._pool.connection() as conn:
        conn.execute(
            "INSERT INTO retrysafe_records (key, state, fp, owner, fence, nonce, lease, "
            "payload, expires, unstarted, meta, created, updated) "
            "SELECT %s || 'idem:' || lpad(to_hex(n), 64, '0'), "
            "CASE WHEN n %% 1000 = 0 THEN 'unknown' ELSE 'completed' END, 'fp', NULL, "
            "'1000000000001', NULL, 0, NULL, 4e9, false, %s, 1.7e9 + n, 1.7e9 + n "
            "FROM generate_series(1, %s) AS n",
            (prefix, META, COUNT),
        )
        conn.execute("ANALYZE retrysafe_records")
    yield store
    with store._pool.connection() as conn:
        conn.execute("DELETE FROM retrysafe_records WHERE key LIKE %s", (prefix + "%",))
    store.close()


@pytest.fixture(scope="module")
def redis_million(redis_url: str) -> Iterator[RedisStore]:
    store = RedisStore(redis_url, prefix=f"million-{uuid.uuid4().hex[:6]}")
    client = store._sync
    index, unknown = store._indexes
    for start in range(1, COUNT + 1, 10_000):
        pipe = client.pipeline(transaction=False)
        scores: dict[str, int] = {}
        for n in range(start, min(start + 10_000, COUNT + 1)):
            name = store._record(f"idem:{n:064x}")
            state = "unknown" if n % 1000 == 0 else "completed"
            created = 1_700_000_000_000 + n * 1000
            pipe.hset(
                name,
                mapping={
                    "state": state,
                    "fp": "fp",
                    "fence": "1000000000001",
                    "meta": META,
                    "created": created,
                    "updated": created,
                },
            )
            scores[name] = created
            if state == "unknown":
                pipe.zadd(unknown, {name: created})
        pipe.zadd(index, scores)
        pipe.execute()
    yield store
    store.clear("")
    store.close()


def _first_page(store: Any, state: str | None) -> Any:
    page = records.list(store, state=state, limit=50)
    assert 50 == len(page.records) and page.next is not None
    return page


@pytest.mark.parametrize("state", [None, "unknown"], ids=["all", "unknown"])
def test_postgres_first_page_of_a_million(
    benchmark: Any, postgres_million: PostgresStore, state: str | None
) -> None:
    benchmark.group = "records list: first page of 1,000,000 (target < 200 ms)"
    benchmark.pedantic(_first_page, args=(postgres_million, state), rounds=20, warmup_rounds=2)


@pytest.mark.parametrize("state", [None, "unknown"], ids=["all", "unknown"])
def test_redis_first_page_of_a_million(
    benchmark: Any, redis_million: RedisStore, state: str | None
) -> None:
    benchmark.group = "records list: first page of 1,000,000 (target < 200 ms)"
    benchmark.pedantic(_first_page, args=(redis_million, state), rounds=20, warmup_rounds=2)


def test_postgres_a_page_deep_in_a_million(benchmark: Any, postgres_million: PostgresStore) -> None:
    """The page after a cursor half way down: keyset paging costs what the first page does."""
    benchmark.group = "records list: a page half way down 1,000,000"
    cursor = f"{1.7e9 + COUNT // 2!r}/idem:{COUNT // 2:064x}"
    benchmark.pedantic(
        lambda: records.list(postgres_million, after=cursor, limit=50), rounds=20, warmup_rounds=2
    )


def test_redis_a_page_deep_in_a_million(benchmark: Any, redis_million: RedisStore) -> None:
    benchmark.group = "records list: a page half way down 1,000,000"
    created = (1_700_000_000_000 + COUNT // 2 * 1000) / 1000
    cursor = f"{created!r}/idem:{COUNT // 2:064x}"
    benchmark.pedantic(
        lambda: records.list(redis_million, after=cursor, limit=50), rounds=20, warmup_rounds=2
    )
