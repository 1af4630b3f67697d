"""The fault run as a swarm: 4 processes charge the same orders, each through its own
fault proxy to a real redis-server or PostgreSQL, on asyncio and on trio, while the network
partitions two of them, drops replies, cuts every connection and holds everything. Every
side effect is a line in a separate ledger. After the network heals:

- no order is charged twice;
- no caller got a raw exception, and none was back later than its deadline + 1 s;
- no side effect started after its caller's deadline;
- no record is left UNKNOWN (or in progress) for an order that was never charged: only a
  write that may have happened waits for a person.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from retrysafe import idempotent
from retrysafe.stores import PostgresStore, RedisStore

from .test_regressions import _proxied

ORDERS = 60
WORKERS = 4
WORKER = Path(__file__).with_name("swarm_worker.py")


def _faults(
    proxies: list[Any], workers: list[subprocess.Popen[bytes]], results: list[Path]
) -> list[str]:
    """The fault timeline, until every worker is done; returns what was injected."""
    steps: list[tuple[float, str]] = [  # each fault outlasts a caller's 2 s deadline
        (0.3, "partition two clients"),
        (2.8, "heal"),
        (3.3, "drop replies"),
        (5.8, "cut every connection"),
        (6.3, "hold everything"),
        (8.8, "heal"),
        (10.0, "stop"),
    ]
    done: list[str] = []
    ready = time.monotonic() + 60
    while time.monotonic() < ready and not all(Path(f"{r}.ready").exists() for r in results):
        time.sleep(0.02)
    results[0].with_name("go").touch()
    began = time.monotonic()
    for at, what in steps:
        while time.monotonic() - began < at:
            time.sleep(0.02)
        if what == "partition two clients":
            for proxy in proxies[:2]:
                proxy.set("hold")
        elif what == "heal":
            for proxy in proxies:
                proxy.set("pass")
        elif what == "drop replies":
            for proxy in proxies:
                proxy.set("drop_replies")
        elif what == "cut every connection":
            for proxy in proxies:
                proxy.set("pass")
                proxy.reset()
        elif what == "stop":
            results[0].with_name("stop").touch()
        elif what == "hold everything":
            for proxy in proxies:
                proxy.set("hold")
        done.append(what)
    for worker in workers:
        worker.wait(180)
    return done


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("server", ["redis", "postgres"])
def test_a_swarm_under_faults_charges_once_and_leaves_nothing_unexplained(
    server: str, backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = request.getfixturevalue("redis_url" if server == "redis" else "postgres_url")
    prefix, scope = f"swarm-{uuid.uuid4().hex[:8]}", f"charge-{uuid.uuid4().hex[:6]}"
    direct: Any = (
        RedisStore(url, prefix=prefix) if server == "redis" else PostgresStore(url, prefix=prefix)
    )
    proxies, workers = [], []
    ledger = tmp_path / "ledger"
    for n in range(WORKERS):
        proxy, proxied = _proxied(url)
        proxies.append(proxy)
        args = [proxied, prefix, scope, backend, str(ORDERS), str(ledger)]
        args += [str(tmp_path / f"result-{n}.json"), str(n)]
        workers.append(subprocess.Popen([sys.executable, str(WORKER), *args]))
    try:
        injected = _faults(
            proxies, workers, [tmp_path / f"result-{n}.json" for n in range(WORKERS)]
        )
    finally:
        for proxy in proxies:
            proxy.close()
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert all(w.returncode == 0 for w in workers), [w.returncode for w in workers]
    results = [json.loads((tmp_path / f"result-{n}.json").read_text()) for n in range(WORKERS)]
    lines = ledger.read_text().split() if ledger.exists() else []
    charges = Counter(lines[0::2])
    late = [order for order, flag in zip(lines[0::2], lines[1::2], strict=True) if flag == "1"]

    @idempotent(store=direct, effect="write", scope=scope)
    async def charge(order: str) -> str:
        return order

    time.sleep(3.2)  # past the lease: a claim left behind is now what a person would find
    left: Counter[str] = Counter()
    unexplained = []
    for i in range(ORDERS):
        order = f"o-{i}"
        record = charge.idempotency.record(charge.idempotency.key_for(order))
        state = None if record is None else record.state
        left[str(state)] += 1
        if state in ("unknown", "in_progress") and charges[order] == 0:
            unexplained.append((order, state))
    outcomes = sum((Counter(r["outcomes"]) for r in results), Counter())
    report = {
        "injected": injected,
        "calls": sum(outcomes.values()) + sum(len(r["raw"]) for r in results),
        "outcomes": dict(outcomes),
        "charged": len(charges),
        "records": dict(left),
    }
    print(json.dumps(report))
    assert [] == [order for order, n in charges.items() if n > 1], report  # no duplicate
    assert [] == [raw for r in results for raw in r["raw"]], report
    assert 0 == sum(r["past_deadline"] for r in results), report
    assert [] == late, report  # no side effect after its caller's deadline
    assert [] == unexplained, report  # nothing UNKNOWN that never ran
    assert all(r["settled"] for r in results), report
    direct.close()
