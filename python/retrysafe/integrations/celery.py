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
task id, so the tools it calls are bound to ``celery|<task name>|<task id>`` (a
:func:`retrysafe.session`): a retry or a redelivery replays a completed write, and a write
whose outcome is unknown fails the task at once with :class:`~retrysafe.OutcomeUnknownError`
(never retried by ``autoretry_for``: the errors of
:data:`retrysafe.framework.NON_RETRYABLE` are this class's ``dont_autoretry_for``). Works
under the prefork, solo and threads pools, with sync tools and with async ones run inside
the task (``anyio.run``/``asyncio.run`` copy the binding). Stores built at import are safe
in the prefork pool: each child opens its own connections.

Called directly (``charge_order("o-1")``, not through a worker or ``apply()``) a task binds
nothing. When several tenants share a worker, bind who is calling yourself in a
``bind=True`` task: ``with retrysafe.session(identity_of(self.name, self.request.id),
tenant=tenant):`` (the tenant from the task's own server-side arguments).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import celery  # type: ignore[import-untyped]

from ..framework import NON_RETRYABLE, bind_call, bound_by, unit_id

__all__ = ["Task", "identity_of"]


def identity_of(task_name: str, task_id: str) -> str:
    """The session id of a Celery task: ``celery|<name>|<id>`` (see ``unit_id``)."""
    return unit_id("celery", task_name, task_id)


def _bound_run(task_class: Any, run: Callable[..., Any]) -> Callable[..., Any]:
    """``run`` inside the identity of the request being run by ``task_class`` (the top of
    its request stack, which the worker and ``apply()`` push before calling ``run``); as it
    is when there is none (called directly)."""

    def binding() -> bind_call | None:
        stack = task_class.request_stack
        task_id = getattr(stack.top if stack is not None else None, "id", None)
        return bind_call(identity_of(task_class.name, task_id)) if task_id else None

    return bound_by(binding)(run)


class Task(celery.Task):  # type: ignore[misc]
    """A Celery task class binding each run to its task id (see the module).

    It wraps the ``run`` of each task class made from it (``@app.task`` makes one per
    function; a class-based task defines its own), and leaves ``__call__`` alone, so the
    worker keeps calling ``run`` directly (Celery's fast path for tasks without a custom
    ``__call__``)."""

    #: Never retried by ``autoretry_for``: they need a person, not another attempt.
    dont_autoretry_for = NON_RETRYABLE

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if isinstance(run, staticmethod):  # @app.task(fn): run = staticmethod(fn)
            cls.run = staticmethod(_bound_run(cls, run.__func__))
        elif callable(run):  # @app.task(bind=True) and class-based tasks: run(self, ...)
            cls.run = _bound_run(cls, run)
