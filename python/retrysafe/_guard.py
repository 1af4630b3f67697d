"""LoopGuard: stop a model that calls tools over and over before it burns the budget."""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from ._exceptions import StoreError, ToolLoopError
from ._native import fingerprint
from ._retry import _is_async, _name_of
from ._session import current_session
from .stores import Store, resolve_store

__all__ = ["LoopGuard", "LoopStop", "current_guard"]

logger = logging.getLogger("retrysafe")


@dataclass(frozen=True)
class LoopStop:
    """What a guarded tool returns instead of running when ``mode="message"``: a result the
    agent hands back to the model, which reads ``llm_hint`` and changes course."""

    tool: str
    reason: str
    llm_hint: str

    def __str__(self) -> str:
        return self.llm_hint

    def to_dict(self) -> dict[str, str]:
        """A JSON-ready tool result: ``{"error": "tool_loop", "tool", "reason", "message"}``."""
        return {
            "error": "tool_loop",
            "tool": self.tool,
            "reason": self.reason,
            "message": self.llm_hint,
        }


_CURRENT: ContextVar[LoopGuard | None] = ContextVar("retrysafe_guard", default=None)


def current_guard() -> LoopGuard | None:
    """The guard bound by the innermost ``with guard:``, or None."""
    return _CURRENT.get()


