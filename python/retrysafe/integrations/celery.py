"""retrysafe for Celery: every task runs inside its own identity, stable across retries.

One line, the task class of the app (or of one task with ``base=``)::

    from celery import Celery
    from retrysafe.integrations.celery import Task

    app = Celery("billing", broker="redis://...", task_cls=Task)

    @app.task(acks_late=True, autoretry_for=(ConnectionError,))
    def charge_order(order_id: str) -> str:
        return charge_card(order_id)          # a @tool.write / @idempotent tool

Celery runs a task at least once: ``autoretry_for`` and ``self.retry()`` run it again, and
an ``acks_late`` task whose worker died is delivered again. Each time it carries the same
task id, so the tools it calls are bound to ``celery/<task name>/<task id>`` (a
:func:`retrysafe.session`): a retry or a redelivery replays a completed write, and a write
whose outcome is unknown fails the task at once with :class:`~retrysafe.OutcomeUnknownError`
(never retried by ``autoretry_for``: the errors of
:data:`retrysafe.framework.NON_RETRYABLE` are this class's ``dont_autoretry_for``). Works
under the prefork, solo and threads pools, with sync tools and with async ones run inside
the task (``anyio.run``/``asyncio.run`` copy the binding). Stores built at import are safe
in the prefork pool: each child opens its own connections.

``Task.bind_identity(self)`` gives the binding; override it (``principal``/``tenant`` from
the task's own server-side arguments) in a subclass when several tenants share a worker.
Called directly (``charge_order("o-1")``, not through a worker) a task binds nothing.
"""

from __future__ import annotations

from typing import Any

import celery  # type: ignore[import-untyped]

from ..framework import NON_RETRYABLE, bind_call, escape

__all__ = ["Task", "identity_of"]


def identity_of(task_name: str, task_id: str) -> str:
    """The session id of a Celery task: ``celery/<name>/<id>`` (each part escaped)."""
    return f"celery/{escape(task_name, 'a task name')}/{escape(task_id, 'a task id')}"


class Task(celery.Task):  # type: ignore[misc]
    """A Celery task class binding each run to its task id (see the module)."""

    #: Never retried by ``autoretry_for``: they need a person, not another attempt.
    dont_autoretry_for = NON_RETRYABLE

    def bind_identity(self) -> bind_call | None:
        """The session this run is bound to; None outside a worker (no task id)."""
        task_id = getattr(self.request, "id", None)
        if not task_id:
            return None
        return bind_call(identity_of(self.name, task_id))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        binding = self.bind_identity()
        if binding is None:
            return super().__call__(*args, **kwargs)
        with binding:
            return super().__call__(*args, **kwargs)
