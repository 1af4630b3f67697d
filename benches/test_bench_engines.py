"""What an engine integration adds to the engine's own cost of one unit, for a replay
(issue 25's target: <= 2 %). Each engine runs, through its own machinery, a unit calling a
write tool that replays (its key is given, so every call finds the completed record): once
with the integration (Celery's task class, Temporal's interceptor, Ray's ``@bound``, DBOS's
``step``) and once without, in alternating pairs in the same run. The difference is the
integration: reading the engine's ids and binding them."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from retrysafe import idempotent

from .conftest import paired_ratio


@idempotent(effect="write", key=lambda order: f"bench-{order}")
def charge(order: str) -> str:
    """Charge an order (replayed: its key is given)."""
    return f"charged {order}"


def _report(benchmark: Any, engine: str, ratio: float) -> None:
    benchmark.extra_info["target"] = 1.02
    print(f"\n{engine}: unit with the integration / without = {ratio:.3f} (target <= 1.02)")


def test_celery(benchmark: Any) -> None:
    from celery import Celery

    from retrysafe.integrations.celery import Task

    app = Celery("bench")
    app.conf.task_always_eager = True

    @app.task(base=Task, name="ours")
    def ours(order: str) -> str:
        return charge(order)

    @app.task(name="plain")
    def plain(order: str) -> str:
        return charge(order)

    benchmark.group = "engine overhead: celery task.apply (the worker's trace) with a replay"
    ratio = paired_ratio(
        benchmark,
        lambda: ours.apply(("o-1",), task_id="t-1").get(),
        lambda: plain.apply(("o-1",), task_id="t-1").get(),
    )
    _report(benchmark, "celery", ratio)


def test_celery_worker(benchmark: Any) -> None:
    """Through a real worker (solo pool) and a Redis broker: the per-unit cost a deployment
    pays (the eager bench above is Celery's cheapest path, with no broker at all)."""
    from celery import Celery

    url = os.environ.get("REDIS_URL")
    assert url, "make bench starts a redis-server"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "benches.celery_bench_app",
            "worker",
            "--pool=solo",
            "-Q",
            queue,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=ERROR",
        ],
        cwd=root,
        env=dict(os.environ, PYTHONPATH=root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = Celery("client", broker=url, backend=url)
    try:
        client.send_task("plain", ("o-1",), queue=queue).get(timeout=60)  # the worker is up

        def run(name: str) -> Any:
            return client.send_task(name, ("o-1",), queue=queue).get(timeout=30)

        benchmark.group = "engine overhead: celery worker (solo, Redis broker) with a replay"
        ratio = paired_ratio(benchmark, lambda: run("ours"), lambda: run("plain"))
    finally:
        worker.terminate()
        worker.wait()
        client.close()
    _report(benchmark, "celery worker", ratio)


def test_dbos(benchmark: Any, tmp_path: Any) -> None:
    from dbos import DBOS

    from retrysafe.integrations.dbos import step

    DBOS(config={"name": "bench", "system_database_url": f"sqlite:///{tmp_path}/dbos.db"})

    @step()
    def ours_step(order: str) -> str:
        return charge(order)

    @DBOS.step()
    def plain_step(order: str) -> str:
        return charge(order)

    @DBOS.workflow()
    def ours(order: str) -> str:
        return ours_step(order)

    @DBOS.workflow()
    def plain(order: str) -> str:
        return plain_step(order)

    DBOS.launch()
    try:
        benchmark.group = "engine overhead: dbos workflow with one step and a replay"
        ratio = paired_ratio(benchmark, lambda: ours("o-1"), lambda: plain("o-1"))
    finally:
        DBOS.destroy(destroy_registry=True)
    _report(benchmark, "dbos", ratio)


def test_ray(benchmark: Any) -> None:
    import ray

    from retrysafe.integrations.ray import bound

    def unit(order: str) -> str:
        return charge(order)

    ours = ray.remote(bound(unit))
    plain = ray.remote(unit)
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    try:
        benchmark.group = "engine overhead: ray task .remote + get with a replay"
        ratio = paired_ratio(
            benchmark, lambda: ray.get(ours.remote("o-1")), lambda: ray.get(plain.remote("o-1"))
        )
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    _report(benchmark, "ray", ratio)


def _temporal_unit() -> tuple[Any, Any]:
    """The activity and the workflow class (module level: Temporal refuses local classes)."""
    return _unit_activity, _UnitWorkflow


try:
    from temporalio import activity, workflow

    @activity.defn(name="unit")
    async def _unit_activity(order: str) -> str:
        return charge(order)

    @workflow.defn(name="Unit", sandboxed=False)
    class _UnitWorkflow:
        @workflow.run
        async def run(self, order: str) -> str:
            return str(
                await workflow.execute_activity(
                    "unit", order, start_to_close_timeout=timedelta(seconds=30)
                )
            )

except ImportError:  # pragma: no cover - temporalio is a test and bench extra
    pass


@pytest.fixture
def temporal_address(tmp_path: Path) -> Iterator[str]:
    from tests.engines.temporal_server import dev_server

    with dev_server(tmp_path) as address:
        yield address


def test_temporal(benchmark: Any, temporal_address: str) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    from retrysafe.integrations.temporal import RetrysafeInterceptor

    async def connect() -> Client:
        for _ in range(100):
            try:
                return await Client.connect(temporal_address)
            except RuntimeError:
                await asyncio.sleep(0.2)
        raise RuntimeError("no Temporal dev server")

    unit, Unit = _temporal_unit()
    loop = asyncio.new_event_loop()
    client = loop.run_until_complete(connect())
    queues = {"ours": f"ours-{uuid.uuid4().hex[:6]}", "plain": f"plain-{uuid.uuid4().hex[:6]}"}
    workers = [
        Worker(
            client,
            task_queue=queues["ours"],
            workflows=[Unit],
            activities=[unit],
            interceptors=[RetrysafeInterceptor()],
        ),
        Worker(client, task_queue=queues["plain"], workflows=[Unit], activities=[unit]),
    ]
    for worker in workers:
        loop.run_until_complete(worker.__aenter__())

    def run(kind: str) -> Any:
        return loop.run_until_complete(
            client.execute_workflow(
                "Unit", "o-1", id=f"{kind}-{uuid.uuid4().hex}", task_queue=queues[kind]
            )
        )

    try:
        benchmark.group = "engine overhead: temporal workflow with one activity and a replay"
        ratio = paired_ratio(benchmark, lambda: run("ours"), lambda: run("plain"))
    finally:
        for worker in workers:
            loop.run_until_complete(worker.__aexit__(None, None, None))
        loop.close()
    _report(benchmark, "temporal", ratio)
