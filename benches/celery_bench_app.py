"""The tasks of the Celery worker bench: the same unit with retrysafe's task class and
without (a replayed write either way)."""

from __future__ import annotations

import os

from celery import Celery

from retrysafe import idempotent
from retrysafe.integrations.celery import Task

app = Celery("bench", broker=os.environ["REDIS_URL"], backend=os.environ["REDIS_URL"])


@idempotent(effect="write", key=lambda order: f"bench-{order}")
def charge(order: str) -> str:
    return f"charged {order}"


@app.task(base=Task, name="ours")
def ours(order: str) -> str:
    return charge(order)


@app.task(name="plain")
def plain(order: str) -> str:
    return charge(order)
