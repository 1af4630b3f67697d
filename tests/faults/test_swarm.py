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
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.cluster

from retrysafe import idempotent
from retrysafe.stores import PostgresStore, RedisStore

from ..test_cluster_failover import cluster_ok, restart_node
from .test_regressions import DEADLINE_GRACE, _proxied

ORDERS = 60
WORKERS = 4
WORKER = Path(__file__).with_name("swarm_worker.py")


#: Each scenario's timeline (seconds after every worker is ready); each fault outlasts a
#: caller's 2 s deadline.
TIMELINES: dict[str, list[tuple[float, str]]] = {
    "network": [
        (0.3, "partition two clients"),
        (2.8, "heal"),
        (3.3, "drop replies"),
        (5.8, "cut every connection"),
        (6.3, "hold everything"),
        (8.8, "heal"),
        (10.0, "stop"),
    ],
    "pause": [  # owners SIGSTOPped past their 3 s lease, mid-call
        (0.3, "pause worker 0"),
        (1.0, "pause worker 1"),
        (4.3, "resume worker 0"),
        (5.0, "resume worker 1"),
        (7.0, "stop"),
    ],
    "failover": [  # Redis Cluster: a primary paused, then SIGKILLed (its replica promoted)
        (0.3, "server stall"),
        (3.8, "server crash"),
        (12.0, "stop"),
    ],
    "server": [  # Redis: CLIENT PAUSE, then SIGKILL and restart; PostgreSQL: backends killed
        (0.3, "server stall"),
        (3.8, "server crash"),
        (5.3, "server back"),
        (6.0, "server crash"),
        (7.0, "server back"),
        (9.0, "stop"),
    ],
}


def _faults(
    scenario: str,
    proxies: list[Any],
    workers: list[subprocess.Popen[bytes]],
    results: list[Path],
    server: Any,
    paused: dict[int, list[float]],
) -> list[str]:
    """Run ``scenario``'s timeline until every worker is done; returns what was injected
    (``paused`` gets each worker's stop and continue times)."""
    done: list[str] = []
    ready = time.monotonic() + 60
    while time.monotonic() < ready and not all(Path(f"{r}.ready").exists() for r in results):
        time.sleep(0.02)
    results[0].with_name("go").touch()
    began = time.monotonic()
    for at, what in TIMELINES[scenario]:
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
        elif what == "hold everything":
            for proxy in proxies:
                proxy.set("hold")
        elif what.startswith(("pause worker", "resume worker")):
            sig = signal.SIGSTOP if what.startswith("pause") else signal.SIGCONT
            n = int(what.rsplit(" ", 1)[1])
            workers[n].send_signal(sig)
            paused.setdefault(n, []).append(time.monotonic())
        elif what.startswith("server"):
            server(what.split(" ", 1)[1])
        elif what == "stop":
            results[0].with_name("stop").touch()
        done.append(what)
    for worker in workers:
        worker.wait(180)
    return done


