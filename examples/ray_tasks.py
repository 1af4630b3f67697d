"""retrysafe with Ray: a task charges, then a follow-up call times out and Ray retries the
task (``retry_exceptions``); the charge is made once. The tool is defined here, in
``__main__``: Ray sends it to its workers by value, its store by URL. Run it:
`python examples/ray_tasks.py` (a local Ray; SQLite for the records).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import ray

from _ledger import DIRECTORY, notify_shipping, report, send_charge
from retrysafe import tool
from retrysafe.integrations.ray import bound

STORE = f"sqlite:///{os.path.join(DIRECTORY, 'records.db')}"  # shared by the workers


@tool.write(store=STORE, registry=None)
def charge_card(order_id: str) -> str:
    """Charge an order's card."""
    return send_charge(order_id)


@ray.remote(max_retries=3, retry_exceptions=[ConnectionError])
@bound  # the one line: the task binds its task id
def checkout(order_id: str) -> str:
    charge = charge_card(order_id)  # replayed on the retry: same task id
    notify_shipping(order_id)
    return charge


if __name__ == "__main__":
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    print(ray.get(checkout.remote("order-7")))
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)
    print(report())
