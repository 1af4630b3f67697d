"""A worker process for the cross-process cache tests (run with python -m tests.swarm_worker).

    swarm_worker URL PREFIX MODE [CALLS]

MODE ``concurrent``: CALLS concurrent identical calls of a slow cached function, printing
how many returned the expected value. MODE ``hang``: one call whose execution never ends
(the test kills this process with SIGKILL while it holds the lease).
Every execution increments the Redis counter ``PREFIX:executions``.
"""

from __future__ import annotations

import sys

import anyio

from retrysafe import cache_tool
from retrysafe.stores import RedisStore

from .redis_clients import raw_client


def main() -> None:
    url, prefix, mode = sys.argv[1:4]
    calls = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    counter = raw_client(url)
    store = RedisStore(url, prefix=prefix)

    @cache_tool(store=store, namespace="swarm.slow", lease_seconds=1.0, ttl_seconds=60)
    async def slow(query: str) -> dict[str, str]:
        counter.incr(f"{prefix}:executions")
        await anyio.sleep(3600 if mode == "hang" else 0.5)
        return {"answer": query.upper()}

    async def run() -> None:
        results: list[dict[str, str]] = []

        async def one() -> None:
            results.append(await slow("swarm"))

        async with anyio.create_task_group() as tg:
            for _ in range(calls):
                tg.start_soon(one)
        print(sum(r == {"answer": "SWARM"} for r in results), flush=True)
        await store.aclose()

    anyio.run(run)


if __name__ == "__main__":
    main()
