"""A worker process for the cross-process idempotency tests (python -m tests.idempotent_worker).

    idempotent_worker URL PREFIX MODE CALLS

MODE ``charge``: CALLS concurrent identical WRITE calls; prints the distinct results seen.
MODE ``keys``: CALLS concurrent calls for each of 40 customers (keys on every primary of a
cluster); prints the distinct results seen per customer, and counts effects per customer.
MODE ``failover``: as ``keys``, over about 4 seconds (a primary is killed meanwhile); each
effect is appended to the file WITNESS (outside Redis, which may lose writes in a failover);
prints {"results": {customer: [...]}, "errors": {error type: count}}.
MODE ``hang-write`` / ``hang-read``: one call whose side effect never finishes (the test
kills the process with SIGKILL while it holds the record). Each execution increments the
Redis counter ``PREFIX:effects``.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import orjson

from retrysafe import Effect, idempotent, session
from retrysafe.stores import RedisStore

from .redis_clients import raw_client


def main() -> None:
    url, prefix, mode, calls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    witness = sys.argv[5] if len(sys.argv) > 5 else None
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
        if witness is not None:
            with open(witness, "a") as f:  # noqa: ASYNC230 (one short append, atomic)
                f.write(customer + "\n")
            await anyio.sleep(0.3)
            return {"charge": f"ch_{customer}", "amount": amount}
        n = counter.incr(f"{prefix}:effects")
        if mode == "keys":
            counter.incr(f"{prefix}:effects:{customer}")
        await anyio.sleep(3600 if mode.startswith("hang") else 0.3)
        return {"charge": f"ch_{n}", "amount": amount}

    customers = [f"cus_{i}" for i in range(40)] if mode in ("keys", "failover") else ["cus_1"]
    if mode == "failover":
        anyio.run(failover, charge, customers, calls, store)
        return

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


async def failover(charge: Any, customers: list[str], calls: int, store: RedisStore) -> None:
    """Calls for every customer in rounds over ~4 s, recording results and error types."""
    results: dict[str, set[str]] = {c: set() for c in customers}
    errors: dict[str, int] = {}

    async def one(customer: str) -> None:
        try:
            results[customer].add(orjson.dumps(await charge(customer, 500)).decode())
        except Exception as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

    async with session("swarm-session"):
        for _ in range(8):
            async with anyio.create_task_group() as tg:
                for customer in customers:
                    for _ in range(calls):
                        tg.start_soon(one, customer)
            await anyio.sleep(0.5)
    report = {"results": {c: sorted(r) for c, r in results.items()}, "errors": errors}
    print(orjson.dumps(report).decode(), flush=True)
    await store.aclose()


if __name__ == "__main__":
    main()
