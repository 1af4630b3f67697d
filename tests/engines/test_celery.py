"""Celery 5 with a Redis broker and its prefork pool, run for real: a worker started here,
40 charge units (see units.py), workers SIGKILLed right after a charge, transient errors
after one. Naively 16 units are charged twice; with ``task_cls=Task`` none is, every unit
either completes or fails at once as UNKNOWN (never retried into exhaustion), and stores
built at import serve every prefork child its own rows."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from .units import KILLED, UNITS, judge, ledger

ROOT = Path(__file__).resolve().parents[2]


def _run(
    broker: str,
    directory: Path,
    mode: str,
    store: str | None,
    pool: str = "prefork",
    **extra: str,
) -> dict[int, Any]:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, ENGINE_BROKER=broker, ENGINE_DIR=str(directory), ENGINE_MODE=mode)
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    if store is not None:
        env["ENGINE_STORE"] = store
    log = open(directory / "worker.log", "w")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.engines.celery_app",
            "worker",
            f"--pool={pool}",
            "--concurrency=4",
            "-Q",
            queue,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    client = Celery("client", broker=broker, backend=broker)
    try:
        sent = {
            unit: client.send_task("tests.engines.celery_app.unit_task", args=(unit,), queue=queue)
            for unit in range(UNITS)
        }
        outcomes: dict[int, Any] = {}
        for unit, result in sent.items():
            result.get(timeout=120, propagate=False)
            outcomes[unit] = "ok" if result.state == "SUCCESS" else type(result.result).__name__
            if outcomes[unit] != "ok":
                outcomes[unit] = (outcomes[unit], str(result.result))
        return outcomes
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()
        client.close()


def _starts(directory: Path) -> dict[int, int]:
    path = directory / "starts"
    found: dict[int, int] = {}
    for line in path.read_text().split() if path.exists() else []:
        found[int(line)] = found.get(int(line), 0) + 1
    return found


def test_naive_tasks_charge_twice(redis_url: str, tmp_path: Path) -> None:
    """The scenario bites: without retrysafe a retry or a redelivery charges again."""
    outcomes = _run(redis_url, tmp_path, "naive", None)
    report = judge(tmp_path, outcomes)
    print(report)
    assert report["duplicates"] == 16, report


@pytest.mark.parametrize("kind", ["postgres", "sqlite", "redis"])
def test_prefork_tasks_charge_once_under_kills_and_retries(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    redis_url = request.getfixturevalue("redis_url")
    store = {
        "postgres": lambda: request.getfixturevalue("postgres_url"),
        "sqlite": lambda: f"sqlite:///{tmp_path / 'records.db'}",
        "redis": lambda: redis_url,
    }[kind]()
    started = time.monotonic()
    outcomes = _run(redis_url, tmp_path, "retrysafe", store)
    report = judge(tmp_path, outcomes)
    print(kind, report, f"{time.monotonic() - started:.1f} s")
    assert 0 == report["duplicates"], report
    assert [] == report["never_charged"], report
    assert all(n == 1 for n in ledger(tmp_path).values())
    for unit, outcome in outcomes.items():
        if unit in KILLED:  # killed inside the tool: UNKNOWN, at once, naming its key
            assert isinstance(outcome, tuple) and "OutcomeUnknownError" == outcome[0], outcome
            assert "ik_" in outcome[1]
        else:
            assert "ok" == outcome, (unit, outcome)
    starts = _starts(tmp_path)
    assert all(starts[u] == 2 for u in KILLED), starts  # not retried past the UNKNOWN


@pytest.mark.parametrize("pool", ["solo", "threads"])
def test_other_pools_bind_the_task_id(pool: str, redis_url: str, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'records.db'}"
    # One process runs every task here: a kill would end the worker, so only the retries.
    outcomes = _run(redis_url, tmp_path, "retrysafe", store, pool=pool, ENGINE_NO_KILL="1")
    report = judge(tmp_path, outcomes)
    assert 0 == report["duplicates"], report
    assert [] == report["never_charged"], report
    assert all(o == "ok" for o in outcomes.values()), outcomes


def test_async_tools_run_inside_a_task_are_bound(tmp_path: Path) -> None:
    """A task running an async tool (anyio.run inside it, as Celery tasks are sync) binds it
    too: the event loop's task copies the binding. Retried by autoretry_for, it replays."""
    import anyio

    from retrysafe import tool
    from retrysafe.integrations.celery import Task

    app = Celery("async-tools", task_cls=Task)
    app.conf.task_always_eager = True
    charges: list[str] = []

    @tool.write(store=f"sqlite:///{tmp_path / 'records.db'}", registry=None)
    async def charge(order: str) -> str:
        """Charge an order."""
        await anyio.lowlevel.checkpoint()
        charges.append(order)
        return f"ch_{order}"

    @app.task(bind=True, autoretry_for=(ConnectionError,), max_retries=2, default_retry_delay=0)
    def checkout(self: Any, order: str) -> str:
        receipt = anyio.run(charge, order)
        if self.request.retries == 0:
            raise ConnectionError("the follow-up timed out")
        return receipt

    assert "ch_o-1" == checkout.delay("o-1").get()
    assert ["o-1"] == charges
