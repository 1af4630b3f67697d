"""retrysafe for MCP servers: FastMCP, and the MCP SDK's ``MCPServer``.

One line on the server::

    from retrysafe.integrations.mcp import protect

    protect(server)          # a fastmcp.FastMCP or an mcp.server.MCPServer

Declare tools as usual, with retrysafe's decorator next to the function (below the
framework's)::

    @server.tool
    @tool.write(remote_idempotent=True)
    async def charge_card(customer: str, amount_cents: int, idempotency_key: str | None = None):
        ...

What ``protect`` does, through each server's middleware:

- every ``tools/call`` runs inside :func:`retrysafe.session` for the conversation the client
  names in the request's ``_meta`` (``"retrysafe/conversation"``, or ``conversation_id``,
  ``conversationId``, ``thread_id``, ``threadId``; the tenant under ``"retrysafe/tenant"``).
  Never the transport's session id: under the current protocol it is new for every request,
  so a write would never be deduplicated. A write called without a conversation fails with
  :class:`~retrysafe.SessionRequiredError` (as a tool error the model reads), never under a
  record shared by every client;
- ``tools/list`` carries the MCP annotations of each tool's effect (``readOnlyHint``,
  ``destructiveHint``, ``idempotentHint``), unless the tool set its own. With ``MCPServer``
  register tools through :func:`add_tools` for that (its tool objects are not public).

A client names its conversation with ``await client.call_tool(name, arguments,
meta={"retrysafe/conversation": conversation_id})``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from .._dispatch import failure_hint
from .._effects import get_effect, mcp_annotations
from .._retry import _is_async
from .._session import session

__all__ = ["CONVERSATION_KEYS", "TENANT_KEY", "add_tools", "conversation_of", "protect"]

#: The ``_meta`` keys a conversation id is read from, first found wins.
CONVERSATION_KEYS = (
    "retrysafe/conversation",
    "conversation_id",
    "conversationId",
    "thread_id",
    "threadId",
)
#: The ``_meta`` key of the tenant (optional).
TENANT_KEY = "retrysafe/tenant"


def conversation_of(
    meta: Mapping[str, Any] | None, keys: Sequence[str] = CONVERSATION_KEYS
) -> tuple[str, str | None] | None:
    """``(conversation id, tenant)`` from a request's ``_meta``, or None when it names none."""
    if not meta:
        return None
    for key in keys:
        value = meta.get(key)
        if isinstance(value, str) and value:
            tenant = meta.get(TENANT_KEY)
            return value, tenant if isinstance(tenant, str) and tenant else None
    return None


async def _in_conversation(
    meta: Mapping[str, Any] | None,
    keys: Sequence[str],
    run: Callable[[], Awaitable[Any]],
) -> Any:
    found = conversation_of(meta, keys)
    if found is None:
        return await run()
    async with session(found[0], tenant=found[1]):
        return await run()


def _merged_annotations(fn: Any, current: Any) -> dict[str, Any] | None:
    """The effect's hints under what the tool set itself; None when ``fn`` is untagged."""
    if fn is None or get_effect(fn) is None:
        return None
    hints: dict[str, Any] = dict(mcp_annotations(fn))
    if current is not None:
        dumped = current.model_dump(exclude_none=True) if hasattr(current, "model_dump") else {}
        hints.update(dumped)
    return hints


@functools.cache
def _fastmcp_middleware_class() -> type:
    from fastmcp.exceptions import ToolError
    from fastmcp.server.middleware import Middleware
    from mcp.types import ToolAnnotations

    class RetrysafeMiddleware(Middleware):
        """FastMCP middleware: the conversation's session for each tool call, and each
        tool's effect as MCP annotations in ``tools/list``."""

        def __init__(self, keys: Sequence[str]) -> None:
            self.keys = tuple(keys)

        async def on_call_tool(self, context: Any, call_next: Any) -> Any:
            request = getattr(context.fastmcp_context, "request_context", None)
            meta = getattr(request, "meta", None) or getattr(context.message, "meta", None)
            try:
                return await _in_conversation(meta, self.keys, lambda: call_next(context))
            except ToolError:
                raise
            except Exception as error:
                # The model reads the hint (FastMCP would show the error's message).
                raise _as_tool_error(error, ToolError) from error

        async def on_list_tools(self, context: Any, call_next: Any) -> Any:
            tools = await call_next(context)
            out = []
            for listed in tools:
                hints = _merged_annotations(getattr(listed, "fn", None), listed.annotations)
                if hints is not None:
                    annotations = ToolAnnotations.model_validate(hints)
                    listed = listed.model_copy(update={"annotations": annotations})
                out.append(listed)
            return out

    return RetrysafeMiddleware


