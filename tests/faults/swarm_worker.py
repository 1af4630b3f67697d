"""One process of the fault run: charges every order (in its own order), each under a
deadline, and writes what happened. The side effect is a line in a separate ledger file,
with whether the caller's deadline had passed when it was made.

Usage: swarm_worker.py STORE_URL PREFIX SCOPE BACKEND ORDERS LEDGER RESULT SEED
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections import Counter

import anyio
import anyio.lowlevel

from retrysafe import RetrysafeError, idempotent, side_effect_started
from retrysafe._settle import wait_settled
from retrysafe.stores import PostgresStore, RedisStore

DEADLINE = 2.0
PACE = 0.02


def main() -> None:
    url, prefix, scope, backend, orders_n, ledger, result, seed = sys.argv[1:9]
    if url.startswith("redis"):
        store: object = RedisStore(url, prefix=prefix, command_timeout=2)
    else:
        store = PostgresStore(url, prefix=prefix, timeout=2, command_timeout=2, create_schema=False)
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    @idempotent(
        store=store,
        effect="write",
        scope=scope,
        lease_seconds=3,
        wait_seconds=1.5,
        checkpoint=True,
    )
    async def charge(order: str) -> str:
        await anyio.sleep(0.1)  # preparing the request: where a pause usually lands
        side_effect_started()  # right before acting: raises if the lease is gone
        late = anyio.current_effective_deadline() < anyio.current_time()
        os.write(fd, f"{order} {int(late)}\n".encode())  # the side effect
        return order

    orders = [f"o-{i}" for i in range(int(orders_n))]
    go = os.path.join(os.path.dirname(result), "go")
    stop = os.path.join(os.path.dirname(result), "stop")
    random.Random(int(seed)).shuffle(orders)
    outcomes: Counter[str] = Counter()
    raw: list[str] = []
    past_deadline: list[tuple[float, float]] = []

    async def run() -> None:
        await charge(f"warm-{seed}")  # connected: the fault timeline starts when all are
        os.close(os.open(result + ".ready", os.O_CREAT | os.O_WRONLY, 0o644))
        while not os.path.exists(go):  # noqa: ASYNC110, ASYNC240 (another process's signal)
            await anyio.sleep(0.01)
        for order in orders * 20:  # again and again (replays), until told to stop
            if os.path.exists(stop):  # noqa: ASYNC240
                break
            started = time.monotonic()
            try:
                with anyio.fail_after(DEADLINE):
                    await charge(order)
                outcomes["ok"] += 1
            except TimeoutError:
                outcomes["deadline"] += 1
            except RetrysafeError as exc:
                outcomes[type(exc).__name__] += 1
            except Exception as exc:  # a raw exception: what must never reach a caller
                raw.append(f"{type(exc).__module__}.{type(exc).__name__}")
            ended = time.monotonic()
            if ended - started > DEADLINE + 1.0:
                past_deadline.append((started, ended))
            await anyio.sleep(PACE)

    anyio.run(run, backend=backend)
    settled = wait_settled(30)
    with open(result, "w") as out:
        json.dump(
            {"outcomes": outcomes, "raw": raw, "past_deadline": past_deadline, "settled": settled},
            out,
        )


if __name__ == "__main__":
    main()
