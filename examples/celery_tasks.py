"""retrysafe with Celery: a task charges, then a follow-up call times out and Celery's
autoretry runs the task again; the charge is made once. Run it:
`python examples/celery_tasks.py` (eager mode, no broker needed; with a worker the task
id binds the same way, under the prefork, solo and threads pools).
"""

from __future__ import annotations

import os

from celery import Celery

from _ledger import DIRECTORY, notify_shipping, report, send_charge
from retrysafe import tool
from retrysafe.integrations.celery import Task

app = Celery("shop", task_cls=Task)  # the one line: every task binds its task id
app.conf.task_always_eager = True  # this example only: tasks run in this process


STORE = f"sqlite:///{os.path.join(DIRECTORY, 'records.db')}"  # or redis://, postgresql://


@tool.write(store=STORE, registry=None)
def charge_card(order_id: str) -> str:
    """Charge an order's card."""
    return send_charge(order_id)


@app.task(bind=True, autoretry_for=(ConnectionError,), max_retries=3, default_retry_delay=0)
def checkout(self: Task, order_id: str) -> str:
    charge = charge_card(order_id)  # replayed on the retry: same task id
    notify_shipping(order_id)
    return charge


if __name__ == "__main__":
    print(checkout.delay("order-7").get())
    print(report())
