"""A worker process for the cross-process idempotency tests (python -m tests.idempotent_worker).

    idempotent_worker URL PREFIX MODE CALLS

MODE ``charge``: CALLS concurrent identical WRITE calls; prints the distinct results seen.
MODE ``keys``: CALLS concurrent calls for each of 40 customers (keys on every primary of a
cluster); prints the distinct results seen per customer, and counts effects per customer.
MODE ``hang-write`` / ``hang-read``: one call whose side effect never finishes (the test
kills the process with SIGKILL while it holds the record). Each execution increments the
Redis counter ``PREFIX:effects``.
"""

from __future__ import annotations

import sys

import anyio
import orjson

from retrysafe import Effect, idempotent, session
from retrysafe.stores import RedisStore

from .redis_clients import raw_client


def main() -> None:
    url, prefix, mode, calls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    counter = raw_client(url)
    store = RedisStore(url, prefix=prefix)
    kind = Effect.READ if mode == "hang-read" else Effect.WRITE

    # A short lease for the tests that kill the owner; a long one under a swarm's load (a
    # heartbeat starved past its lease would rightly turn the write UNKNOWN).
    lease = 1.0 if mode.startswith("hang") else 10.0

    @idempotent(
        store=store, scope="payments.charge", effect=kind, lease_seconds=lease, wait_seconds=30
    )
    async def charge(customer: str, amount: int) -> dict[str, object]:
        n = counter.incr(f"{prefix}:effects")
        if mode == "keys":
            counter.incr(f"{prefix}:effects:{customer}")
        await anyio.sleep(3600 if mode.startswith("hang") else 0.3)
        return {"charge": f"ch_{n}", "amount": amount}

    customers = [f"cus_{i}" for i in range(40)] if mode == "keys" else ["cus_1"]

    async def run() -> None:
        results: dict[str, set[str]] = {c: set() for c in customers}

        async def one(customer: str) -> None:
            results[customer].add(orjson.dumps(await charge(customer, 500)).decode())

        async with session("swarm-session"):
            async with anyio.create_task_group() as tg:
                for customer in customers:
                    for _ in range(calls):
                        tg.start_soon(one, customer)
        if mode == "keys":
            print(orjson.dumps({c: sorted(r) for c, r in results.items()}).decode(), flush=True)
        else:
            print(orjson.dumps(sorted(results["cus_1"])).decode(), flush=True)
        await store.aclose()

    anyio.run(run)


if __name__ == "__main__":
    main()
