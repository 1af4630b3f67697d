"""The Celery app of the engine tests: its store is built at import (before the prefork
pool forks), as users do. Configured by the environment the test sets."""

from __future__ import annotations

import os

from celery import Celery

from retrysafe import tool
from retrysafe.integrations.celery import Task

from .units import Transient, after_charge, charge_body, note

BROKER = os.environ["ENGINE_BROKER"]
DIRECTORY = os.environ["ENGINE_DIR"]
MODE = os.environ.get("ENGINE_MODE", "retrysafe")

app = Celery(
    "engine_tests", broker=BROKER, backend=BROKER, task_cls=Task if MODE == "retrysafe" else None
)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    result_extended=True,
)


@tool.write(store=os.environ.get("ENGINE_STORE"), lease_seconds=2, wait_seconds=15, checkpoint=True)
def charge(unit: int) -> str:
    """Charge one unit."""
    return charge_body(DIRECTORY, unit, checkpoint=True)


def plain_charge(unit: int) -> str:
    return charge_body(DIRECTORY, unit)


@app.task(autoretry_for=(Transient,), retry_backoff=False, default_retry_delay=0.2, max_retries=5)
def unit_task(unit: int) -> str:
    note(DIRECTORY, "starts", str(unit))
    result = charge(unit) if MODE == "retrysafe" else plain_charge(unit)
    if result != f"charged {unit}":  # a row for another caller would show here
        raise AssertionError(f"unit {unit} got {result!r}")
    after_charge(DIRECTORY, unit)
    return result
