"""retrysafe for DBOS: each step runs inside its own identity, stable across recovery.

One decorator in place of ``@DBOS.step(...)``, with the same options::

    from dbos import DBOS
    from retrysafe.integrations.dbos import step

    @step(retries_allowed=True, max_attempts=5)
    def charge_order(order_id: str) -> str:
        return charge_card(order_id)          # a @tool.write / @idempotent tool

DBOS runs a step at least once: a step that raised is retried (``retries_allowed``), and a
step that was running when its process died runs again when the workflow is recovered,
because its checkpoint was never written. Each time it has the same workflow id and step
id, so the tools it calls are bound to ``dbos|<workflow id>|<step id>`` (a
:func:`retrysafe.session`): a retry or a recovery replays a completed write. The errors of
:data:`retrysafe.framework.NON_RETRYABLE` (an UNKNOWN outcome above all) are never retried
(the step's ``should_retry`` refuses them, before any predicate of yours): the workflow
records the error, which pickles with its key, and a person settles it.

``bound`` alone binds a function you decorate with ``DBOS.step`` yourself. DBOS 3 has no
database transactions of its own (its steps are plain functions), so a record cannot share
one with the step; use the store's ``outcome_transaction`` around your own SQL instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from dbos import DBOS

from ..framework import NON_RETRYABLE, bind_call, bound_by, unit_id

__all__ = ["bound", "identity_of", "retryable", "step"]

F = TypeVar("F", bound=Callable[..., Any])


def identity_of(workflow_id: str, step_id: int) -> str:
    """The session id of a DBOS step: ``dbos|<workflow id>|<step id>`` (see ``unit_id``)."""
    return unit_id("dbos", workflow_id, str(step_id))


def _binding() -> bind_call | None:
    workflow_id, step_id = DBOS.workflow_id, DBOS.step_id
    if workflow_id is None or step_id is None:  # called outside a workflow: a plain call
        return None
    return bind_call(identity_of(workflow_id, step_id))


def bound(fn: F) -> F:
    """Run ``fn`` (a DBOS step's function, sync or async) inside its step's identity."""
    return bound_by(_binding)(fn)


def retryable(
    should_retry: Callable[[BaseException], bool | Awaitable[bool]] | None = None,
) -> Callable[[BaseException], bool | Awaitable[bool]]:
    """A ``should_retry`` for DBOS that refuses :data:`~retrysafe.framework.NON_RETRYABLE`
    and asks yours (if any) about everything else."""

    def decide(error: BaseException) -> bool | Awaitable[bool]:
        if isinstance(error, NON_RETRYABLE):
            return False
        return True if should_retry is None else should_retry(error)

    return decide


def step(
    *,
    should_retry: Callable[[BaseException], bool | Awaitable[bool]] | None = None,
    **options: Any,
) -> Callable[[F], F]:
    """``DBOS.step(**options)`` over :func:`bound`, with a ``should_retry`` that never retries
    the NON_RETRYABLE errors."""

    def decorate(fn: F) -> F:
        return cast(F, DBOS.step(should_retry=retryable(should_retry), **options)(bound(fn)))

    return decorate
