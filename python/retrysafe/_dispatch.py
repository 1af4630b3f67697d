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
    fn: Callable[..., Any], name: str, hidden: tuple[str, ...]
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A function that checks a model's arguments against ``fn``'s signature and returns the
    keyword arguments to call it with, or raises :class:`ArgumentError` naming each field.
    Types are checked with pydantic (installed with most agent stacks); without it, only
    names are: unknown, missing and hidden ones."""
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
            built.append(_pydantic_model(fn, name, params))
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
        if model is None:
            return dict(arguments)
        import pydantic

        try:
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

    return validate


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


def _pydantic_model(fn: Callable[..., Any], name: str, params: list[inspect.Parameter]) -> Any:
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
            __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True),
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
