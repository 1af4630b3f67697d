"""What retrysafe's decorators accept, and what their wrappers show of the function.

A wrapper shows the wrapped function's signature less the parameters retrysafe fills itself
(``idempotency_key``): frameworks build a tool's schema from ``inspect.signature`` and the
annotations, so a parameter left there is offered to the model, which may then fill it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from ._native import CallKeyer

__all__ = ["bound_self", "check_decoratable", "hide_parameters", "make_keyer"]

#: Top-level packages whose tool objects wrap a function: a retrysafe decorator above such a
#: decorator would wrap the framework's object, or nothing the framework calls.
_FRAMEWORKS = {
    "fastmcp": "FastMCP",
    "mcp": "the MCP SDK",
    "pydantic_ai": "Pydantic AI",
    "agents": "the OpenAI Agents SDK",
    "langchain": "LangChain",
    "langchain_core": "LangChain",
    "langgraph": "LangGraph",
}


def check_decoratable(obj: Any, decorator: str) -> None:
    """Raise TypeError unless ``obj`` is a callable retrysafe can wrap, naming the right
    order when it is a framework's tool object."""
    framework = _FRAMEWORKS.get(type(obj).__module__.partition(".")[0])
    if framework is not None and not inspect.isroutine(obj):
        raise TypeError(
            f"{decorator} was given a {type(obj).__name__} of {framework}, not a function: "
            f"put {decorator} below the framework's tool decorator, next to the function, "
            f"so the framework registers the protected function (e.g. @mcp.tool above "
            f"@tool.write above def charge(...))"
        )
    if not callable(obj):
        raise TypeError(f"{decorator} needs a callable, got {obj!r}")


def hide_parameters(wrapper: Any, func: Callable[..., Any], names: Iterable[str]) -> None:
    """Make ``wrapper`` show ``func``'s signature and annotations without ``names``.

    The signature is set on the wrapper even when nothing is hidden: frameworks that read a
    tool's signature on every call (LangChain does) would otherwise unwrap ``__wrapped__``
    chains each time."""
    hidden = set(names)
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to hide
        return
    if hidden.isdisjoint(signature.parameters):
        wrapper.__signature__ = signature
        return
    wrapper.__signature__ = signature.replace(
        parameters=[p for p in signature.parameters.values() if p.name not in hidden]
    )
    annotations = getattr(func, "__annotations__", None)
    if isinstance(annotations, dict):
        wrapper.__annotations__ = {k: v for k, v in annotations.items() if k not in hidden}


def bound_self(names: Iterable[str]) -> str | None:
    """The name of a method's ``self``/``cls`` among a signature's parameter names (left out
    of keys: the instance is not an argument), or None."""
    first = next(iter(names), None)
    return first if first in ("self", "cls") else None


def make_keyer(
    fn: Callable[..., Any], prefix: str, head: bytes, raw_limit: int, hidden: tuple[str, ...] = ()
) -> CallKeyer | None:
    """A native binder for plain signatures; None where *args/**kwargs need inspect."""
    params = list(inspect.signature(fn).parameters.values())
    skip = 0 if bound_self(p.name for p in params) is None else 1
    params = params[skip:]
    kinds = {p.kind for p in params}
    if kinds & {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}:
        return None
    positional = sum(
        p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        for p in params
    )
    if any(p.kind is inspect.Parameter.POSITIONAL_ONLY for p in params):
        return None  # keywords must not reach positional-only names: inspect decides
    return CallKeyer(
        head,
        [p.name for p in params],
        [p.default for p in params],
        positional,
        skip,
        prefix=prefix,
        raw_limit=raw_limit,
        hidden=list(hidden),
        empty=inspect.Parameter.empty,
    )
