"""A worker process for the cross-process idempotency tests (python -m tests.idempotent_worker).

    idempotent_worker URL PREFIX MODE CALLS

MODE ``charge``: CALLS concurrent identical WRITE calls; prints the distinct results seen.
MODE ``keys``: CALLS concurrent calls for each of 40 customers (keys on every primary of a
cluster); prints the distinct results seen per customer, and counts effects per customer.
MODE ``failover``: as ``keys``, over about 4 seconds (a primary is killed meanwhile); each
effect is appended to the file WITNESS (outside Redis, which may lose writes in a failover);
prints {"results": {customer: [...]}, "errors": {error type: count}, "unknown": [customers
whose outcome was reported UNKNOWN]}.
MODE ``hang-write`` / ``hang-read``: one call whose side effect never finishes (the test
kills the process with SIGKILL while it holds the record). MODE ``done-then-hang``: one
call that completes, then the process hangs (killed after its result was recorded).

URL is a Redis URL (each execution increments the Redis counter ``PREFIX:effects``), or a
``sqlite:///`` / ``postgresql://`` URL of a durable store (each execution appends a line to
the file named by the environment variable ``RETRYSAFE_EFFECTS``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import anyio
import orjson

from retrysafe import Effect, idempotent, session
from retrysafe.stores import PostgresStore, RedisStore, Store, resolve_store

from .redis_clients import raw_client


class FileCounter:
    """Side effects counted in a file, outside the store under test: one line each."""

    def __init__(self, path: str) -> None:
        self.path = path

    def incr(self, name: str) -> int:
        with open(self.path, "a") as f:  # one short append per effect: atomic
            f.write(name + "\n")
        with open(self.path) as f:
            return sum(line.strip() == name for line in f)


def _store_and_counter(url: str, prefix: str) -> tuple[Store, Any]:
    if url.startswith("redis"):
        return RedisStore(url, prefix=prefix), raw_client(url)
    counter = FileCounter(os.environ["RETRYSAFE_EFFECTS"])
    if url.startswith("postgres"):
        return PostgresStore(url, prefix=prefix), counter
    return resolve_store(url), counter


def main() -> None:
    url, prefix, mode, calls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    witness = sys.argv[5] if len(sys.argv) > 5 else None
    store, counter = _store_and_counter(url, prefix)
    ready = os.environ.get("RETRYSAFE_READY")
    if ready:  # the store is built: a test may now disturb the server
        with open(ready, "a") as f:
            f.write(f"{os.getpid()}\n")
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

    if mode == "done-then-hang":

        async def done_then_hang() -> None:
            async with session("swarm-session"):
                print(orjson.dumps(await charge("cus_1", 500)).decode(), flush=True)
            await anyio.sleep(3600)

        anyio.run(done_then_hang)
        return

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


async def failover(charge: Any, customers: list[str], calls: int, store: Store) -> None:
    """Calls for every customer in rounds over ~4 s, recording results and error types."""
    results: dict[str, set[str]] = {c: set() for c in customers}
    errors: dict[str, int] = {}
    unknown: set[str] = set()

    async def one(customer: str) -> None:
        try:
            results[customer].add(orjson.dumps(await charge(customer, 500)).decode())
        except Exception as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            if type(exc).__name__ == "OutcomeUnknownError":
                unknown.add(customer)

    async with session("swarm-session"):
        for _ in range(8):
            async with anyio.create_task_group() as tg:
                for customer in customers:
                    for _ in range(calls):
                        tg.start_soon(one, customer)
            await anyio.sleep(0.5)
    report = {
        "results": {c: sorted(r) for c, r in results.items()},
        "errors": errors,
        "unknown": sorted(unknown),
    }
    print(orjson.dumps(report).decode(), flush=True)
    await store.aclose()


if __name__ == "__main__":
    main()
