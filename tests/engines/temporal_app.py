"""The Temporal workflow, activity and worker of the engine tests. The activity's tool and
its store are built at import, and the workflow module imports this module inside
Temporal's sandbox (as users do), so decorating must open nothing."""

from __future__ import annotations

import os
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

from retrysafe import tool

from .units import after_charge, charge_body, note

DIRECTORY = os.environ.get("ENGINE_DIR", "")


@tool.write(store=os.environ.get("ENGINE_STORE"), lease_seconds=2, wait_seconds=15, checkpoint=True)
def charge(unit: int) -> str:
    """Charge one unit."""
    return charge_body(DIRECTORY, unit, checkpoint=True)


def plain_charge(unit: int) -> str:
    return charge_body(DIRECTORY, unit)


@activity.defn
def unit_activity(unit: int) -> str:  # threaded: a kill takes its siblings down mid-flight
    note(DIRECTORY, "starts", str(unit))
    naive = os.environ.get("ENGINE_MODE") == "naive"
    result = plain_charge(unit) if naive else charge(unit)
    after_charge(DIRECTORY, unit)
    return result


@workflow.defn
class UnitWorkflow:
    @workflow.run
    async def run(self, unit: int) -> str:
        return await workflow.execute_activity(
            unit_activity,
            unit,
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=2),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=200),
                backoff_coefficient=1.0,
                maximum_attempts=6,
            ),
        )


async def work(address: str, queue: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from temporalio.client import Client
    from temporalio.worker import Worker
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    from retrysafe.integrations.temporal import RetrysafeInterceptor

    client = await Client.connect(address)
    interceptors = [] if os.environ.get("ENGINE_MODE") == "naive" else [RetrysafeInterceptor()]
    restrictions = SandboxRestrictions.default.with_passthrough_modules("retrysafe")
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[UnitWorkflow],
        activities=[unit_activity],
        interceptors=interceptors,
        workflow_runner=SandboxedWorkflowRunner(restrictions=restrictions),
        max_concurrent_activities=4,
        activity_executor=ThreadPoolExecutor(4),
    )
    await worker.run()
