"""retrysafe for Ray: each task runs inside its own identity, stable across re-executions.

One decorator, under ``@ray.remote``::

    import ray
    from retrysafe.integrations.ray import bound

    @ray.remote(max_retries=3, retry_exceptions=[ConnectionError])
    @bound
    def charge_order(order_id: str) -> str:
        return charge_card(order_id)          # a @tool.write / @idempotent tool

Ray runs a task at least once: a task whose worker died is executed again (``max_retries``)
and one that raised a listed exception is retried (``retry_exceptions``). Every execution
carries the same task id, so the tools a task calls are bound to
``ray|<job id>|<task id>`` (a :func:`retrysafe.session`): a re-execution replays a
completed write; one whose outcome is unknown raises
:class:`~retrysafe.OutcomeUnknownError`. List your transient errors in
``retry_exceptions`` (never ``True``, which would retry the errors of
:data:`retrysafe.framework.NON_RETRYABLE` as well). Sync and async tasks; tools defined in
``__main__`` travel to the workers by value (their stores by URL).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import ray

from ..framework import bind_call, bound_by, unit_id

__all__ = ["bound", "identity_of"]

F = TypeVar("F", bound=Callable[..., Any])


def identity_of(job_id: str, task_id: str) -> str:
    """The session id of a Ray task: ``ray|<job id>|<task id>`` (see ``unit_id``)."""
    return unit_id("ray", job_id, task_id)


#: This worker's job id, read once (a Ray worker process serves one job).
_JOB: dict[int, str] = {}


def _binding() -> bind_call | None:
    context = ray.get_runtime_context()
    task_id = context.get_task_id()
    if not task_id:  # the driver, not a task
        return None
    pid = os.getpid()
    job = _JOB.get(pid)
    if job is None:
        job = _JOB[pid] = context.get_job_id()
    return bind_call(identity_of(job, task_id))


def bound(fn: F) -> F:
    """Run ``fn`` (a Ray task's function, sync or async) inside its task's identity."""
    return bound_by(_binding)(fn)
