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

What ``protect`` does, through each server's middleware, for every ``tools/call``:

- **who is calling** is bound on the server, never taken from the request: the principal of
  the access token the server's auth verified (FastMCP's ``auth=``, the MCP SDK's token
  verifier: client id, issuer and subject). Without auth, the transport stands for the
  caller: a stdio (or in-memory) server serves one client, and an HTTP client that
  negotiated an MCP session (``mcp-session-id``) is that session. A stateless HTTP client
  without auth and without a conversation cannot be told from another: its writes are
  refused with a hint (name a conversation, or configure auth), its reads run. ``principal=`` (a function of the access token, or of
  nothing) replaces that rule, e.g. to name a tenant's users your own way; ``tenant=`` names
  the tenant from the access token (e.g. a claim). Nothing in ``_meta`` can set either;
- **the conversation** is the one the client names in the request's ``_meta``
  (``"retrysafe/conversation"``, or ``conversation_id``, ``conversationId``, ``thread_id``,
  ``threadId``), always *within* that caller: another principal naming the same id never
  meets its records. A client that names none (an off-the-shelf MCP host) has one
  conversation per caller, so its repeated write runs once;
- the model's tool-call id (``_meta`` ``claudecode/toolUseId``, ``toolCallId``) is reported
  in spans. Where nothing else tells callers apart (stateless HTTP without auth, no
  conversation), a request key (``idempotencyKey`` of MCP SEP-3182, else the tool-use id)
  names the call: its transport retries replay it;
- ``tools/list`` carries the MCP annotations of each tool's effect (``readOnlyHint``,
  ``destructiveHint``, ``idempotentHint``), unless the tool set its own. With ``MCPServer``
  register tools through :func:`add_tools` for that (its tool objects are not public).

A client names its conversation with ``await client.call_tool(name, arguments,
meta={"retrysafe/conversation": conversation_id})``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from .. import RetrysafeError, get_effect, mcp_annotations
from ..framework import bind_call, escape, failure_hint, is_async

__all__ = [
    "CALL_ID_KEYS",
    "CONVERSATION_KEYS",
    "REQUEST_KEY_KEYS",
    "add_tools",
    "conversation_of",
    "principal_of_token",
    "protect",
]

#: The ``_meta`` keys a conversation id is read from, first found wins.
CONVERSATION_KEYS = (
    "retrysafe/conversation",
    "conversation_id",
    "conversationId",
    "thread_id",
    "threadId",
)
#: The ``_meta`` keys the model's tool-call id is read from: reported in spans, and, where
#: nothing else tells callers apart, the identity of one call's transport retries.
CALL_ID_KEYS = ("claudecode/toolUseId", "toolCallId", "tool_call_id")
#: The ``_meta`` keys of a client's per-request idempotency key (MCP SEP-3182): the same key
#: is the same call, retried by the transport.
REQUEST_KEY_KEYS = ("idempotencyKey", "io.modelcontextprotocol/idempotencyKey")

#: A caller from the access token (or, without one, None): server-side code only.
PrincipalRule = Callable[[Any], "str | None"]


def conversation_of(
    meta: Mapping[str, Any] | None, keys: Sequence[str] = CONVERSATION_KEYS
) -> str | None:
    """The conversation id a request's ``_meta`` names, or None. A client's choice: it is
    only ever used within the caller the server authenticated."""
    return _first(meta, keys)


def _as_mapping(meta: Any) -> Mapping[str, Any] | None:
    """A request's ``_meta`` as a mapping: a dict (FastMCP 3+, the MCP SDK 2.x) or the MCP
    SDK 1.x's ``RequestParams.Meta`` model, whose client-chosen keys are its extras."""
    if meta is None or isinstance(meta, Mapping):
        return meta
    dump = getattr(meta, "model_dump", None)
    return dump(by_alias=True) if callable(dump) else None


