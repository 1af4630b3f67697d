"""A worker process for the cross-process idempotency tests (python -m tests.idempotent_worker).

    idempotent_worker URL PREFIX MODE CALLS

MODE ``charge``: CALLS concurrent identical WRITE calls; prints the distinct results seen.
MODE ``hang-write`` / ``hang-read``: one call whose side effect never finishes (the test
kills the process with SIGKILL while it holds the record). Each execution increments the
Redis counter ``PREFIX:effects``.
"""

from __future__ import annotations

import sys

import anyio
import orjson
import redis

from retrysafe import Effect, idempotent, session
from retrysafe.stores import RedisStore


def main() -> None:
    url, prefix, mode, calls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    counter = redis.Redis.from_url(url)
    store = RedisStore(url, prefix=prefix)
    kind = Effect.READ if mode == "hang-read" else Effect.WRITE

    @idempotent(
        store=store, scope="payments.charge", effect=kind, lease_seconds=1.0, wait_seconds=20
    )
    async def charge(customer: str, amount: int) -> dict[str, object]:
        n = counter.incr(f"{prefix}:effects")
        await anyio.sleep(3600 if mode.startswith("hang") else 0.3)
        return {"charge": f"ch_{n}", "amount": amount}

    async def run() -> None:
        results: list[bytes] = []

        async def one() -> None:
            results.append(orjson.dumps(await charge("cus_1", 500)))

        async with session("swarm-session"):
            async with anyio.create_task_group() as tg:
                for _ in range(calls):
                    tg.start_soon(one)
        print(orjson.dumps(sorted({r.decode() for r in results})).decode(), flush=True)
        await store.aclose()

    anyio.run(run)


if __name__ == "__main__":
    main()
