"""retrysafe for CrewAI crews and flows.

Make each retrysafe tool a CrewAI tool with :func:`as_tool`::

    from retrysafe.integrations.crewai import as_tool, identify

    @tool.write(remote_idempotent=True)
    def charge_card(customer: str, amount_cents: int, idempotency_key: str | None = None):
        ...

    agent = Agent(role="cashier", goal="...", backstory="...", tools=[as_tool(charge_card)])
    crew = Crew(agents=[agent], tasks=[task])
    identify(crew, principal=user_id)           # server-side: who is calling (optional)
    crew.kickoff()

Every call of the tool runs inside :func:`retrysafe.session` for the crew that runs it,
which CrewAI names to its tool-call hooks (a before-tool-call hook, registered once, the
first time :func:`as_tool` is used):

- the conversation is the one :func:`identify` named, else the flow's id when the crew runs
  in a CrewAI ``Flow`` (a persisted flow resumed after a crash is the same conversation),
  else the crew's own id (one kickoff of that crew object);
- the principal and tenant are what :func:`identify` set (server-side code; the model
  cannot reach them);
- the hook hands the call its identity through a one-time token it puts among the tool's
  arguments, which the tool takes out before validating them: an argument the model sends
  in its place names nothing (the call runs without an identity, and a write fails closed);
- a failure retrysafe has a hint for (no session, an unknown outcome, a refusal, a
  transient failure of the remote) reaches the model as the tool's output, the hint
  (CrewAI would show it ``Error executing tool: <the internal message>``);
- CrewAI's own tool cache (which answers a repeated tool call with the first result, for
  the whole crew) is left to READ tools: retrysafe records the writes.

The tool's argument schema never has ``idempotency_key``.
"""

from __future__ import annotations

import functools
import inspect
import secrets
import threading
import typing
import weakref
from collections.abc import Callable
from typing import Any

from crewai.flow.flow_context import current_flow_id
from crewai.hooks import register_after_tool_call_hook, register_before_tool_call_hook
from crewai.tools import BaseTool
from pydantic import ConfigDict, PrivateAttr, create_model

from .. import Effect, get_effect
from ..framework import bind_call, failure_hint

__all__ = ["RetrysafeTool", "as_tool", "identify"]

#: The tool-input key of the one-time token a hook hands a call.
_TOKEN = "_retrysafe_call"
#: Identities handed out by the hook and not yet taken by a call, by token.
_PENDING: dict[str, dict[str, str | None]] = {}
#: What :func:`identify` named, per crew.
_NAMED: weakref.WeakKeyDictionary[Any, dict[str, str | None]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
#: At most this many tokens wait for their call (the oldest go first).
_MAX_PENDING = 4096
_INSTALLED = False


def identify(
    crew: Any,
    *,
    principal: str | None = None,
    tenant: str | None = None,
    conversation: str | None = None,
) -> None:
    """Name who is calling (and optionally the conversation) for ``crew``'s retrysafe tools:
    server-side code, before the kickoff."""
    _NAMED[crew] = {"principal": principal, "tenant": tenant, "conversation": conversation}


def _identity(context: Any) -> dict[str, str | None] | None:
    crew = getattr(context, "crew", None)
    named = dict(_NAMED.get(crew) or {}) if crew is not None else {}
    conversation = named.get("conversation") or current_flow_id.get()
    if not conversation and crew is not None:
        conversation = f"crew-{crew.id}"
    if not conversation:
        return None
    return {**named, "conversation": str(conversation)}


def _before(context: Any) -> None:
    """Hand a retrysafe tool's call its identity (a one-time token among its arguments)."""
    if not isinstance(getattr(context, "tool", None), RetrysafeTool) and not _is_ours(context):
        return None
    context.tool_input.pop(_TOKEN, None)  # never the model's
    identity = _identity(context)
    if identity is not None:
        token = secrets.token_hex(16)
        with _LOCK:
            if len(_PENDING) >= _MAX_PENDING:  # tokens of calls CrewAI never made
                del _PENDING[next(iter(_PENDING))]
            _PENDING[token] = identity
        context.tool_input[_TOKEN] = token
    return None


def _after(context: Any) -> None:
    """Drop a token no call took (a hook blocked the call, or CrewAI answered from cache)."""
    token = context.tool_input.pop(_TOKEN, None)
    if isinstance(token, str):
        with _LOCK:
            _PENDING.pop(token, None)
    return None


def _is_ours(context: Any) -> bool:
    """Whether the structured tool CrewAI calls was made from a :class:`RetrysafeTool`."""
    return isinstance(
        getattr(getattr(context, "tool", None), "_original_tool", None), RetrysafeTool
    )


def _install() -> None:
    global _INSTALLED
    with _LOCK:
        if _INSTALLED:
            return
        _INSTALLED = True
    register_before_tool_call_hook(_before)
    register_after_tool_call_hook(_after)


class RetrysafeTool(BaseTool):  # type: ignore[misc]
    """A CrewAI tool running a retrysafe tool in the identity its crew hands each call."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    _fn: Callable[..., Any] = PrivateAttr()

    def run(self, *args: Any, **kwargs: Any) -> Any:
        token = kwargs.pop(_TOKEN, None)
        with _LOCK:
            identity = _PENDING.pop(token, None) if isinstance(token, str) else None
        try:
            if identity is None:
                return super().run(*args, **kwargs)
            with bind_call(
                str(identity["conversation"]),
                principal=identity.get("principal"),
                tenant=identity.get("tenant"),
            ):
                return super().run(*args, **kwargs)
        except Exception as error:
            hint = failure_hint(error)
            if hint is None:
                raise
            return hint

    def _run(self, **kwargs: Any) -> Any:
        return self._fn(**kwargs)


def _args_schema(fn: Callable[..., Any], name: str) -> Any:
    """A Pydantic model of ``fn``'s parameters (its signature: retrysafe hides the key)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # a name only a type checker sees: described as Any
        hints = {}
    fields: dict[str, Any] = {
        param.name: (
            hints.get(param.name, Any),
            ... if param.default is inspect.Parameter.empty else param.default,
        )
        for param in inspect.signature(fn).parameters.values()
        if param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
    }
    return create_model(f"{name}_args", **fields)


def _never(_arguments: Any, _result: Any) -> bool:
    """CrewAI's cache function for a write: never cached (retrysafe records it)."""
    return False


def as_tool(
    fn: Callable[..., Any], *, name: str | None = None, description: str | None = None
) -> RetrysafeTool:
    """A CrewAI tool running ``fn`` (a retrysafe tool, sync or async) in its crew's identity
    (see the module's docstring); the description defaults to the docstring."""
    _install()
    called = str(name or getattr(fn, "__name__", None) or "tool")
    settings: dict[str, Any] = {} if get_effect(fn) is Effect.READ else {"cache_function": _never}
    made = RetrysafeTool(
        name=called,
        description=description or (fn.__doc__ or "").strip() or called,
        args_schema=_args_schema(fn, called),
        **settings,
    )
    made._fn = functools.wraps(fn)(fn)
    return made