def _first(meta: Mapping[str, Any] | None, keys: Sequence[str]) -> str | None:
    """The first non-empty str under ``keys`` in ``meta``, or None."""
    meta = _as_mapping(meta)
    for key in keys:
        value = None if not meta else meta.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def principal_of_token(token: Any) -> str | None:
    """The principal of a verified access token: its client id, issuer and subject (the MCP
    SDK's ``principal_components``), each part escaped so no two tokens' principals meet."""
    if token is None:
        return None
    try:
        from mcp.server.auth.provider import principal_components

        parts: tuple[Any, ...] = tuple(principal_components(token))
    except (ImportError, AttributeError, TypeError):
        parts = (getattr(token, "client_id", None), None, getattr(token, "subject", None))
    if all(part is None for part in parts):
        return None
    # "oauth" + each part as "" (absent) or "=" + its escaped text: injective, and never
    # equal to a transport's principal ("local/...", "http-session/...").
    return "oauth/" + "/".join("" if p is None else "=" + escape(str(p)) for p in parts)


_LOCAL: list[Any] = [None, ""]  # [pid, name]: this process's local transport


def _local_name() -> str:
    """A random name for this process's local transport (stdio, in-memory), made anew in a
    forked child: a process on a stdio pipe serves exactly one client."""
    import os
    import secrets

    pid = os.getpid()
    if _LOCAL[0] != pid:
        _LOCAL[:] = [pid, secrets.token_hex(16)]
    return str(_LOCAL[1])


def _fastmcp_token() -> Any:
    try:
        from fastmcp.server.dependencies import get_access_token
    except ImportError:
        return _sdk_token()
    return get_access_token()


def _sdk_token() -> Any:
    try:
        from mcp.server.auth.middleware.auth_context import get_access_token
    except ImportError:
        return None
    return get_access_token()


class _Binder:
    """Turns one ``tools/call`` into the identity it runs under."""

    def __init__(
        self,
        keys: Sequence[str],
        principal: PrincipalRule | None,
        tenant: PrincipalRule | None,
    ) -> None:
        self.keys = tuple(keys)
        self.principal = principal
        self.tenant = tenant

    def caller(self, token: Any, http_request: Any) -> str | None:
        """Who is calling: the rule's answer, else the verified token's principal; without
        auth, the local transport (stdio, in-memory: this process serves its one client), or
        the HTTP transport's MCP session where the client negotiated one; else None."""
        principal = self.principal(token) if self.principal is not None else None
        if principal is None:
            principal = principal_of_token(token)
        if principal is not None:
            return principal
        if http_request is None:
            return f"local/{_local_name()}"
        headers = getattr(http_request, "headers", None)
        negotiated = None if headers is None else headers.get("mcp-session-id")
        return None if not negotiated else f"http-session/{escape(str(negotiated))}"

    async def run(
        self,
        token: Any,
        http_request: Any,
        meta: Mapping[str, Any] | None,
        run: Callable[[], Awaitable[Any]],
    ) -> Any:
        principal = self.caller(token, http_request)
        conversation = conversation_of(meta, self.keys)
        if conversation is None and principal is not None:
            conversation = "connection"  # the caller's one conversation
        if conversation is None:
            # Stateless HTTP without auth and no conversation: nothing tells two callers
            # apart. A request key the client sends (SEP-3182, or its tool-use id) names one
            # call: its transport retries replay it. Without one, a write is refused
            # (SessionRequiredError, as a hint) and reads run.
            request_key = _first(meta, REQUEST_KEY_KEYS) or _first(meta, CALL_ID_KEYS)
            if request_key is None:
                return await run()
            conversation = f"request/{request_key}"
        tenant = self.tenant(token) if self.tenant is not None else None
        async with bind_call(
            conversation,
            principal=principal or "anonymous",
            tenant=tenant,
            tool_call_id=_first(meta, CALL_ID_KEYS),
        ):
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
        """FastMCP middleware: the caller's identity for each tool call, and each tool's
        effect as MCP annotations in ``tools/list``."""

        def __init__(self, binder: _Binder) -> None:
            self.binder = binder

        async def on_call_tool(self, context: Any, call_next: Any) -> Any:
            request = getattr(context.fastmcp_context, "request_context", None)
            meta = getattr(request, "meta", None) or getattr(context.message, "meta", None)
            try:
                return await self.binder.run(
                    _fastmcp_token(),
                    getattr(request, "request", None),
                    meta,
                    lambda: call_next(context),
                )
            except ToolError as wrapped:
                # FastMCP 3 and 4 wrap a tool's exception in their own ToolError ("Error
                # calling tool ...: <the message>") before middleware sees it: the model
                # reads the hint of the error it wraps instead.
                cause = wrapped.__cause__
                hint = failure_hint(cause) if isinstance(cause, Exception) else None
                if hint is None:
                    raise
                raise ToolError(hint) from cause
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
    """MCP SDK server middleware: the caller's identity for each ``tools/call``, and the
    annotations of tools registered through :func:`add_tools` in ``tools/list``."""

    def __init__(self, binder: _Binder) -> None:
        self.binder = binder
        self.effects: dict[str, Any] = {}

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        if ctx.method == "tools/call":
            return await self.binder.run(
                _sdk_token(), getattr(ctx, "request", None), ctx.meta, lambda: call_next(ctx)
            )
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


