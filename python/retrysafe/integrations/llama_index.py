"""retrysafe for LlamaIndex agents (``FunctionAgent``, ``ReActAgent``, ``AgentWorkflow``).

Make each retrysafe tool a LlamaIndex ``FunctionTool`` with :func:`as_tool`::

    from retrysafe.integrations.llama_index import as_tool, identify

    @tool.write(remote_idempotent=True)
    async def charge_card(customer: str, amount_cents: int, idempotency_key: str | None = None):
        ...

    agent = FunctionAgent(tools=[as_tool(charge_card)], llm=llm)
    ctx = Context(agent)                                # one per conversation, as LlamaIndex keeps it
    await identify(ctx, principal=user_id)              # server-side: who is calling
    await agent.run("charge cus_42 $19.99", ctx=ctx)

Every call of the tool runs inside :func:`retrysafe.session` for the **workflow context** it
is called in (LlamaIndex hands a tool its ``Context``; the parameter never reaches the
model's schema):

- the conversation is the one :func:`identify` named, else the ``session_id`` of the
  context's ``Memory``, else an id the context is given at its first tool call and keeps
  (serialized with it: ``ctx.to_dict()``/``Context.from_dict`` resume the same
  conversation). A new ``Context`` is a new conversation, as it is for the agent's memory;
- the principal and tenant are what :func:`identify` set (server-side code; the model
  cannot reach the context's store); the turn is the count of user messages in the
  context's memory;
- a failure retrysafe has a hint for (no session, an unknown outcome, a refusal, a
  transient failure of the remote) reaches the model as the tool's error output, the hint
  (LlamaIndex would show it the internal message).

The tool's schema never has ``idempotency_key``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import typing
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from llama_index.core.tools import FunctionTool
from llama_index.core.workflow import Context

from .. import Effect, get_effect
from ..framework import KEY_PARAM, bind_call, failure_hint, is_async

__all__ = ["ToolRefused", "as_tool", "identify", "identity_of"]

#: The context store's root key retrysafe keeps a conversation's identity under.
_KEY = "retrysafe_identity"
#: The identity of each live context, once read (a tool call reads no store after that).
_KNOWN: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()
#: A lock per live context: its first parallel tool calls agree on one conversation id.
_LOCKS: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


class ToolRefused(Exception):
    """The error a tool's call ends with when retrysafe answered it: its message is the
    hint, which LlamaIndex shows the model as the tool's error output."""


async def identify(
    ctx: Context,
    *,
    principal: str | None = None,
    tenant: str | None = None,
    conversation: str | None = None,
) -> None:
    """Name who is calling (and optionally the conversation) for the tools run in ``ctx``:
    server-side code, before the run. Kept in the context's store (and its serialization)."""
    current = dict(await ctx.store.get(_KEY, default=None) or {})
    current.update(
        {
            k: v
            for k, v in (
                ("principal", principal),
                ("tenant", tenant),
                ("conversation", conversation),
            )
            if v is not None
        }
    )
    await ctx.store.set(_KEY, current)
    _KNOWN.pop(ctx, None)


async def identity_of(ctx: Context) -> dict[str, str]:
    """The identity the tools of ``ctx`` run in (``conversation``, and ``principal``,
    ``tenant`` where set): see the module's docstring. Gives the context its own
    conversation id on first use. Read from the context's store once per live context
    (:func:`identify` forgets it)."""
    cached = _KNOWN.get(ctx)
    if cached is not None:
        return cached
    found = await _identity_from_store(ctx)
    _KNOWN[ctx] = found
    return found


async def _identity_from_store(ctx: Context) -> dict[str, str]:
    known = dict(await ctx.store.get(_KEY, default=None) or {})
    if known.get("conversation"):
        return known
    memory = await ctx.store.get("memory", default=None)
    session_id = getattr(memory, "session_id", None)
    if isinstance(session_id, str) and session_id:
        return {**known, "conversation": session_id}
    lock = _LOCKS.setdefault(ctx, asyncio.Lock())
    async with lock:
        known = dict(await ctx.store.get(_KEY, default=None) or {})
        if not known.get("conversation"):
            known["conversation"] = f"ctx-{uuid.uuid4().hex}"
            await ctx.store.set(_KEY, known)
    return known


async def _turn_of(ctx: Context) -> str | None:
    memory = await ctx.store.get("memory", default=None)
    if memory is None or not hasattr(memory, "aget_all"):
        return None
    messages = await memory.aget_all()
    roles = (getattr(m, "role", None) for m in messages)
    return str(sum(1 for role in roles if getattr(role, "value", role) == "user"))


def as_tool(
    fn: Callable[..., Any], *, name: str | None = None, description: str | None = None
) -> FunctionTool:
    """A LlamaIndex ``FunctionTool`` running ``fn`` (a retrysafe tool) in the identity of
    the workflow context it is called in; the description defaults to the docstring."""
    run_async = is_async(fn)
    # A READ's record is its cache entry, which no turn changes: only writes read the turn.
    turns = get_effect(fn) is not Effect.READ

    async def call(ctx: Context, **arguments: Any) -> Any:
        identity = await identity_of(ctx)
        try:
            async with bind_call(
                identity["conversation"],
                principal=identity.get("principal"),
                tenant=identity.get("tenant"),
                turn=await _turn_of(ctx) if turns else None,
            ):
                if run_async:
                    return await fn(**arguments)
                # As LlamaIndex runs a sync tool: in the loop's executor, in this context.
                context = contextvars.copy_context()
                call_fn = functools.partial(context.run, fn, **arguments)
                return await asyncio.get_running_loop().run_in_executor(None, call_fn)
        except Exception as error:
            hint = failure_hint(error)
            if hint is None:
                raise
            raise ToolRefused(hint) from error

    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # a name only a type checker sees: LlamaIndex describes what it can
        hints = {}
    params = [
        p.replace(annotation=hints.get(p.name, p.annotation), kind=p.KEYWORD_ONLY)
        for p in signature.parameters.values()
        if p.name != KEY_PARAM and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    ctx_param = inspect.Parameter(
        "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Context
    )
    call.__signature__ = signature.replace(parameters=[ctx_param, *params])  # type: ignore[attr-defined]
    call.__name__ = str(name or getattr(fn, "__name__", None) or "tool")
    call.__doc__ = fn.__doc__
    return FunctionTool.from_defaults(
        async_fn=call,
        name=call.__name__,
        description=description or (fn.__doc__ or "").strip() or None,
    )
