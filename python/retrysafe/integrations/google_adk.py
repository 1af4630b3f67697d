"""retrysafe for Google's Agent Development Kit (ADK), through a plugin (ADK's own hook).

One line on the ``App`` the runner runs::

    from retrysafe.integrations.google_adk import Retrysafe

    app = App(name="shop", root_agent=agent, plugins=[Retrysafe()])

Declare tools as usual, retrysafe's decorator on the function::

    @tool.write(remote_idempotent=True)
    async def charge_card(customer: str, amount_cents: int, idempotency_key: str | None = None):
        ...

    agent = Agent(name="shop", model=model, tools=[charge_card])

What the plugin does for every tool call of a run:

- it binds :func:`retrysafe.session` for the call: the conversation is the ADK session's id,
  the principal its ``user_id`` (what your server passed to ``Runner.run_async``), the
  tenant the app's name (one store shared by several apps keeps them apart), the turn the
  count of the user's messages in the session, and the model's function-call id. ADK runs
  each tool call in a task of its own, started from the context its before-tool callbacks
  ran in: the binding reaches the tool and nothing else. ``principal=`` and ``tenant=``
  (functions of the ``ToolContext``) replace the defaults, e.g. with the user your server
  authenticated where ``user_id`` comes from a client;
- a retrysafe error (no session, an unknown outcome, a refusal, a loop stop) becomes the
  tool's response, ``{"error": ..., "message": llm_hint}``, which the model reads, instead of
  ending the run (ADK re-raises a tool's exception when no callback answers it).

The declaration ADK builds from the function never has ``idempotency_key``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from google.adk.plugins.base_plugin import BasePlugin

from ..framework import bind_call, failure_hint

__all__ = ["Retrysafe", "turn_of"]

#: The binding a before-tool callback entered for the call running in this task's context.
_OPEN: ContextVar[Any] = ContextVar("retrysafe_adk_binding", default=None)


def turn_of(session: Any) -> str:
    """The user turn of an ADK session: how many of its events the user wrote (a run
    re-executed after a crash over the same events is the same turn)."""
    events = getattr(session, "events", None) or []
    return str(sum(1 for event in events if getattr(event, "author", None) == "user"))


class Retrysafe(BasePlugin):
    """Binds every tool call to its identity (see the module's docstring) and hands
    retrysafe errors back to the model as the tool's response."""

    def __init__(
        self,
        *,
        principal: Callable[[Any], str | None] | None = None,
        tenant: Callable[[Any], str | None] | None = None,
        name: str = "retrysafe",
    ) -> None:
        super().__init__(name=name)
        self._principal = principal
        self._tenant = tenant

    async def before_tool_callback(
        self, *, tool: Any, tool_args: dict[str, Any], tool_context: Any
    ) -> dict[str, Any] | None:
        session = tool_context.session
        principal = (
            self._principal(tool_context) if self._principal is not None else tool_context.user_id
        )
        tenant = (
            self._tenant(tool_context)
            if self._tenant is not None
            else getattr(session, "app_name", None)
        )
        try:
            binding = bind_call(
                str(session.id),
                tenant=tenant or None,
                principal=principal or None,
                turn=turn_of(session),
                tool_call_id=tool_context.function_call_id,
            )
        except ValueError as error:  # an identity retrysafe cannot bind: the model is told
            return {"error": "SessionRequiredError", "message": str(error)}
        binding.__enter__()
        _OPEN.set(binding)
        return None

    async def after_tool_callback(
        self, *, tool: Any, tool_args: dict[str, Any], tool_context: Any, result: Any
    ) -> dict[str, Any] | None:
        _close()
        return None

    async def on_tool_error_callback(
        self, *, tool: Any, tool_args: dict[str, Any], tool_context: Any, error: Exception
    ) -> dict[str, Any] | None:
        _close()
        hint = failure_hint(error)
        if hint is None:
            return None  # a bug: ADK raises it
        return {"error": type(error).__name__, "message": hint}


def _close() -> None:
    binding = _OPEN.get()
    if binding is not None:
        _OPEN.set(None)
        binding.__exit__(None, None, None)