#: The loggers FastMCP reports a tool's failure on (4.x and 3.x; 2.x), with its traceback.
_FASTMCP_TOOL_LOGGERS = ("fastmcp.server.server", "fastmcp.tools.tool_manager")


class _OneLineRefusals(logging.Filter):
    """On FastMCP's loggers: a tool's failure that retrysafe answered the model for (an
    UNKNOWN outcome, a refusal, a loop stop) is logged as one line, its type and key, not a
    traceback: it is an answer, not a crash. Any other failure is left as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, RetrysafeError):
            key = getattr(error, "key", None)
            detail = type(error).__name__ + (f" (key {key})" if key is not None else "")
            record_key = getattr(error, "record_key", None)
            if record_key is not None:  # an UNKNOWN outcome: the command that settles it
                detail += f"; retrysafe records resolve {record_key}"
            record.msg, record.args = f"{record.getMessage()}: {detail}", ()
            record.exc_info, record.exc_text = None, None
        return True


def _quiet_fastmcp_refusals() -> None:
    for name in _FASTMCP_TOOL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OneLineRefusals) for f in logger.filters):
            logger.addFilter(_OneLineRefusals())


def _is_fastmcp(server: Any) -> bool:
    return type(server).__module__.partition(".")[0] == "fastmcp" and hasattr(
        server, "add_middleware"
    )


def protect(
    server: Any,
    *,
    conversation_keys: Sequence[str] = CONVERSATION_KEYS,
    principal: PrincipalRule | None = None,
    tenant: PrincipalRule | None = None,
) -> Any:
    """Bind each tool call to its caller's identity (see the module's docstring) and
    describe each tool's effect in ``tools/list``; returns the middleware installed. Call it
    once per server.

    ``principal``/``tenant``: functions of the verified access token (None without auth)
    returning who is calling and their tenant; by default the token's client id, issuer and
    subject, and no tenant."""
    binder = _Binder(conversation_keys, principal, tenant)
    if _is_fastmcp(server):
        middleware = _fastmcp_middleware_class()(binder)
        server.add_middleware(middleware)
        _quiet_fastmcp_refusals()
        return middleware
    chain = getattr(server, "middleware", None)
    if not isinstance(chain, list):
        raise TypeError(
            f"protect() takes a fastmcp.FastMCP or an mcp.server.MCPServer, got {server!r}"
        )
    for existing in chain:
        if isinstance(existing, _SdkMiddleware):
            return existing
    sdk = _SdkMiddleware(binder)
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

    if is_async(fn):

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
