"""@tool: declare a tool's effect once and get the matching policy, plus a registry that
exports tool definitions for Anthropic, OpenAI and MCP."""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

from . import _telemetry
from ._cache import CachedTool, cache_tool
from ._callables import check_decoratable, hide_parameters
from ._dispatch import ArgumentError, ToolOutcome, failure_hint, invoke, make_validator
from ._effects import Effect, effect, get_effect, has_tag, mcp_annotations
from ._guard import LoopGuard, LoopStop, bound_arguments, current_guard
from ._idempotent import KEY_PARAM, IdempotentTool, idempotent
from ._identity import is_async, name_of
from ._log import logger
from ._retry import RetryConfig, with_retry

__all__ = ["ToolOutcome", "ToolRegistry", "ToolSpec", "default_registry", "json_schema", "tool"]

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


# --- JSON schema from a signature -----------------------------------------------------------


def _schema_of(tp: Any) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is inspect.Parameter.empty:
        return {}
    if tp is type(None):
        return {"type": "null"}
    if origin is Union or (origin is not None and getattr(origin, "__name__", "") == "UnionType"):
        members = [a for a in args if a is not type(None)]
        inner = (
            _schema_of(members[0])
            if len(members) == 1
            else {"anyOf": [_schema_of(a) for a in members]}
        )
        return {"anyOf": [inner, {"type": "null"}]} if type(None) in args else inner
    if origin is typing.Literal:
        return {**_literal_type(args), "enum": list(args)}
    if origin in (list, tuple, set, frozenset, Sequence) or tp in (list, tuple, set, frozenset):
        schema: dict[str, Any] = {"type": "array"}
        if args and args[-1] is not Ellipsis:
            schema["items"] = _schema_of(args[0])
        elif args:
            schema["items"] = _schema_of(args[0])
        return schema
    if origin in (dict, Mapping) or tp is dict:
        schema = {"type": "object"}
        if len(args) == 2:
            schema["additionalProperties"] = _schema_of(args[1])
        return schema
    if isinstance(tp, type):
        if issubclass(tp, bool):
            return {"type": "boolean"}
        if issubclass(tp, enum.Enum):
            return {"enum": [m.value for m in tp]}
        if issubclass(tp, int):
            return {"type": "integer"}
        if issubclass(tp, float):
            return {"type": "number"}
        # Schemas are built once per tool: these stay off `import retrysafe`.
        import datetime
        import decimal
        import uuid

        if issubclass(tp, (str, uuid.UUID)):
            return {"type": "string"}
        if issubclass(tp, decimal.Decimal):
            return {"type": "string", "format": "decimal"}
        if issubclass(tp, datetime.datetime):
            return {"type": "string", "format": "date-time"}
        if issubclass(tp, datetime.date):
            return {"type": "string", "format": "date"}
        if hasattr(tp, "model_json_schema"):  # pydantic v2
            return dict(tp.model_json_schema())
        if dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp)
            fields = dataclasses.fields(tp)
            return {
                "type": "object",
                "properties": {f.name: _schema_of(hints.get(f.name, Any)) for f in fields},
                "required": [
                    f.name
                    for f in fields
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                ],
            }
    return {}


def _literal_type(values: tuple[Any, ...]) -> dict[str, Any]:
    """The JSON type of a Literal's values (providers' validators want one beside "enum")."""
    names = []
    for value in values:
        if isinstance(value, bool):
            kind = "boolean"
        elif isinstance(value, int):
            kind = "integer"
        elif isinstance(value, float):
            kind = "number"
        elif value is None:
            kind = "null"
        else:
            kind = "string"
        if kind not in names:
            names.append(kind)
    return {"type": names[0] if len(names) == 1 else names}


