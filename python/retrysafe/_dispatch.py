"""Running a registered tool for a raw SDK loop: validate the model's arguments against the
signature, call the tool, and turn the outcome into the tool-result message each SDK wants.

Errors the model can act on (a bad argument, a loop stop, an unknown outcome, a refusal) come
back as error results whose text is an ``llm_hint``; anything else is a bug of the tool or
the application and propagates.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from ._classify import is_transient, server_hint, server_said
from ._exceptions import RetrysafeError
from ._guard import LoopStop
from ._identity import is_async

__all__ = [
    "ArgumentError",
    "ToolOutcome",
    "failure_hint",
    "invoke",
    "make_validator",
    "tool_text",
]


class ArgumentError(RetrysafeError):
    """The model's arguments do not fit the tool's signature; ``llm_hint`` names each field."""


@dataclass(frozen=True)
class ToolOutcome:
    """What a registry call gave: ``value`` on success, else ``error``, the text (an
    ``llm_hint``) to hand back to the model so it can correct itself."""

    tool: str
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the tool ran (or replayed) and returned ``value``."""
        return self.error is None

    @property
    def text(self) -> str:
        """The result as the model reads it: the value as text (str as is, else JSON), or
        the error's hint."""
        return self.error if self.error is not None else tool_text(self.value)

    def anthropic(self, tool_use_id: str) -> dict[str, Any]:
        """An Anthropic ``tool_result`` content block for the ``tool_use`` block of that id."""
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": tool_use_id,
            "content": self.text,
        }
        if not self.ok:
            block["is_error"] = True
        return block

    def openai(self, call_id: str, *, api: str = "chat") -> dict[str, Any]:
        """An OpenAI tool result: a Chat Completions ``tool`` message, or with
        ``api="responses"`` a Responses ``function_call_output`` item."""
        if api == "responses":
            return {"type": "function_call_output", "call_id": call_id, "output": self.text}
        if api != "chat":
            raise ValueError(f'api must be "chat" or "responses", got {api!r}')
        return {"role": "tool", "tool_call_id": call_id, "content": self.text}


def failure_hint(error: BaseException) -> str | None:
    """The text a model should read for a tool's failure, or None when the failure is not
    the model's to handle (a bug: it propagates).

    A retrysafe error gives its ``llm_hint``; a transient failure of a remote (a timeout, a
    lost connection, HTTP 429/5xx, also wrapped in the tool's own error) says so, with what
    the server answered and when to call again."""
    if isinstance(error, RetrysafeError):
        return error.llm_hint
    if not isinstance(error, Exception) or not is_transient(error):
        return None
    said = server_said(error)
    hint = server_hint(error)
    wait = None if hint is None or hint.delay is None else max(1, math.ceil(hint.delay))
    return (
        "The tool's service failed temporarily"
        + ("" if said is None else f" (it {said})")
        + ". "
        + (
            "Try again later."
            if wait is None
            else f"Call it again in {wait} s or later, not sooner."
        )
    )


def tool_text(value: Any) -> str:
    """A tool's return value as text for the model: a str as is, anything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, LoopStop):
        return value.llm_hint
    import orjson  # not on `import retrysafe`: it brings json and uuid (10 ms)

    dump = getattr(value, "model_dump", None)
    if callable(dump):
        value = dump(mode="json")
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def make_validator(
    fn: Callable[..., Any],
    name: str,
    hidden: tuple[str, ...],
    *,
    strict: bool = True,
    schema: Mapping[str, Any] | None = None,
    own_schema: bool = False,
    check: Callable[[dict[str, Any]], str | None] | None = None,
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A function that checks a model's arguments against ``fn``'s signature and returns the
    keyword arguments to call it with, or raises :class:`ArgumentError` naming each field.

    Types are checked with pydantic where it is installed (as JSON, strictly by default: no
    ``true`` for an int, no ``1`` for a bool, no ``"3"`` for a number; ``strict=False`` gives
    pydantic's lax conversions); without it, against ``schema``, the JSON schema the model
    was given, never silently skipped (a tool's ``own_schema`` is checked with pydantic
    too). ``check`` (the arguments, as
    the tool will get them) returns a message the model reads when they do not go together
    (``end`` before ``start``), or None."""
    signature = inspect.signature(fn)
    params = [
        p
        for i, p in enumerate(signature.parameters.values())
        if p.name not in hidden
        and not (i == 0 and p.name in ("self", "cls"))
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    names = {p.name for p in params}
    required = {p.name for p in params if p.default is inspect.Parameter.empty}
    # Built on the first call, not when the tool is decorated: pydantic takes ~0.1 s to
    # import, and most programs never run a tool through the registry.
    built: list[Any] = []

    def validate(arguments: Mapping[str, Any]) -> dict[str, Any]:
        if not built:
            built.append(_pydantic_model(fn, name, params, strict))
        model = built[0]
        if not isinstance(arguments, Mapping):
            raise _argument_error(name, [f"the arguments must be a JSON object, got {arguments!r}"])
        problems = [
            f"unexpected argument {key!r} (this tool takes: {', '.join(sorted(names)) or 'none'})"
            for key in arguments
            if key not in names
        ]
        problems += [
            f"missing required argument {key!r}" for key in sorted(required - set(arguments))
        ]
        if problems:
            raise _argument_error(name, problems)
        if schema is not None and (model is None or own_schema):
            problems = schema_problems(dict(arguments), schema, "")
            if problems:
                raise _argument_error(name, problems)
        if model is None:
            checked = dict(arguments)
        else:
            checked = _pydantic_checked(model, name, arguments, strict)
        if check is not None:
            message = check(checked)
            if message:
                raise _argument_error(name, [message])
        return checked

    return validate


def _pydantic_checked(
    model: Any, name: str, arguments: Mapping[str, Any], strict: bool
) -> dict[str, Any]:
    import pydantic

    try:
        if strict:
            import orjson  # off `import retrysafe`: only registry calls need it

            try:
                text = orjson.dumps(dict(arguments))
            except TypeError:  # a Python value no JSON holds (registry.call from code)
                checked = model.model_validate(dict(arguments))
            else:
                checked = model.model_validate_json(text)
        else:
            checked = model.model_validate(dict(arguments))
    except pydantic.ValidationError as error:
        raise _argument_error(
            name,
            [
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                f" (got {_short(e.get('input'))})"
                for e in error.errors()
            ],
        ) from None
    return {key: getattr(checked, key) for key in arguments}


_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, (list, tuple)),
    "object": lambda v: isinstance(v, Mapping),
}


