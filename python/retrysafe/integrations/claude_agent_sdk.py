"""retrysafe for the Claude Agent SDK: its in-process SDK MCP tools.

Make each retrysafe tool an SDK MCP tool with :func:`as_tool` (instead of the SDK's
``@tool(name, description, input_schema)`` and a handler that unpacks an argument dict), and
open the client through :func:`client` (or run :func:`query`), which binds the
conversation::

    from claude_agent_sdk import ClaudeAgentOptions, create_sdk_mcp_server
    from retrysafe.integrations.claude_agent_sdk import as_tool, client

    @tool.write(remote_idempotent=True)
    async def charge_card(customer: str, amount_cents: int, idempotency_key: str | None = None):
        ...

    shop = create_sdk_mcp_server("shop", tools=[as_tool(charge_card)])
    options = ClaudeAgentOptions(mcp_servers={"shop": shop}, session_id=conversation_id)
    async with client(options, principal=user_id) as claude:
        await claude.query("charge cus_42 $19.99")
        async for message in claude.receive_response():
            ...

- **the conversation** is the SDK session the options name (``session_id``, else ``resume``):
  your application's id for the conversation, which the CLI keeps its transcript under.
  ``principal=`` and ``tenant=`` name who is calling (server-side values); ``turn=`` the
  user turn where your code counts them. The SDK serves the in-process tools from tasks it
  starts when the client connects: the binding made around the connection reaches every
  tool call of that client and nothing else;
- :func:`as_tool` takes the tool's name, description (its docstring) and JSON schema from
  the function (never ``idempotency_key``), adds the effect's MCP annotations
  (``readOnlyHint``, ``destructiveHint``, ``idempotentHint``), calls the function with the
  model's arguments as keywords (a sync one in a worker thread), returns its result as text
  (JSON unless it is a string), and answers a failure retrysafe has a hint for (no session,
  an unknown outcome, a refusal, a transient failure of the remote) with the hint as an
  error result, which the model reads.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from claude_agent_sdk import ClaudeSDKClient, SdkMcpTool, ToolAnnotations
from claude_agent_sdk import query as sdk_query

from .. import get_effect, json_schema, mcp_annotations
from ..framework import bind_call, failure_hint, is_async, name_of

__all__ = ["as_tool", "client", "conversation_of", "query"]


def conversation_of(options: Any) -> str | None:
    """The conversation a client's options name: ``session_id``, else ``resume``."""
    for candidate in (getattr(options, "session_id", None), getattr(options, "resume", None)):
        if isinstance(candidate, str) and candidate:
            return candidate
    return None


def _binding(options: Any, principal: str | None, tenant: str | None, turn: str | None) -> Any:
    conversation = conversation_of(options)
    if conversation is None:  # the writes fail closed, with a hint the model reads
        return contextlib.nullcontext()
    return bind_call(conversation, principal=principal, tenant=tenant, turn=turn)


@contextlib.asynccontextmanager
async def client(
    options: Any,
    *,
    principal: str | None = None,
    tenant: str | None = None,
    turn: str | None = None,
) -> AsyncIterator[ClaudeSDKClient]:
    """A connected ``ClaudeSDKClient`` whose in-process tools run in the conversation its
    options name (see the module's docstring)."""
    with _binding(options, principal, tenant, turn):
        claude = ClaudeSDKClient(options)
        await claude.connect()
    try:
        yield claude
    finally:
        await claude.disconnect()


async def query(
    *,
    prompt: Any,
    options: Any,
    principal: str | None = None,
    tenant: str | None = None,
    turn: str | None = None,
    **kwargs: Any,
) -> AsyncIterator[Any]:
    """The SDK's ``query`` with its in-process tools in the conversation ``options`` name."""
    with _binding(options, principal, tenant, turn):
        messages = sdk_query(prompt=prompt, options=options, **kwargs)
        async for message in messages:
            yield message


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def as_tool(
    fn: Callable[..., Any], *, name: str | None = None, description: str | None = None
) -> SdkMcpTool[Any]:
    """An SDK MCP tool running ``fn`` (a retrysafe tool) with the model's arguments."""
    run_async = is_async(fn)

    async def handler(arguments: dict[str, Any]) -> dict[str, Any]:
        try:
            if run_async:
                value = await fn(**arguments)
            else:
                value = await anyio.to_thread.run_sync(lambda: fn(**arguments))
        except Exception as error:
            hint = failure_hint(error)
            if hint is None:
                raise  # a bug: the SDK reports it to the model as an error result
            return {"content": [{"type": "text", "text": hint}], "is_error": True}
        return {"content": [{"type": "text", "text": _text(value)}]}

    called = name or getattr(fn, "__name__", None) or name_of(fn)
    return SdkMcpTool(
        name=called,
        description=description or (fn.__doc__ or "").strip() or called,
        input_schema=json_schema(fn),
        handler=handler,
        annotations=(
            ToolAnnotations.model_validate(mcp_annotations(fn))
            if get_effect(fn) is not None
            else None
        ),
    )
