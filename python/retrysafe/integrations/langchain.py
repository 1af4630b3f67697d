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
import inspect
from collections.abc import Callable, Mapping
from typing import Annotated, Any, get_type_hints

from langchain_core.runnables.config import ensure_config
from langchain_core.tools import StructuredTool, ToolException

from ..framework import bind_call, failure_hint, is_async, suspends

try:  # LangGraph's interrupt() is control flow: the node runs again on resume
    from langgraph.errors import GraphInterrupt
except ImportError:  # LangChain without LangGraph
    pass
else:
    suspends(GraphInterrupt)

__all__ = ["CONVERSATION_KEYS", "PRINCIPAL_KEY", "as_tool", "conversation_of", "turn_of"]

#: The ``configurable`` keys a conversation id is read from, first found wins.
CONVERSATION_KEYS = ("thread_id", "conversation_id", "session_id")


#: The ``configurable`` key of the authenticated user: LangGraph's server sets it from its
#: auth handler (a client cannot), and an application invoking a graph sets it itself.
PRINCIPAL_KEY = "langgraph_auth_user_id"
#: The keyword argument through which ToolNode hands a wrapped tool the graph's state
#: (``InjectedState``: never in the model's schema); retrysafe reads the turn from it.
_STATE_ARG = "retrysafe_graph_state"


def conversation_of(config: Mapping[str, Any] | None) -> tuple[str, str | None] | None:
    """``(conversation id, tenant)`` from a run config's ``configurable``, or None."""
    configurable = (config or {}).get("configurable") or {}
    for key in CONVERSATION_KEYS:
        value = configurable.get(key)
        if isinstance(value, str) and value:
            tenant = configurable.get("tenant_id")
            return value, tenant if isinstance(tenant, str) and tenant else None
    return None


def turn_of(state: Any) -> str | None:
    """The user turn of a graph's state: how many human messages its ``messages`` hold
    (a turn re-run from its checkpoint after a crash is the same turn), or None."""
    messages = state.get("messages") if isinstance(state, Mapping) else None
    if not isinstance(messages, list):
        return None
    return str(sum(1 for m in messages if getattr(m, "type", None) == "human"))


def _in_conversation(state: Any = None) -> Any:
    """The session of the run config the tool is invoked with (sync and async), or nothing."""
    config = ensure_config()
    found = conversation_of(config)
    if found is None:
        return contextlib.nullcontext()
    principal = (config.get("configurable") or {}).get(PRINCIPAL_KEY)
    return bind_call(
        found[0],
        tenant=found[1],
        principal=principal if isinstance(principal, str) and principal else None,
        turn=turn_of(state),
    )


def _accepting_state(wrapper: Any) -> Any:
    """``wrapper`` with a keyword-only parameter annotated ``InjectedState`` (LangGraph's own
    way to hand a tool the graph's state, left out of the model's schema), where LangGraph
    is installed; the wrapper pops it before calling the tool."""
    try:
        from langgraph.prebuilt import InjectedState
    except ImportError:
        return wrapper
    annotation = Annotated[Any, InjectedState]
    signature = inspect.signature(wrapper)
    params = list(signature.parameters.values())
    extra = inspect.Parameter(
        _STATE_ARG, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
    )
    at = next(
        (i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD), len(params)
    )
    wrapper.__signature__ = signature.replace(parameters=[*params[:at], extra, *params[at:]])
    wrapper.__annotations__ = {**_resolved(wrapper), _STATE_ARG: annotation}
    return wrapper


def _resolved(fn: Any) -> dict[str, Any]:
    """``fn``'s annotations evaluated once, here, where they are strings (``from __future__
    import annotations``): LangChain reads a tool's type hints on every invoke, and would
    compile each string again every time. Left as they are when one does not resolve."""
    annotations = dict(getattr(fn, "__annotations__", {}))
    try:
        return dict(get_type_hints(fn, include_extras=True))
    except Exception:  # a name only a type checker sees: LangChain resolves it as before
        return annotations


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
                state = kwargs.pop(_STATE_ARG, None)
                try:
                    async with _in_conversation(state):
                        return await func(*args, **kwargs)
                except Exception as error:
                    raise _as_tool_exception(error) from error

            wrapped: dict[str, Any] = {"coroutine": _accepting_state(functools.wraps(func)(acall))}
        else:

            def call(*args: Any, **kwargs: Any) -> Any:
                state = kwargs.pop(_STATE_ARG, None)
                try:
                    with _in_conversation(state):
                        return func(*args, **kwargs)
                except Exception as error:
                    raise _as_tool_exception(error) from error

            wrapped = {"func": _accepting_state(functools.wraps(func)(call))}
        return StructuredTool.from_function(
            name=name, description=description, handle_tool_error=True, **wrapped
        )

    return make(fn) if fn is not None else make


def _as_tool_exception(error: Exception) -> Exception:
    """A ToolException (shown to the model) carrying the failure's hint; a bug unchanged."""
    hint = failure_hint(error)
    return error if hint is None else ToolException(hint)