class _SdkMiddleware:
    """MCP SDK server middleware: the conversation's session for each ``tools/call``, and
    the annotations of tools registered through :func:`add_tools` in ``tools/list``."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(keys)
        self.effects: dict[str, Any] = {}

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        if ctx.method == "tools/call":
            return await _in_conversation(ctx.meta, self.keys, lambda: call_next(ctx))
        result = await call_next(ctx)
        if ctx.method == "tools/list" and self.effects and hasattr(result, "tools"):
            from mcp.types import ToolAnnotations

            tools = []
            for listed in result.tools:
                fn = self.effects.get(listed.name)
                hints = _merged_annotations(fn, listed.annotations)
                if hints is not None:
                    annotations = ToolAnnotations.model_validate(hints)
                    listed = listed.model_copy(update={"annotations": annotations})
                tools.append(listed)
            result = result.model_copy(update={"tools": tools})
        return result


def _is_fastmcp(server: Any) -> bool:
    return type(server).__module__.partition(".")[0] == "fastmcp" and hasattr(
        server, "add_middleware"
    )


def protect(server: Any, *, conversation_keys: Sequence[str] = CONVERSATION_KEYS) -> Any:
    """Bind each tool call to its conversation's session and describe each tool's effect in
    ``tools/list``; returns the middleware installed. Call it once per server."""
    if _is_fastmcp(server):
        middleware = _fastmcp_middleware_class()(conversation_keys)
        server.add_middleware(middleware)
        return middleware
    chain = getattr(server, "middleware", None)
    if not isinstance(chain, list):
        raise TypeError(
            f"protect() takes a fastmcp.FastMCP or an mcp.server.MCPServer, got {server!r}"
        )
    for existing in chain:
        if isinstance(existing, _SdkMiddleware):
            return existing
    sdk = _SdkMiddleware(conversation_keys)
    chain.append(sdk)
    return sdk


def add_tools(server: Any, *tools: Callable[..., Any]) -> None:
    """Register retrysafe tools on a server with their effect's MCP annotations (what
    ``protect`` does for FastMCP by itself; needed with the MCP SDK's ``MCPServer``).

    With ``MCPServer`` a retrysafe error (no session, an unknown outcome, a refusal) reaches
    the model as a tool error carrying its ``llm_hint``; the server would otherwise replace
    it with "Error executing tool"."""
    from mcp.types import ToolAnnotations

    middleware = protect(server)
    for fn in tools:
        hints = ToolAnnotations.model_validate(mcp_annotations(fn))
        if _is_fastmcp(server):
            server.tool(fn, annotations=hints)
        else:
            server.add_tool(_hints_as_tool_errors(fn), annotations=hints)
            middleware.effects[getattr(fn, "__name__", "")] = fn


def _as_tool_error(error: Exception, tool_error: type[Exception]) -> Exception:
    hint = failure_hint(error)
    return error if hint is None else tool_error(hint)


def _hints_as_tool_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` raising the MCP SDK's ToolError (shown to the model) for a failure the model should read (a
    retrysafe error, a transient failure of the remote)."""
    from mcp.server.mcpserver.exceptions import ToolError

    if _is_async(fn):

        async def async_reported(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except Exception as error:
                raise _as_tool_error(error, ToolError) from error

        return functools.wraps(fn)(async_reported)

    def reported(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            raise _as_tool_error(error, ToolError) from error

    return functools.wraps(fn)(reported)