class LoopGuard:
    """Per-session call budgets, checked before a tool runs.

    - ``max_calls``: tool calls per session in all; ``max_calls_per_tool``: per tool;
    - ``max_identical``: calls of one tool with the same arguments (same fingerprint);
    - ``window_seconds``: count within fixed windows of this length instead of the session's
      whole life (``ttl_seconds``, after which idle counters vanish);
    - ``mode``: ``"raise"`` (:class:`ToolLoopError`) or ``"message"`` (the tool is not called;
      a :class:`LoopStop` carrying the hint is returned instead).

    Counters live in the store (``MemoryStore`` by default; Redis for a swarm, so every
    process of a session shares one budget). If the store fails, ``on_store_error`` decides:
    ``"local"`` (default) counts in this process until it recovers, so the limits still hold
    per process; ``"open"`` lets calls through uncounted; ``"closed"`` stops them (reason
    ``"store_unavailable"``). The outage and the recovery are logged once each. The session is the current ``session(...)``,
    else ``"default"``.

    Use it as a decorator (``@guard``) or bind it for a block (``with guard:``) so that
    ``@tool`` functions check it.
    """

    def __init__(
        self,
        max_calls: int | None = 50,
        max_calls_per_tool: int | None = None,
        max_identical: int | None = 3,
        *,
        window_seconds: float | None = None,
        mode: Literal["raise", "message"] = "raise",
        store: Any = None,
        ttl_seconds: float = 86400,
        namespace: str = "guard",
        on_store_error: Literal["local", "open", "closed"] = "local",
    ) -> None:
        for name, value in (
            ("max_calls", max_calls),
            ("max_calls_per_tool", max_calls_per_tool),
            ("max_identical", max_identical),
        ):
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ValueError(f"LoopGuard: {name} must be an int >= 1 or None, got {value!r}")
        if mode not in ("raise", "message"):
            raise ValueError(f"LoopGuard: mode must be 'raise' or 'message', got {mode!r}")
        if on_store_error not in ("local", "open", "closed"):
            raise ValueError(
                "LoopGuard: on_store_error must be 'local', 'open' or 'closed', "
                f"got {on_store_error!r}"
            )
        if window_seconds is not None and not (
            isinstance(window_seconds, (int, float)) and window_seconds > 0
        ):
            raise ValueError(
                f"LoopGuard: window_seconds must be positive or None, got {window_seconds!r}"
            )
        self.max_calls = max_calls
        self.max_calls_per_tool = max_calls_per_tool
        self.max_identical = max_identical
        self.window_seconds = window_seconds
        self.mode = mode
        self.store: Store = resolve_store(store)
        self.ttl_seconds = ttl_seconds
        self.namespace = namespace
        self.on_store_error = on_store_error
        self._fallback: Store | None = None
        self._outage = False
        self._tokens: list[Token[LoopGuard | None]] = []

    def __repr__(self) -> str:
        return (
            f"LoopGuard(max_calls={self.max_calls}, max_calls_per_tool={self.max_calls_per_tool}, "
            f"max_identical={self.max_identical}, mode={self.mode!r})"
        )

    # --- counting ---------------------------------------------------------------------------

    def _keys(self, tool: str, digest: str, session_id: str | None) -> tuple[list[str], float]:
        sess = session_id or (s.scope if (s := current_session()) is not None else "default")
        base = f"{self.namespace}:{sess}"
        ttl = self.ttl_seconds
        if self.window_seconds is not None:
            base += f":w{int(time.time() // self.window_seconds)}"
            ttl = self.window_seconds
        return [f"{base}:all", f"{base}:tool:{tool}", f"{base}:same:{tool}:{digest}"], ttl

    def _verdict(self, tool: str, counts: list[float]) -> LoopStop | None:
        total, per_tool, identical = (int(c) for c in counts)
        if self.max_identical is not None and identical > self.max_identical:
            return LoopStop(
                tool,
                "identical",
                f"You already called {tool} with these exact arguments {identical - 1} times in "
                "this session. Do not call it again with the same arguments; use the earlier "
                "result or change the arguments.",
            )
        if self.max_calls_per_tool is not None and per_tool > self.max_calls_per_tool:
            return LoopStop(
                tool,
                "per_tool",
                f"{tool} has been called {per_tool - 1} times in this session, its limit. "
                "Stop calling it and answer with what you have.",
            )
        if self.max_calls is not None and total > self.max_calls:
            return LoopStop(
                tool,
                "total",
                f"This session has used its {self.max_calls} tool calls. Stop calling tools and "
                "answer with what you have.",
            )
        return None

    def _act(self, stop: LoopStop | None) -> LoopStop | None:
        if stop is not None and self.mode == "raise":
            raise ToolLoopError(
                f"loop guard: {stop.reason} limit reached for {stop.tool}",
                tool=stop.tool,
                llm_hint=stop.llm_hint,
            )
        return stop

    def check(
        self, tool: str, args: Any = None, *, session_id: str | None = None
    ) -> LoopStop | None:
        """Count a call of ``tool`` with ``args``; raise or return a :class:`LoopStop` when a
        limit is passed, else None. If the store fails, ``on_store_error`` decides (see
        the class), logged once per outage."""
        keys, ttl = self._keys(tool, fingerprint(args), session_id)
        try:
            counts = [self.store.incr(k, 1, ttl) for k in keys]
        except StoreError as exc:
            return self._store_failed(exc, tool, keys, ttl)
        self._recovered()
        return self._act(self._verdict(tool, counts))

    async def acheck(
        self, tool: str, args: Any = None, *, session_id: str | None = None
    ) -> LoopStop | None:
        """``check`` for async code."""
        keys, ttl = self._keys(tool, fingerprint(args), session_id)
        try:
            counts = [await self.store.aincr(k, 1, ttl) for k in keys]
        except StoreError as exc:
            return self._store_failed(exc, tool, keys, ttl)
        self._recovered()
        return self._act(self._verdict(tool, counts))

    def _store_failed(
        self, exc: StoreError, tool: str, keys: list[str], ttl: float
    ) -> LoopStop | None:
        """The ``on_store_error`` policy, logged once per outage: ``"local"`` counts in this
        process meanwhile (the limits still hold per process), ``"open"`` lets calls through
        uncounted, ``"closed"`` stops them."""
        if not self._outage:
            self._outage = True
            logger.warning(
                "retrysafe: loop guard store failed (%s); on_store_error=%r until it recovers",
                exc,
                self.on_store_error,
                extra={"retrysafe_policy": self.on_store_error},
            )
        if self.on_store_error == "open":
            return None
        if self.on_store_error == "closed":
            return self._act(
                LoopStop(
                    tool,
                    "store_unavailable",
                    "The tool-call budget cannot be checked right now, so the call was not "
                    "made. Try again later or answer with what you have.",
                )
            )
        if self._fallback is None:
            from .stores import MemoryStore

            self._fallback = MemoryStore()
        counts = [self._fallback.incr(k, 1, ttl) for k in keys]
        return self._act(self._verdict(tool, counts))

    def _recovered(self) -> None:
        if self._outage:
            self._outage = False
            logger.warning("retrysafe: loop guard store recovered")

    # --- forms ------------------------------------------------------------------------------

    def __enter__(self) -> LoopGuard:
        self._tokens.append(_CURRENT.set(self))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _CURRENT.reset(self._tokens.pop())

    async def __aenter__(self) -> LoopGuard:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: Callable[..., Any]) -> Any:
        """Guard a tool: every call is counted (by its bound arguments) before it runs."""
        tool = _name_of(fn)
        signature = inspect.signature(fn)

        def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            first = next(iter(signature.parameters), None)
            if first in ("self", "cls"):
                values.pop(first, None)
            return values

        if _is_async(fn):

            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                stop = await self.acheck(tool, arguments(args, kwargs))
                if stop is not None:
                    return stop
                return await fn(*args, **kwargs)

            wrapper: Any = functools.wraps(fn)(async_wrapper)
        else:

            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                stop = self.check(tool, arguments(args, kwargs))
                if stop is not None:
                    return stop
                return fn(*args, **kwargs)

            wrapper = functools.wraps(fn)(sync_wrapper)
        wrapper.guard = self
        return wrapper
