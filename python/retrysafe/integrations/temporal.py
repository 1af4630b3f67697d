"""retrysafe for Temporal: each activity runs inside its own identity, stable across attempts.

One line, the worker's interceptor::

    from temporalio.worker import Worker
    from retrysafe.integrations.temporal import RetrysafeInterceptor

    worker = Worker(client, task_queue="billing", workflows=[Checkout],
                    activities=[charge_order], interceptors=[RetrysafeInterceptor()])

Temporal runs an activity at least once: a failed attempt is retried by its retry policy,
and an attempt whose worker died is retried once its timeout passes. Every attempt carries
the same workflow id and activity id, so the tools an activity calls are bound to
``temporal|<namespace>|<workflow id>|<activity id>`` (a :func:`retrysafe.session`;
a standalone activity to ``temporal-activity|<namespace>|<activity id>``): a retry replays a
completed write. The errors of :data:`retrysafe.framework.NON_RETRYABLE` (an UNKNOWN
outcome above all) fail the activity with a non-retryable ``ApplicationError`` whose type
is the error's class name and whose message names the key: the workflow sees it at once
instead of after every attempt, and a person settles it.

An activity with a ``heartbeat_timeout`` is heartbeated while it runs (every third of the
timeout): a long tool call is not mistaken for a dead worker, and a dead worker's attempt is
retried after that timeout (its record's lease, ``lease_seconds``, should be no longer, so
the retry finds the owner gone rather than waiting). Works with async and threaded sync
activities; Pydantic AI's ``TemporalAgent`` (and the OpenAI Agents SDK's
``activity_as_tool``) run each tool call as an activity of the worker, bound the same way
(each call is its own unit: a model repeating a call makes a new activity).

Stores build nothing when a tool is decorated, so an activities module imported by a
workflow (inside Temporal's sandbox) starts the worker; pass ``retrysafe`` through the
sandbox (``SandboxRestrictions.default.with_passthrough_modules("retrysafe")``) so that
the native module is loaded once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from ..framework import NON_RETRYABLE, bind_call, unit_id

__all__ = ["RetrysafeInterceptor", "identity_of"]


def identity_of(info: activity.Info) -> str:
    """The session id of an activity: stable across its attempts."""
    if info.workflow_id is None:
        return unit_id("temporal-activity", info.namespace, info.activity_id)
    return unit_id("temporal", info.namespace, info.workflow_id, info.activity_id)


def non_retryable(error: BaseException) -> ApplicationError:
    """The ApplicationError Temporal does not retry, for one of retrysafe's NON_RETRYABLE
    errors (its message: the error's own, which names the key, never an argument)."""
    return ApplicationError(str(error), type=type(error).__name__, non_retryable=True)


class RetrysafeInterceptor(Interceptor):
    """A worker interceptor binding each activity's identity (see the module)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Activity(next)


class _Activity(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        async with _heartbeating(info):
            with bind_call(identity_of(info)):
                try:
                    return await self.next.execute_activity(input)
                except NON_RETRYABLE as error:
                    raise non_retryable(error) from error


@contextlib.asynccontextmanager
async def _heartbeating(info: activity.Info) -> AsyncIterator[None]:
    timeout = info.heartbeat_timeout
    if timeout is None or timeout.total_seconds() <= 0:
        yield
        return
    every = timeout.total_seconds() / 3

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            activity.heartbeat()

    task = asyncio.get_running_loop().create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