class _PrivateRedis:
    """A redis-server of this test's own (AOF, fsync always: a restart keeps every record a
    client was told of), to stall, kill and restart."""

    def __init__(self, tmp_path: Path) -> None:
        self.binary = os.environ.get("REDIS_SERVER") or shutil.which("redis-server") or ""
        self.dir = tmp_path / "redis"
        self.dir.mkdir()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir)]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_timeout=1).ping():
                    return proc
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("the private redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __call__(self, what: str) -> None:
        if what == "stall":
            redis.Redis(port=self.port).execute_command("CLIENT", "PAUSE", 3000, "ALL")
        elif what == "crash":
            self.proc.kill()
            self.proc.wait()
        elif what == "back":
            self.proc = self._start()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


class _ClusterNode:
    """A primary of the suite's Redis Cluster (not the URL's startup node): paused, then
    SIGKILLed; restarted with its identity at the end (it rejoins as a replica)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ports = [int(p) for p in os.environ["REDIS_CLUSTER_PORTS"].split()]
        startup = int(url.rsplit(":", 1)[1])
        raw = redis.cluster.RedisCluster.from_url(url.replace("+cluster", ""))
        self.victim = next(int(n.port) for n in raw.get_primaries() if int(n.port) != startup)
        raw.close()
        self.killed = False

    def __call__(self, what: str) -> None:
        node = redis.Redis(port=self.victim)
        if what == "stall":
            node.execute_command("CLIENT", "PAUSE", 3000, "ALL")
        elif what == "crash":
            os.kill(int(node.info("server")["process_id"]), signal.SIGKILL)
            self.killed = True

    def healed(self) -> None:
        """Wait until the cluster is whole again: every other node reports state ok and,
        after a kill, none of them still gives the killed primary a slot (before the
        failure is detected every node still says ok, and a client would go to it)."""
        deadline = time.monotonic() + 30
        others = [p for p in self.ports if p != self.victim]
        while time.monotonic() < deadline:
            if cluster_ok(others) and not (self.killed and self._victim_serves(others)):
                return
            time.sleep(0.2)

    def _victim_serves(self, others: list[int]) -> bool:
        for port in others:
            try:
                nodes = redis.Redis(port=port, socket_timeout=1).execute_command("CLUSTER", "NODES")
            except redis.RedisError:
                return True
            text = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
            for line in text.splitlines():
                fields = line.split()
                if len(fields) > 8 and f":{self.victim}@" in fields[1]:
                    return True  # still holds slots in this node's view
        return False

    def close(self) -> None:
        if self.killed:
            self.killed = False
            restart_node(Path(os.environ["REDIS_CLUSTER_DIR"]), self.victim, self.ports)


class _Backends:
    """PostgreSQL's faults: stall every other backend on a lock of the records table held
    3 s, then terminate every other backend (as a failover or an admin would; the server
    itself stays up: it is the suite's)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self, what: str) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            if what == "stall":
                with conn.transaction():
                    conn.execute("LOCK TABLE retrysafe_records IN ACCESS EXCLUSIVE MODE")
                    time.sleep(3.0)
            elif what == "crash":
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE pid <> pg_backend_pid() AND datname = current_database()"
                )

    def close(self) -> None:
        pass


#: (timeline, server): a Redis Cluster cannot sit behind the proxy (its MOVED replies name
#: the nodes), so it runs the pause and a primary's failover.
RUNS = [
    ("network", "redis"),
    ("network", "postgres"),
    ("pause", "redis"),
    ("pause", "postgres"),
    ("pause", "cluster"),
    ("server", "redis"),
    ("server", "postgres"),
    ("failover", "cluster"),
]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize(("scenario", "server"), RUNS)
def test_a_swarm_under_faults_charges_once_and_leaves_nothing_unexplained(
    scenario: str, server: str, backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if server == "cluster":
        faults: Any = _ClusterNode(request.getfixturevalue("redis_cluster_url"))
        request.addfinalizer(faults.close)
        url = faults.url
    elif server == "redis":
        faults = _PrivateRedis(tmp_path)
        request.addfinalizer(faults.close)
        url = faults.url
    else:
        url = request.getfixturevalue("postgres_url")
        faults = _Backends(url)
    prefix, scope = f"swarm-{uuid.uuid4().hex[:8]}", f"charge-{uuid.uuid4().hex[:6]}"
    direct: Any = (
        PostgresStore(url, prefix=prefix)
        if server == "postgres"
        else RedisStore(url, prefix=prefix)
    )
    if server == "postgres":
        # The workers' stores never create it (a fault mid-creation would fail them all):
        # in `make test-faults` alone no earlier test has.
        direct.create_schema()
    proxies, workers = [], []
    paused: dict[int, list[float]] = {}
    ledger = tmp_path / "ledger"
    for n in range(WORKERS):
        proxied = url
        if server != "cluster":
            proxy, proxied = _proxied(url)
            proxies.append(proxy)
        args = [proxied, prefix, scope, backend, str(ORDERS), str(ledger)]
        args += [str(tmp_path / f"result-{n}.json"), str(n)]
        workers.append(subprocess.Popen([sys.executable, str(WORKER), *args]))
    try:
        results_at = [tmp_path / f"result-{n}.json" for n in range(WORKERS)]
        injected = _faults(scenario, proxies, workers, results_at, faults, paused)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGCONT)
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

    if isinstance(faults, _ClusterNode):
        faults.healed()  # the replica promoted
        direct.close()  # its slot map still names the killed primary: read with a new client
        direct = RedisStore(url, prefix=prefix)
        charge = idempotent(store=direct, effect="write", scope=scope)(charge.__wrapped__)
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
        "scenario": scenario,
        "server": server,
        "loop": backend,
        "injected": injected,
        "calls": sum(outcomes.values()) + sum(len(r["raw"]) for r in results),
        "outcomes": dict(outcomes),
        "charged": len(charges),
        "records": dict(left),
    }
    print(json.dumps(report))
    assert [] == [order for order, n in charges.items() if n > 1], report  # no duplicate
    assert [] == [raw for r in results for raw in r["raw"]], report
    # A caller that was itself stopped is measured from when it was continued.
    late_callers = [
        (n, started, ended)
        for n, r in enumerate(results)
        for started, ended in r["past_deadline"]
        if not any(
            stop >= started and ended - resume <= 1.0 + DEADLINE_GRACE
            for stop, resume in zip(paused.get(n, [])[0::2], paused.get(n, [])[1::2], strict=True)
        )
    ]
    assert [] == late_callers, report
    assert [] == late, report  # no side effect after its caller's deadline
    assert [] == unexplained, report  # nothing UNKNOWN that never ran
    assert all(r["settled"] for r in results), report
    direct.close()