def json_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """The JSON schema of a function's parameters (``self``/``cls`` and ``idempotency_key``
    left out), from its signature and type hints."""
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: describe what we can
        hints = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for i, (name, param) in enumerate(signature.parameters.items()):
        if (i == 0 and name in ("self", "cls")) or name == KEY_PARAM:
            continue
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        prop = _schema_of(hints.get(name, param.annotation))
        if param.default is inspect.Parameter.empty:
            required.append(name)
        elif param.default is None or isinstance(param.default, (str, int, float, bool)):
            prop = {**prop, "default": param.default}
        properties[name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    # The model may send only these: an extra argument (a made-up key) is refused.
    schema["additionalProperties"] = False
    return schema


# --- the registry ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ToolSpec:
    """One registered tool: what a model needs to call it, and its effect."""

    name: str
    description: str
    effect: Effect | None
    parameters: dict[str, Any]
    fn: Callable[..., Any] = dataclasses.field(repr=False, compare=False)
    #: Checks a model's arguments and returns the keyword arguments to call ``fn`` with.
    validate: Callable[[Mapping[str, Any]], dict[str, Any]] = dataclasses.field(
        repr=False, compare=False, default=dict
    )

    def anthropic(self) -> dict[str, Any]:
        """An Anthropic Messages API tool definition."""
        return {"name": self.name, "description": self.description, "input_schema": self.parameters}

    def openai(self, *, api: str = "chat") -> dict[str, Any]:
        """An OpenAI function tool: the Chat Completions shape, or with ``api="responses"``
        the Responses API's flat one (``name``, ``parameters``, ``strict`` at the top)."""
        if api == "responses":
            return {
                "type": "function",
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
                "strict": False,
            }
        if api != "chat":
            raise ValueError(f'api must be "chat" or "responses", got {api!r}')
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def mcp(self) -> dict[str, Any]:
        """A Model Context Protocol ``Tool`` with its annotations (untagged: destructive)."""
        return {
            "name": self.name,
            "description": self.description,
            "inputSchema": self.parameters,
            "annotations": mcp_annotations(self.effect or Effect.DESTRUCTIVE),
        }


class ToolRegistry:
    """The tools an agent offers a model; ``@tool`` registers into ``default_registry``."""

    def __init__(self, *, strict: bool = True) -> None:
        #: Arguments are checked as JSON is typed: no ``true`` for an int, no ``1`` for a
        #: bool, no ``"3"`` for a number. ``strict=False``: pydantic's lax conversions.
        self.strict = strict
        self._tools: dict[str, ToolSpec] = {}
        #: Names taken by tools of different modules (``module.qualname`` of each): they
        #: coexist (two modules of one program may each define ``charge_card`` for agents
        #: of their own), and offering or calling one by that name is refused, naming both.
        self._clashes: dict[str, list[str]] = {}

    def add(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        schema: Mapping[str, Any] | None = None,
        check: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> ToolSpec:
        """Register ``fn``; the name must be snake_case and unique, the description non-empty.

        ``schema``: the JSON schema of its arguments the model is given (and the arguments
        are checked against), instead of the one made from its signature. ``check``: a
        function of the checked arguments returning what the model should read when they do
        not go together (``"end must be after start"``), or None.

        Registering a function of the same module and qualified name again replaces it (a
        notebook cell run twice); another function under a taken name is an error."""
        if schema is not None and (
            not isinstance(schema, Mapping) or schema.get("type", "object") != "object"
        ):
            raise ValueError("schema= must be a JSON schema of an object (the arguments)")
        tool_name: str = name or str(getattr(fn, "__name__", ""))
        if not _SNAKE.match(tool_name):
            raise ValueError(f"tool name {tool_name!r} must be snake_case (a-z, 0-9, _)")
        text = description if description is not None else inspect.getdoc(fn) or ""
        text = text.strip()
        if not text:
            raise ValueError(
                f"tool {tool_name!r} needs a description (a docstring or description=)"
            )
        existing = self._tools.get(tool_name)
        parameters = dict(schema) if schema is not None else json_schema(fn)
        spec = ToolSpec(
            tool_name,
            text,
            get_effect(fn),
            parameters,
            fn,
            make_validator(
                fn,
                tool_name,
                (KEY_PARAM,),
                strict=self.strict,
                schema=parameters,
                own_schema=schema is not None,
                check=check,
            ),
        )
        origin = ".".join(_origin(fn))
        if existing is not None and _origin(existing.fn) != _origin(fn):
            clash = self._clashes.setdefault(tool_name, [".".join(_origin(existing.fn))])
            if origin not in clash:
                clash.append(origin)
            return spec  # kept apart: the name stays the first one's, and is refused
        self._tools[tool_name] = spec
        return spec

    def _unclashed(self, name: str) -> None:
        clash = self._clashes.get(name)
        if clash is not None:
            raise ValueError(
                f"{len(clash)} tools are named {name!r} ({', '.join(clash)}): give them "
                "distinct names (@tool(name=...)) or register them in separate registries "
                "(@tool(registry=ToolRegistry()) per agent)"
            )

    def __iter__(self) -> typing.Iterator[ToolSpec]:
        for name in self._tools:
            self._unclashed(name)
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __repr__(self) -> str:
        names = sorted(self._tools)
        shown = ", ".join(names[:8]) + (f", ... ({len(names) - 8} more)" if len(names) > 8 else "")
        return f"ToolRegistry({len(names)} tools{': ' + shown if names else ''})"

    def __bool__(self) -> bool:
        """Always true: an empty registry is still a registry (``registry or
        ToolRegistry()`` would otherwise replace it)."""
        return True

    def __getitem__(self, name: str) -> ToolSpec:
        self._unclashed(name)
        return self._tools[name]

    def tagged(self, tag: str) -> list[ToolSpec]:
        """The tools carrying ``tag``: a custom tag (``effect("payments")``) or an effect's
        name (``"write"``), in registration order."""
        return [spec for spec in self if has_tag(spec.fn, tag)]

    def anthropic(self) -> list[dict[str, Any]]:
        """Every tool as an Anthropic tool definition."""
        return [t.anthropic() for t in self]

    def openai(self, *, api: str = "chat") -> list[dict[str, Any]]:
        """Every tool as an OpenAI function tool (``api="chat"`` or ``"responses"``)."""
        return [t.openai(api=api) for t in self]

    def mcp(self) -> list[dict[str, Any]]:
        """Every tool as an MCP ``Tool`` with annotations."""
        return [t.mcp() for t in self]

    # --- running tools for raw SDK loops ---------------------------------------------------

    async def call(self, name: str, arguments: Mapping[str, Any] | str | None) -> ToolOutcome:
        """Run the tool ``name`` with a model's ``arguments`` (a dict, or the JSON text the
        OpenAI SDK gives), validated against its signature first.

        Bind the conversation first (``with session(conversation_id):``): writes are recorded
        per conversation. A bad argument, an unknown tool, a loop stop or any retrysafe error
        (an unknown outcome, a refusal, a wait the server asked for) and a transient failure
        of the tool's remote (HTTP 429/5xx, a timeout: with what the server answered and when
        to call again) come back as an error outcome whose ``text`` is a hint the model can
        act on; other exceptions (bugs) propagate.
        """
        spec, kwargs, failed = self._prepare(name, arguments)
        if failed is not None:
            return failed
        try:
            value = await invoke(spec.fn, kwargs)
        except Exception as error:
            hint = failure_hint(error)
            if hint is None:
                raise
            return ToolOutcome(name, error=hint)
        return _outcome(name, value)

    def call_sync(self, name: str, arguments: Mapping[str, Any] | str | None) -> ToolOutcome:
        """:meth:`call` for sync loops and sync tools (an async tool raises TypeError)."""
        spec, kwargs, failed = self._prepare(name, arguments)
        if failed is not None:
            return failed
        if is_async(spec.fn):
            raise TypeError(f"tool {name!r} is async: use `await registry.call(...)`")
        try:
            value = spec.fn(**kwargs)
        except Exception as error:
            hint = failure_hint(error)
            if hint is None:
                raise
            return ToolOutcome(name, error=hint)
        return _outcome(name, value)

    async def anthropic_result(self, tool_use: Any) -> dict[str, Any]:
        """Run an Anthropic ``tool_use`` block (SDK object or dict) and return its
        ``tool_result`` block, ``is_error`` set when the model must correct itself."""
        block_id, name, arguments = _fields(tool_use, ("id", "name", "input"))
        token = _telemetry.tool_call_id(block_id)
        try:
            return (await self.call(name, arguments)).anthropic(block_id)
        finally:
            _telemetry.reset_tool_call_id(token)

    async def openai_result(self, tool_call: Any) -> dict[str, Any]:
        """Run an OpenAI tool call and return its result message: for a Chat Completions
        ``tool_call`` a ``{"role": "tool", ...}`` message, for a Responses ``function_call``
        item a ``function_call_output`` item (SDK objects or dicts)."""
        function = _field(tool_call, "function")
        if function is not None:  # Chat Completions
            call_id = _field(tool_call, "id")
            name, arguments = _fields(function, ("name", "arguments"))
            api = "chat"
        else:
            call_id, name, arguments = _fields(tool_call, ("call_id", "name", "arguments"))
            api = "responses"
        token = _telemetry.tool_call_id(call_id)
        try:
            return (await self.call(name, arguments)).openai(call_id, api=api)
        finally:
            _telemetry.reset_tool_call_id(token)

    def _prepare(
        self, name: str, arguments: Mapping[str, Any] | str | None
    ) -> tuple[Any, dict[str, Any], ToolOutcome | None]:
        self._unclashed(name)
        spec = self._tools.get(name)
        if spec is None:
            known = ", ".join(sorted(self._tools)) or "none"
            return (
                None,
                {},
                ToolOutcome(name, error=f"There is no tool {name!r}; the tools are: {known}."),
            )
        if arguments is None or arguments == "":
            arguments = {}
        if isinstance(arguments, str):
            import orjson  # not on `import retrysafe`: it brings json and uuid (10 ms)

            try:
                arguments = orjson.loads(arguments)
            except orjson.JSONDecodeError as error:
                return (
                    spec,
                    {},
                    ToolOutcome(
                        name,
                        error=f"The arguments for tool {name!r} are not valid JSON ({error}); send a JSON object.",
                    ),
                )
        try:
            return spec, spec.validate(typing.cast(Mapping[str, Any], arguments)), None
        except ArgumentError as error:
            return spec, {}, ToolOutcome(name, error=error.llm_hint)


def _loop_stopped(stop: LoopStop) -> None:
    """A loop stop returned as a message: counted, and one log line (a raised one is
    counted by :func:`_failed`)."""
    _telemetry.count(stop.tool, "loop_stopped")
    _log_stop(stop.tool, stop.reason, stop.count, stop.limit, stop.window)


def _log_stop(tool_name: str, reason: Any, count: int, limit: int, window: str) -> None:
    logger.warning(
        "retrysafe: loop guard stopped %s (%s: %d calls, limit %d, %s)",
        tool_name,
        reason,
        count,
        limit,
        window,
        extra={
            "retrysafe_tool": tool_name,
            "retrysafe_decision": "loop_stopped",
            "retrysafe_reason": reason,
            "retrysafe_count": count,
            "retrysafe_limit": limit,
        },
    )


def _failed(tool_name: str, error: Exception) -> None:
    """A @tool call that raised: counted by outcome; the decisions worth a person's
    attention (a loop stop, an UNKNOWN outcome) get one log line each."""
    outcome = _telemetry.outcome_of_error(error)
    _telemetry.count(tool_name, outcome)
    if outcome == "loop_stopped":
        _log_stop(
            tool_name,
            getattr(error, "reason", None),
            getattr(error, "count", 0),
            getattr(error, "limit", 0),
            getattr(error, "window", "session"),
        )
    elif outcome == "unknown":
        record_key = getattr(error, "record_key", None)
        logger.warning(
            "retrysafe: %s left an UNKNOWN outcome (key %s...): %s",
            tool_name,
            str(getattr(error, "key", ""))[:11],
            "settle it with resolve()"
            if record_key is None
            else f"retrysafe records resolve {record_key} --applied RESULT_JSON | --not-applied",
            extra={"retrysafe_tool": tool_name, "retrysafe_decision": "unknown"},
        )


def _origin(fn: Callable[..., Any]) -> tuple[str, str]:
    """Where a function was defined: the same for a re-run of the cell that defines it."""
    return (str(getattr(fn, "__module__", "")), str(getattr(fn, "__qualname__", repr(fn))))


def _outcome(name: str, value: Any) -> ToolOutcome:
    if isinstance(value, LoopStop):
        return ToolOutcome(name, error=value.llm_hint)
    return ToolOutcome(name, value=value)


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _fields(obj: Any, names: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(_field(obj, name) for name in names)


default_registry = ToolRegistry()

# --- @tool ----------------------------------------------------------------------------------

_READ_RETRY = RetryConfig(max_attempts=3, base_delay=0.2, max_delay=5.0)


F = typing.TypeVar("F", bound=Callable[..., Any])


P = typing.ParamSpec("P")
R = typing.TypeVar("R")


class _ReadDecorator(typing.Protocol):
    def __call__(self, fn: Callable[P, R], /) -> CachedTool[P, R]: ...


class _ReadShortcut(typing.Protocol):
    """``@tool.read`` or ``@tool.read(**options)``: the decorated tool keeps its signature,
    and has ``fn.cache``."""

    @typing.overload
    def __call__(self, fn: Callable[P, R], /) -> CachedTool[P, R]: ...

    @typing.overload
    def __call__(self, fn: None = None, /, **options: Any) -> _ReadDecorator: ...


class _WriteDecorator(typing.Protocol):
    def __call__(self, fn: Callable[P, R], /) -> IdempotentTool[P, R]: ...


class _WriteShortcut(typing.Protocol):
    """``@tool.write`` (``.destructive``, ``.idempotent``), or with ``(**options)``: the
    decorated tool keeps its signature, and has ``fn.idempotency``."""

    @typing.overload
    def __call__(self, fn: Callable[P, R], /) -> IdempotentTool[P, R]: ...

    @typing.overload
    def __call__(self, fn: None = None, /, **options: Any) -> _WriteDecorator: ...


class _ToolFactory:
    """``@tool``: declare an agent tool and the policy its effect calls for.

    ``@tool.read`` (cached, retried), ``@tool.idempotent`` (retried), ``@tool.write``
    (recorded once per key: ``fn.idempotency``), ``@tool.destructive`` (recorded, never
    retried), or ``@tool(effect=..., **options)``; each with ``(**options)`` too. The tool
    keeps its signature (for type checkers as well), is registered in ``default_registry``
    (``registry=`` another, or None), and its schema never shows ``idempotency_key``.
    """

    def __repr__(self) -> str:
        return "retrysafe.tool (use @tool.read, @tool.write, @tool.destructive, @tool.idempotent)"

    @typing.overload
    def __call__(self, fn: F, /) -> F: ...

    @typing.overload
    def __call__(
        self,
        fn: None = None,
        /,
        *,
        effect: Effect | str | None = None,
        name: str | None = None,
        description: str | None = None,
        cache_ttl: float | None = 60.0,
        retry: RetryConfig | bool | None = None,
        remote_idempotent: bool = False,
        store: Any = None,
        guard: LoopGuard | None = None,
        registry: ToolRegistry | None = ...,
        ttl_seconds: float = 86400,
        lease_seconds: float = 30,
        wait_seconds: float = 30,
        checkpoint: bool = False,
        same_for_everyone: bool = False,
        repeat: str = "confirm",
        schema: Mapping[str, Any] | None = None,
        check: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> Callable[[F], F]: ...

    def __call__(
        self,
        fn: Any = None,
        /,
        *,
        effect: Effect | str | None = None,
        name: str | None = None,
        description: str | None = None,
        cache_ttl: float | None = 60.0,
        retry: RetryConfig | bool | None = None,
        remote_idempotent: bool = False,
        store: Any = None,
        guard: LoopGuard | None = None,
        registry: ToolRegistry | None = default_registry,
        ttl_seconds: float = 86400,
        lease_seconds: float = 30,
        wait_seconds: float = 30,
        checkpoint: bool = False,
        same_for_everyone: bool = False,
        repeat: str = "confirm",
        schema: Mapping[str, Any] | None = None,
        check: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> Any:
        """Apply the policy of an effect to a tool (sync or async):

        - READ: result cache (``cache_ttl``) with single-flight, and retry;
        - IDEMPOTENT: idempotency record, and retry;
        - WRITE: key + record; retry only with ``remote_idempotent=True`` (the key, sent to
          the remote by the tool, makes a retry safe);
        - DESTRUCTIVE: key + record; retry refused unless ``remote_idempotent=True``.

        ``retry``: a RetryConfig, ``False`` for none, ``None`` for the effect's default.
        ``same_for_everyone``: a READ tool's results are the same for every caller (weather,
        a catalog): one cache entry per call for all principals and tenants (by default each
        principal and tenant has its own). ``repeat``: what an identical write does in a later
        turn of the conversation (``"confirm"``, ``"replay"``, ``"allow"``; see
        :func:`~retrysafe.idempotent`).
        ``guard``: a LoopGuard checked first (else the one bound by ``with guard:``).
        The tool is registered (name, description, JSON schema) in ``registry``; ``schema``
        replaces the JSON schema made from the signature, and ``check`` (the checked
        arguments) returns what the model reads when they do not go together, or None
        (see :meth:`ToolRegistry.add`).
        """

        def decorate(func: Any) -> Any:
            return _build(
                func,
                kind=effect,
                name=name,
                description=description,
                cache_ttl=cache_ttl,
                retry=retry,
                remote_idempotent=remote_idempotent,
                store=store,
                guard=guard,
                registry=registry,
                ttl_seconds=ttl_seconds,
                lease_seconds=lease_seconds,
                wait_seconds=wait_seconds,
                checkpoint=checkpoint,
                same_for_everyone=same_for_everyone,
                repeat=repeat,
                schema=schema,
                check=check,
            )

        return decorate(fn) if fn is not None else decorate

    def _kind(self, kind: Effect) -> Any:
        def shortcut(fn: Any = None, /, **options: Any) -> Any:
            return self(fn, effect=kind, **options)

        shortcut.__doc__ = f"``@tool(effect=Effect.{kind.name}, ...)``"
        return shortcut

    @property
    def read(self) -> _ReadShortcut:
        """``@tool.read``: a READ tool."""
        return typing.cast(_ReadShortcut, self._kind(Effect.READ))

    @property
    def idempotent(self) -> _WriteShortcut:
        """``@tool.idempotent``: an IDEMPOTENT tool."""
        return typing.cast(_WriteShortcut, self._kind(Effect.IDEMPOTENT))

    @property
    def write(self) -> _WriteShortcut:
        """``@tool.write``: a WRITE tool."""
        return typing.cast(_WriteShortcut, self._kind(Effect.WRITE))

    @property
    def destructive(self) -> _WriteShortcut:
        """``@tool.destructive``: a DESTRUCTIVE tool."""
        return typing.cast(_WriteShortcut, self._kind(Effect.DESTRUCTIVE))


tool = _ToolFactory()


def _build(
    func: Any,
    *,
    kind: Effect | str | None,
    name: str | None,
    description: str | None,
    cache_ttl: float | None,
    retry: RetryConfig | bool | None,
    remote_idempotent: bool,
    store: Any,
    guard: LoopGuard | None,
    registry: ToolRegistry | None,
    ttl_seconds: float,
    lease_seconds: float,
    wait_seconds: float,
    checkpoint: bool,
    same_for_everyone: bool = False,
    repeat: str = "confirm",
    schema: Mapping[str, Any] | None = None,
    check: Callable[[dict[str, Any]], str | None] | None = None,
) -> Any:
    check_decoratable(func, "@tool")
    tagged = get_effect(func)
    chosen = Effect.parse(kind) if kind is not None else tagged
    if chosen is None:
        raise ValueError(
            f"tool {getattr(func, '__name__', func)!r} has no effect: pass effect=Effect.READ, "
            "WRITE, IDEMPOTENT or DESTRUCTIVE (an untagged tool would be treated as DESTRUCTIVE)"
        )
    if tagged is None:
        effect(chosen)(func)
    # Retry: the effect's default, or what was asked (refused for writes, see with_retry).
    config: RetryConfig | None
    if retry is False:
        config = None
    elif isinstance(retry, RetryConfig):
        config = retry
    elif chosen in (Effect.READ, Effect.IDEMPOTENT) or remote_idempotent:
        config = _READ_RETRY
    else:
        config = None
    inner: Any = func
    if config is not None:
        inner = with_retry(func, config=config, remote_idempotent=remote_idempotent)
    layered: Any
    if chosen is Effect.READ:
        layered = (
            cache_tool(
                inner,
                ttl_seconds=cache_ttl,
                store=store,
                namespace=f"tool:{name or func.__qualname__}",
                same_for_everyone=same_for_everyone,
            )
            if cache_ttl
            else inner
        )
    else:
        layered = idempotent(
            inner,
            scope=name or func.__qualname__,
            store=store,
            ttl_seconds=ttl_seconds,
            lease_seconds=lease_seconds,
            wait_seconds=wait_seconds,
            effect=chosen,
            checkpoint=checkpoint,
            # A write's record is per conversation: never one shared by every caller.
            require_session=chosen in (Effect.WRITE, Effect.DESTRUCTIVE),
            remote_idempotent=remote_idempotent,
            repeat=repeat,
        )
    tool_name = name or func.__name__
    guarded_args = bound_arguments(func, (KEY_PARAM,))
    cached = getattr(layered, "cache", None)
    recorded = getattr(layered, "idempotency", None)
    _telemetry.track_tool(tool_name, name_of(func), cached, recorded)
    # What a traced call was when no layer's slow path said otherwise.
    unset = (
        "cache_hit" if cached is not None else "replayed" if recorded is not None else "executed"
    )
    kind = chosen.value

    if is_async(func):

        async def plain_async(*args: Any, **kwargs: Any) -> Any:
            try:
                active = guard or current_guard()
                if active is not None:
                    stop = await active.arecord(tool_name, guarded_args(args, kwargs))
                    if stop is not None:
                        _loop_stopped(stop)
                        return stop
                return await layered(*args, **kwargs)
            except Exception as error:
                _failed(tool_name, error)
                raise

        async def async_tool(*args: Any, **kwargs: Any) -> Any:
            if not _telemetry.active():
                return await plain_async(*args, **kwargs)
            traced = _telemetry.TracedCall(tool_name, kind, unset)
            with traced:
                try:
                    result = await plain_async(*args, **kwargs)
                except BaseException as error:
                    traced.finish(None, error)
                    raise
                traced.finish(result, None)
                return result

        wrapper: Any = functools.wraps(func)(async_tool)
    else:

        def plain_sync(*args: Any, **kwargs: Any) -> Any:
            try:
                active = guard or current_guard()
                if active is not None:
                    stop = active.record(tool_name, guarded_args(args, kwargs))
                    if stop is not None:
                        _loop_stopped(stop)
                        return stop
                return layered(*args, **kwargs)
            except Exception as error:
                _failed(tool_name, error)
                raise

        def sync_tool(*args: Any, **kwargs: Any) -> Any:
            if not _telemetry.active():
                return plain_sync(*args, **kwargs)
            traced = _telemetry.TracedCall(tool_name, kind, unset)
            with traced:
                try:
                    result = plain_sync(*args, **kwargs)
                except BaseException as error:
                    traced.finish(None, error)
                    raise
                traced.finish(result, None)
                return result

        wrapper = functools.wraps(func)(sync_tool)
    hide_parameters(wrapper, func, (KEY_PARAM,))
    wrapper.effect = chosen
    for attribute in ("cache", "idempotency"):
        if hasattr(layered, attribute):
            setattr(wrapper, attribute, getattr(layered, attribute))
    if registry is not None:
        wrapper.spec = registry.add(
            wrapper, name=tool_name, description=description, schema=schema, check=check
        )
    return wrapper
