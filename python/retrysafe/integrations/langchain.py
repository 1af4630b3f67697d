"""retrysafe for LangChain tools and LangGraph graphs.

Make each retrysafe tool a LangChain tool with :func:`as_tool` (instead of
``langchain_core.tools.tool``)::

    from retrysafe.integrations.langchain import as_tool

    @as_tool
    @tool.write(remote_idempotent=True)
    async def charge_card(customer: str, amount_cents: int, idempotency_key: str | None = None):
        ...

    graph.invoke(state, config={"configurable": {"thread_id": "conversation-42"}})

Every call of the tool runs inside :func:`retrysafe.session` for the conversation of the run
config it is invoked with: LangGraph's ``thread_id`` (``configurable.thread_id``, which a
``ToolNode`` passes down), else ``configurable.conversation_id`` or ``session_id``; the tenant
from ``configurable.tenant_id``. The tool reads its run config the way LangChain hands it to
any runnable (``ensure_config()``), so nothing is patched. Without a conversation a write
fails with :class:`~retrysafe.SessionRequiredError`; its hint, like every retrysafe error's,
reaches the model as the tool's result (a ``ToolException``, which the tool handles).

The tool's argument schema never has ``idempotency_key``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.runnables.config import ensure_config
from langchain_core.tools import StructuredTool, ToolException

from ..framework import bind_call as session
from ..framework import failure_hint, is_async

__all__ = ["CONVERSATION_KEYS", "as_tool", "conversation_of"]

#: The ``configurable`` keys a conversation id is read from, first found wins.
CONVERSATION_KEYS = ("thread_id", "conversation_id", "session_id")


def conversation_of(config: Mapping[str, Any] | None) -> tuple[str, str | None] | None:
    """``(conversation id, tenant)`` from a run config's ``configurable``, or None."""
    configurable = (config or {}).get("configurable") or {}
    for key in CONVERSATION_KEYS:
        value = configurable.get(key)
        if isinstance(value, str) and value:
            tenant = configurable.get("tenant_id")
            return value, tenant if isinstance(tenant, str) and tenant else None
    return None


def _in_conversation() -> Any:
    """The session of the run config the tool is invoked with (sync and async), or nothing."""
    found = conversation_of(ensure_config())
    return contextlib.nullcontext() if found is None else session(found[0], tenant=found[1])


def as_tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Any:
    """A LangChain ``StructuredTool`` running ``fn`` (a retrysafe tool) in the conversation
    of its run config; the description defaults to the docstring."""

    def make(func: Callable[..., Any]) -> StructuredTool:
        if is_async(func):

            async def acall(*args: Any, **kwargs: Any) -> Any:
                try:
                    async with _in_conversation():
                        return await func(*args, **kwargs)
                except Exception as error:
                    raise _as_tool_exception(error) from error

            wrapped: dict[str, Any] = {"coroutine": functools.wraps(func)(acall)}
        else:

            def call(*args: Any, **kwargs: Any) -> Any:
                try:
                    with _in_conversation():
                        return func(*args, **kwargs)
                except Exception as error:
                    raise _as_tool_exception(error) from error

            wrapped = {"func": functools.wraps(func)(call)}
        return StructuredTool.from_function(
            name=name, description=description, handle_tool_error=True, **wrapped
        )

    return make(fn) if fn is not None else make


def _as_tool_exception(error: Exception) -> Exception:
    """A ToolException (shown to the model) carrying the failure's hint; a bug unchanged."""
    hint = failure_hint(error)
    return error if hint is None else ToolException(hint)
