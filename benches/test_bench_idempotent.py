"""@idempotent replay overhead (memory) against cache_tool's hit overhead, in one run.

Target (issue 5): a completed-record replay costs <= 2 x the cache-hit overhead.
Redis round trips (one per replay, two per claim + complete) are asserted in the tests.
`python benches/ratios.py <json> --baseline bare`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from retrysafe import Effect, cache_tool, idempotent, session

ARGS = {"customer_id": "cus_123", "amount_cents": 4200, "currency": "usd"}
BATCH = 1000


async def tool(args: dict[str, Any]) -> dict[str, Any]:
    return {"id": "ch_1"}


CONTENDERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "bare": tool,
    "cache_tool hit": cache_tool(tool),
    "retrysafe idempotent replay": idempotent(effect=Effect.WRITE)(tool),
}


@pytest.mark.parametrize("name", list(CONTENDERS))
def test_replay_overhead(benchmark: Any, name: str) -> None:
    fn = CONTENDERS[name]
    loop = asyncio.new_event_loop()

    async def batch() -> int:
        n = 0
        for _ in range(BATCH):
            n += (await fn(ARGS)) is not None
        return n

    with session("bench-conversation"):  # writes are recorded per conversation
        try:
            loop.run_until_complete(
                batch()
            )  # the first call completes the record / fills the cache
            benchmark.group = f"idempotent replay per {BATCH} calls (memory)"
            assert BATCH == benchmark(lambda: loop.run_until_complete(batch()))
        finally:
            loop.close()