def schema_problems(value: Any, schema: Mapping[str, Any], where: str) -> list[str]:
    """What is wrong with ``value`` under a JSON schema (the part tools' schemas use: type,
    enum, anyOf, oneOf, properties, required, additionalProperties, items, minimum, maximum,
    minLength, maxLength, pattern); [] when nothing is. Strict as JSON is: a bool is no
    integer, an integer no bool."""
    at = where or "arguments"
    kinds = schema.get("type")
    if kinds is not None:
        allowed = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_JSON_TYPES.get(k, lambda v: True)(value) for k in allowed):
            return [f"{at}: expected {' or '.join(allowed)} (got {_short(value)})"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{at}: expected one of {_short(schema['enum'])} (got {_short(value)})"]
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema and not any(
            not schema_problems(value, option, where) for option in schema[keyword]
        ):
            return [f"{at}: matches none of the allowed forms (got {_short(value)})"]
    problems: list[str] = []
    if isinstance(value, Mapping):
        properties = schema.get("properties") or {}
        for key in schema.get("required") or ():
            if key not in value:
                problems.append(f"{at}: missing {key!r}")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            inner = f"{where}.{key}" if where else str(key)
            if key in properties:
                problems += schema_problems(item, properties[key], inner)
            elif extra is False:
                problems.append(f"{at}: unexpected {key!r}")
            elif isinstance(extra, Mapping):
                problems += schema_problems(item, extra, inner)
    if isinstance(value, (list, tuple)) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            problems += schema_problems(item, schema["items"], f"{where}[{index}]")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{at}: must be at least {schema['minimum']} (got {value})")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{at}: must be at most {schema['maximum']} (got {value})")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            problems.append(f"{at}: must have at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{at}: must have at most {schema['maxLength']} characters")
        if "pattern" in schema:
            if not re.search(schema["pattern"], value):
                problems.append(f"{at}: does not match {schema['pattern']!r}")
    return problems


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _argument_error(tool: str, problems: list[str]) -> ArgumentError:
    hint = (
        f"Invalid arguments for tool {tool!r}: "
        + "; ".join(problems)
        + ". Fix them and call again."
    )
    return ArgumentError(hint, llm_hint=hint)


def _pydantic_model(
    fn: Callable[..., Any], name: str, params: list[inspect.Parameter], strict: bool = True
) -> Any:
    try:
        import pydantic
    except ImportError:
        return None
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable annotations: check names only
        hints = {}
    fields: dict[str, Any] = {}
    for p in params:
        annotation = hints.get(p.name, p.annotation)
        if annotation is inspect.Parameter.empty:
            annotation = Any
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (annotation, default)
    try:
        return pydantic.create_model(
            f"{name}_arguments",
            __config__=pydantic.ConfigDict(
                extra="forbid", arbitrary_types_allowed=True, strict=strict
            ),
            **fields,
        )
    except Exception:  # a type pydantic cannot describe: check names only
        return None


async def invoke(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Calls a sync or async tool with ``kwargs`` (a sync one in a worker thread, with the
    caller's context: its session and guard)."""
    if is_async(fn):
        return await fn(**kwargs)
    return await anyio.to_thread.run_sync(functools.partial(fn, **kwargs))
