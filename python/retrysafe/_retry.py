"""Async-first retry: backoff with jitter, server hints, deadlines, budgets; never swallows
a cancellation.

Only ``Exception`` is ever caught. Cancellation (asyncio's ``CancelledError``, trio's
``Cancelled``), ``KeyboardInterrupt``, ``SystemExit`` and ``GeneratorExit`` are
``BaseException`` and pass through at once, under plain asyncio too, where cancellation is
delivered once and a library that catches it loses it for good.

The decorated function is specialised when it is wrapped: with no deadline, timeout or
budget, a call that succeeds pays one ``try`` and one context-variable read.
"""

from __future__ import annotations

import functools
import inspect
import math
import random as _random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union, overload

import anyio

from . import _telemetry
from ._callables import check_decoratable
from ._classify import failure_label, is_transient, server_hint
from ._effects import get_effect
from ._exceptions import RetryExhausted, RetryRefusedError, StoreError
from ._identity import escape, is_async, name_of
from ._log import WARNING, logger
from .stores._base import rebuild

if TYPE_CHECKING:
    from typing_extensions import ParamSpec, Self

    P = ParamSpec("P")

__all__ = [
    "Attempt",
    "RetryBudget",
    "RetryConfig",
    "RetryEvent",
    "RetryStats",
    "collect_retry_stats",
    "on_result",
    "retry",
    "retrying",
    "with_retry",
]

T = TypeVar("T")


_JITTERS = {
    True: "full",
    "full": "full",
    "equal": "equal",
    "decorrelated": "decorrelated",
    False: "none",
}


class on_result:
    """Marks a predicate on the *result*: ``retry_on=on_result(lambda r: r.status == 503)``.

    A result it accepts counts as a failed attempt; when attempts run out,
    :class:`RetryExhausted` carries it as ``last_result``.
    """

    __slots__ = ("predicate",)

    def __init__(self, predicate: Callable[[Any], bool]) -> None:
        if not callable(predicate):
            raise TypeError(f"on_result takes a predicate, got {predicate!r}")
        self.predicate = predicate

    def __repr__(self) -> str:
        return f"on_result({self.predicate!r})"


RetryOn = Union[
    type[Exception],
    tuple[type[Exception], ...],
    Callable[[Exception], bool],
    on_result,
    Sequence[Union[type[Exception], Callable[[Exception], bool], on_result]],
]


class RetryBudget:
    """A token bucket that keeps retries to a fraction of calls (the gRPC retry-throttling model).

    Tokens start at ``max_tokens``. A failed attempt takes one; a success gives back
    ``token_ratio``. Retries are allowed only while more than half the tokens remain, so in
    steady failure retries stop after ``max_tokens / 2`` failures, and they resume as
    successes refill the bucket (``token_ratio=0.1``: about one retry per ten successes).
    When the budget refuses, the call fails with its last error instead of retrying.

    Per process by default (thread-safe). With ``store=`` (a Store, a ``redis.Redis``, a
    URL...) every process naming the same ``name`` shares one bucket, so a swarm backs off
    together; an idle shared bucket resets after ``ttl_seconds``. If the store fails,
    ``on_store_error`` decides until it works again: ``"local"`` (default) uses this process's
    own bucket, ``"open"`` allows every retry, ``"closed"`` allows none. The outage and the
    recovery are logged once each.
    """

    def __init__(
        self,
        max_tokens: float = 100.0,
        token_ratio: float = 0.1,
        *,
        store: Any = None,
        name: str = "default",
        ttl_seconds: float = 600.0,
        on_store_error: Literal["local", "open", "closed"] = "local",
    ) -> None:
        #: What a pickled budget is rebuilt from (a shared one by its store's URL).
        self._built_from = {k: v for k, v in locals().items() if k != "self"}
        if on_store_error not in ("local", "open", "closed"):
            raise ValueError(
                f"on_store_error must be 'local', 'open' or 'closed', got {on_store_error!r}"
            )
        self.on_store_error = on_store_error
        if not (
            isinstance(max_tokens, (int, float)) and max_tokens > 0 and math.isfinite(max_tokens)
        ):
            raise ValueError(f"max_tokens must be a positive number, got {max_tokens!r}")
        if not (isinstance(token_ratio, (int, float)) and 0 < token_ratio <= max_tokens):
            raise ValueError(f"token_ratio must be in (0, max_tokens], got {token_ratio!r}")
        self.max_tokens = float(max_tokens)
        self.token_ratio = float(token_ratio)
        self._tokens = float(max_tokens)
        self._lock = threading.Lock()
        self.name = name
        self.ttl_seconds = ttl_seconds
        self._store: Any = None
        if store is not None:
            from .stores import resolve_store

            self._store = resolve_store(store)
        self._key = f"budget:{escape(name, 'a budget name')}"
        self._warned = False
        _telemetry.track_budget(self)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled, a budget is rebuilt from its settings: a shared one reads its bucket from
        its store; a process's own starts full in the process that loads it."""
        return (rebuild, (RetryBudget, (), self._built_from))

    @property
    def tokens(self) -> float:
        """Tokens left now (read from the store when shared)."""
        if self._store is not None:
            try:
                deficit = self._store.add_clamped(
                    self._key, 0.0, 0.0, self.max_tokens, self.ttl_seconds
                )
                return self.max_tokens - float(deficit)
            except StoreError as exc:
                self._store_failed(exc)
        return self._tokens

    def _local(self, delta: float) -> float:
        with self._lock:
            self._tokens = min(self.max_tokens, max(0.0, self._tokens + delta))
            return self._tokens

    def _store_failed(self, exc: StoreError) -> None:
        if not self._warned:  # once per outage
            self._warned = True
            logger.warning(
                "retrysafe: retry budget %r store failed (%s); on_store_error=%r until it recovers",
                self.name,
                exc,
                self.on_store_error,
            )

    def _store_worked(self, deficit: Any) -> float:
        if self._warned:
            self._warned = False
            logger.warning("retrysafe: retry budget %r store recovered", self.name)
        return self.max_tokens - float(deficit)

    def _shared(self, deficit_delta: float) -> float | None:
        try:
            deficit = self._store.add_clamped(
                self._key, deficit_delta, 0.0, self.max_tokens, self.ttl_seconds
            )
        except StoreError as exc:
            self._store_failed(exc)
            return None
        return self._store_worked(deficit)

    async def _ashared(self, deficit_delta: float) -> float | None:
        try:
            deficit = await self._store.aadd_clamped(
                self._key, deficit_delta, 0.0, self.max_tokens, self.ttl_seconds
            )
        except StoreError as exc:
            self._store_failed(exc)
            return None
        return self._store_worked(deficit)

    def _failure_while_down(self) -> bool:
        """Whether a retry is allowed after a failure the shared store could not count."""
        if self.on_store_error == "open":
            return True
        if self.on_store_error == "closed":
            return False
        return self._local(-1.0) > self.max_tokens / 2

    def record_success(self) -> None:
        """A call (or attempt) succeeded: refill by ``token_ratio``."""
        if self._store is None or self._shared(-self.token_ratio) is None:
            self._local(self.token_ratio)

    def record_failure(self) -> bool:
        """An attempt failed: take a token; return whether a retry is still allowed."""
        if self._store is None:
            return self._local(-1.0) > self.max_tokens / 2
        tokens = self._shared(1.0)
        if tokens is None:
            return self._failure_while_down()
        return tokens > self.max_tokens / 2

    async def arecord_success(self) -> None:
        """``record_success`` without blocking the event loop on a shared store."""
        if self._store is None:
            self._local(self.token_ratio)
        elif await self._ashared(-self.token_ratio) is None:
            self._local(self.token_ratio)

    async def arecord_failure(self) -> bool:
        """``record_failure`` without blocking the event loop on a shared store."""
        if self._store is None:
            return self._local(-1.0) > self.max_tokens / 2
        tokens = await self._ashared(1.0)
        if tokens is None:
            return self._failure_while_down()
        return tokens > self.max_tokens / 2

    def __repr__(self) -> str:
        where = f", store={self._store!r}" if self._store is not None else ""
        return f"RetryBudget(name={self.name!r}, max_tokens={self.max_tokens:g}, token_ratio={self.token_ratio:g}{where})"


def _check_number(
    name: str, value: object, *, minimum: float, allow_none: bool = False, strict: bool = False
) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value > minimum if strict else value >= minimum  # type: ignore[operator]
    if not ok:
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        none = " or None" if allow_none else ""
        raise ValueError(f"RetryConfig.{name} must be a finite number {bound}{none}, got {value!r}")


def _compile_retry_on(
    retry_on: Any,
) -> tuple[Callable[[Exception], bool], Callable[[Any], bool] | None]:
    """Split ``retry_on`` into an exception predicate and an optional result predicate."""
    if retry_on is None:
        return is_transient, None
    items = (
        list(retry_on)
        if isinstance(retry_on, (list, tuple)) and not _is_type_tuple(retry_on)
        else [retry_on]
    )
    types: list[type[Exception]] = []
    exc_preds: list[Callable[[Exception], bool]] = []
    result_preds: list[Callable[[Any], bool]] = []
    for item in items:
        if isinstance(item, on_result):
            result_preds.append(item.predicate)
        elif isinstance(item, tuple):
            for t in item:
                types.append(_exception_type(t))
        elif isinstance(item, type):
            types.append(_exception_type(item))
        elif callable(item):
            exc_preds.append(item)
        else:
            raise TypeError(
                f"RetryConfig.retry_on takes exception types, predicates or on_result(...), got {item!r}"
            )
    exc_pred: Callable[[Exception], bool]
    if not types and not exc_preds:
        exc_pred = is_transient  # only a result predicate: exceptions keep the default
    else:
        type_tuple = tuple(types)

        def exc_pred(exc: Exception) -> bool:
            return isinstance(exc, type_tuple) or any(p(exc) for p in exc_preds)

    result_pred: Callable[[Any], bool] | None = None
    if result_preds:

        def result_pred(value: Any) -> bool:
            return any(p(value) for p in result_preds)

    return exc_pred, result_pred


def _is_type_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(t, type) for t in value)


def _exception_type(t: Any) -> type[Exception]:
    if not (isinstance(t, type) and issubclass(t, BaseException)):
        raise TypeError(f"RetryConfig.retry_on: {t!r} is not an exception type")
    if not issubclass(t, Exception):
        raise ValueError(
            f"RetryConfig.retry_on: {t.__name__} is not an Exception subclass; cancellation, "
            "KeyboardInterrupt and SystemExit are never retried"
        )
    return t


@dataclass(frozen=True)
class RetryConfig:
    """How to retry: immutable, validated when built, shareable between functions.

    - ``max_attempts``: attempts in all, the first included.
    - ``base_delay``, ``multiplier``, ``max_delay``: the backoff ceiling
      ``min(max_delay, base_delay * multiplier ** (retry - 1))``, in seconds.
    - ``jitter``: ``True``/``"full"`` (uniform in [0, ceiling], the AWS default),
      ``"equal"``, ``"decorrelated"``, or ``False`` (the ceiling itself).
    - ``deadline``: seconds for the whole call; no sleep crosses it, and async attempts are
      cancelled at it. ``attempt_timeout``: seconds for each async attempt (a timed-out
      attempt is a transient failure).
    - ``retry_on``: exception types, a predicate on the exception, :class:`on_result`, or a
      list of them; default :func:`retrysafe.is_transient`.
    - ``respect_retry_after``: honour ``x-should-retry``, ``retry-after-ms`` and
      ``retry-after`` on the error; a hint above ``max_retry_after`` seconds gives up.
    - ``budget``: a :class:`RetryBudget` shared by the functions using this config.
    - ``on_retry``: called with a :class:`RetryEvent` before each wait (may be async).
    - ``random``: the random source for jitter, a callable returning floats in [0, 1).
    """

    max_attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: bool | Literal["full", "equal", "decorrelated"] = True
    deadline: float | None = None
    attempt_timeout: float | None = None
    retry_on: RetryOn | None = None
    respect_retry_after: bool = True
    max_retry_after: float = 60.0
    budget: RetryBudget | None = None
    on_retry: Callable[[RetryEvent], object] | None = field(default=None, compare=False)
    random: Callable[[], float] | None = field(default=None, compare=False, repr=False)

    _jitter_mode: str = field(init=False, repr=False, compare=False, default="full")
    _exc_pred: Callable[[Exception], bool] = field(
        init=False, repr=False, compare=False, default=is_transient
    )
    _result_pred: Callable[[Any], bool] | None = field(
        init=False, repr=False, compare=False, default=None
    )

    def __post_init__(self) -> None:
        if (
            not isinstance(self.max_attempts, int)
            or isinstance(self.max_attempts, bool)
            or self.max_attempts < 1
        ):
            raise ValueError(
                f"RetryConfig.max_attempts must be an int >= 1, got {self.max_attempts!r}"
            )
        _check_number("base_delay", self.base_delay, minimum=0)
        _check_number("max_delay", self.max_delay, minimum=0)
        _check_number("multiplier", self.multiplier, minimum=1)
        _check_number("deadline", self.deadline, minimum=0, allow_none=True, strict=True)
        _check_number(
            "attempt_timeout", self.attempt_timeout, minimum=0, allow_none=True, strict=True
        )
        _check_number("max_retry_after", self.max_retry_after, minimum=0)
        if self.max_delay < self.base_delay:
            raise ValueError(
                f"RetryConfig.max_delay ({self.max_delay!r}) must be >= base_delay ({self.base_delay!r})"
            )
        try:
            mode = _JITTERS[self.jitter]
        except (KeyError, TypeError):
            raise ValueError(
                f"RetryConfig.jitter must be True, False, 'full', 'equal' or 'decorrelated', got {self.jitter!r}"
            ) from None
        if self.budget is not None and not isinstance(self.budget, RetryBudget):
            raise TypeError(f"RetryConfig.budget must be a RetryBudget, got {self.budget!r}")
        for name in ("on_retry", "random"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"RetryConfig.{name} must be callable, got {value!r}")
        exc_pred, result_pred = _compile_retry_on(self.retry_on)
        object.__setattr__(self, "_jitter_mode", mode)
        object.__setattr__(self, "_exc_pred", exc_pred)
        object.__setattr__(self, "_result_pred", result_pred)

    def replace(self, **changes: Any) -> RetryConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def backoff(self, retry_number: int, previous: float | None = None) -> float:
        """The wait before retry ``retry_number`` (1 for the first retry), jitter applied."""
        if not isinstance(retry_number, int) or isinstance(retry_number, bool) or retry_number < 1:
            raise ValueError(f"backoff: retry_number counts retries from 1, got {retry_number!r}")
        rnd = self.random or _random.random
        try:
            ceiling = min(self.max_delay, self.base_delay * self.multiplier ** (retry_number - 1))
        except OverflowError:
            ceiling = self.max_delay
        mode = self._jitter_mode
        if mode == "full":
            return rnd() * ceiling
        if mode == "equal":
            return ceiling / 2 + rnd() * ceiling / 2
        if mode == "decorrelated":
            prev = self.base_delay if previous is None else previous
            high = max(self.base_delay, prev * 3)
            return min(self.max_delay, self.base_delay + rnd() * (high - self.base_delay))
        return ceiling


DEFAULT_CONFIG = RetryConfig()


@dataclass
class RetryStats:
    """What happened in one call: never shared between calls."""

    name: str
    attempts: int = 0
    waited: float = 0.0
    errors: list[BaseException] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def retries(self) -> int:
        """Attempts after the first."""
        return max(0, self.attempts - 1)


@dataclass(frozen=True)
class RetryEvent:
    """Handed to ``on_retry`` before each wait: which call, which attempt failed, how, the wait."""

    name: str
    attempt: int
    error: BaseException | None
    result: Any
    wait: float
    stats: RetryStats


_COLLECT: ContextVar[list[RetryStats] | None] = ContextVar("retrysafe_retry_stats", default=None)


class _Sink:
    """Where the wrappers read ``_COLLECT``: a class pickles by reference, a ContextVar not
    at all (a wrapper of a tool in ``__main__`` is pickled by value, with its globals)."""

    collect = _COLLECT


@contextmanager
def collect_retry_stats() -> Iterator[list[RetryStats]]:
    """Collect the :class:`RetryStats` of every retried call made in this context.

    Context-local (per task and thread): concurrent calls elsewhere never appear here.

    >>> with collect_retry_stats() as stats:
    ...     fetch()
    >>> stats[0].attempts
    1
    """
    stats: list[RetryStats] = []
    token = _COLLECT.set(stats)
    try:
        yield stats
    finally:
        _COLLECT.reset(token)


class _Testing:
    __slots__ = ("active", "attempts")

    def __init__(self) -> None:
        self.active = False
        self.attempts: int | None = None


TESTING = _Testing()


class _AttemptTimeout(TimeoutError):
    """An attempt ran past ``attempt_timeout`` (a transient failure)."""


class _Run:
    """The state of one call across its attempts; decides after each failure."""

    __slots__ = ("config", "deadline_at", "fn", "max_attempts", "name", "previous_wait", "stats")

    def __init__(self, config: RetryConfig, name: str, fn: Any = None) -> None:
        self.config = config
        self.name = name
        self.fn = fn
        self.stats = RetryStats(name)
        self.deadline_at = None if config.deadline is None else self.stats.started + config.deadline
        cap = TESTING.attempts if TESTING.active else None
        self.max_attempts = config.max_attempts if cap is None else min(cap, config.max_attempts)
        self.previous_wait: float | None = None

    def attempt_timeout(self) -> float | None:
        timeout = self.config.attempt_timeout
        if self.deadline_at is not None:
            left = self.deadline_at - time.monotonic()
            timeout = left if timeout is None else min(timeout, left)
        return timeout

    def succeeded(self) -> None:
        """Record a success (the caller has told the budget)."""
        sink = _COLLECT.get()
        if sink is not None:
            sink.append(self.stats)

    def exhausted(
        self, why: str, error: BaseException | None, result: Any = None
    ) -> RetryExhausted:
        sink = _COLLECT.get()
        if sink is not None:
            sink.append(self.stats)
        attempts = self.stats.attempts
        err = RetryExhausted(
            f"{self.name}: {why} after {attempts} attempt{'s' if attempts != 1 else ''}"
            + (f"; last error: {failure_label(error)}" if error is not None else ""),
            last_error=error,
            attempts=attempts,
        )
        err.__cause__ = error  # raised from the last error
        err.last_result = result  # type: ignore[attr-defined]
        err.stats = self.stats  # type: ignore[attr-defined]
        return err

    def after_failure(
        self, error: Exception | None, result: Any = None, budget_ok: bool = True
    ) -> tuple[float, RetryEvent]:
        """The wait before the next attempt, or raise: ``error`` unchanged when it is not
        retryable (or the budget or a server hint says stop), RetryExhausted when attempts or
        the deadline run out."""
        config = self.config
        stats = self.stats
        if error is not None:
            stats.errors.append(error)
        hint = server_hint(error) if error is not None and config.respect_retry_after else None
        if error is not None:
            if hint is not None and hint.should_retry is False:
                self._give_up(error, "the server said x-should-retry: false")
            forced = hint is not None and hint.should_retry is True
            if not (forced or isinstance(error, _AttemptTimeout) or config._exc_pred(error)):
                self._give_up(error, None)
        now = time.monotonic()
        if self.deadline_at is not None and now >= self.deadline_at:
            raise self.exhausted(f"deadline of {config.deadline:g}s passed", error, result)
        if stats.attempts >= self.max_attempts:
            raise self.exhausted("gave up", error, result)
        if not budget_ok:
            if error is not None:
                self._give_up(error, "the retry budget is empty")
            raise self.exhausted("the retry budget is empty", None, result)
        if hint is not None and hint.delay is not None:
            if hint.delay > config.max_retry_after:
                if error is not None:
                    self._give_up(
                        error, f"the server asked to wait {hint.delay:g}s (over max_retry_after)"
                    )
                raise self.exhausted("the server asked to wait too long", None, result)
            wait = hint.delay
        else:
            wait = config.backoff(stats.attempts, self.previous_wait)
        if self.deadline_at is not None and now + wait >= self.deadline_at:
            raise self.exhausted(
                f"the next wait ({wait:.2f}s) would cross the deadline", error, result
            )
        self.previous_wait = wait
        if TESTING.active:
            wait = 0.0
        event = RetryEvent(self.name, stats.attempts, error, result, wait, stats)
        if logger.isEnabledFor(WARNING):
            what = failure_label(error)
            logger.warning(
                "retrysafe: %s attempt %d of %d failed (%s); retrying in %.2fs",
                self.name,
                stats.attempts,
                self.max_attempts,
                what,
                wait,
                extra={
                    "retrysafe_tool": self.name,
                    "retrysafe_decision": "retry",
                    "retrysafe_attempt": stats.attempts,
                    "retrysafe_wait_s": wait,
                    "retrysafe_reason": "retry_after"
                    if hint is not None and hint.delay is not None
                    else "backoff",
                    "retrysafe_error": type(error).__name__ if error is not None else None,
                },
            )
        stats.waited += wait
        _telemetry.count(self.name, "retries")
        _telemetry.note_retry(
            stats.attempts, wait, "retry_after" if hint is not None and hint.delay is not None
            else "backoff", self.name,
        )  # fmt: skip
        if self.fn is not None and self.name not in _UNTAGGED_NOTED:
            _note_untagged(self.fn, self.name)
        return wait, event

    def _give_up(self, error: Exception, why: str | None) -> None:
        sink = _COLLECT.get()
        if sink is not None:
            sink.append(self.stats)
        if why is not None and logger.isEnabledFor(WARNING):
            logger.warning(
                "retrysafe: %s not retried: %s (%s)",
                self.name,
                why,
                failure_label(error),
                extra={
                    "retrysafe_tool": self.name,
                    "retrysafe_decision": "give_up",
                    "retrysafe_reason": why,
                    "retrysafe_error": type(error).__name__,
                },
            )
        raise error


#: Functions whose first retry logged that they are untagged.
_UNTAGGED_NOTED: set[str] = set()


def _note_untagged(fn: Any, name: str) -> None:
    """Log once per function that an untagged function is being retried: DESIGN treats it
    as DESTRUCTIVE wherever a policy is chosen; the explicit wrap is obeyed."""
    _UNTAGGED_NOTED.add(name)
    if get_effect(fn) is None:
        logger.warning(
            "retrysafe: %s is untagged and retried because with_retry was asked to; if it has "
            "a side effect a retry may repeat it. Tag it (@effect(Effect.READ) or "
            "Effect.IDEMPOTENT) to say it is safe, or @tool.write(remote_idempotent=True).",
            name,
            extra={"retrysafe_tool": name, "retrysafe_effect": None},
        )


def _failed(run: _Run, error: Exception | None, result: Any = None) -> tuple[float, RetryEvent]:
    budget = run.config.budget
    return run.after_failure(error, result, budget.record_failure() if budget is not None else True)


async def _afailed(
    run: _Run, error: Exception | None, result: Any = None
) -> tuple[float, RetryEvent]:
    budget = run.config.budget
    ok = await budget.arecord_failure() if budget is not None else True
    return run.after_failure(error, result, ok)


def _succeeded(run: _Run) -> None:
    if run.config.budget is not None:
        run.config.budget.record_success()
    run.succeeded()


async def _asucceeded(run: _Run) -> None:
    if run.config.budget is not None:
        await run.config.budget.arecord_success()
    run.succeeded()


def _call_hook(config: RetryConfig, event: RetryEvent) -> object:
    hook = config.on_retry
    return None if hook is None else hook(event)


async def _run_async(
    fn: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    config: RetryConfig,
    name: str,
    first_error: Exception | None,
) -> T:
    run = _Run(config, name, fn)
    result_pred = config._result_pred
    if first_error is not None:
        run.stats.attempts = 1
        wait, event = await _afailed(run, first_error)
        await _pause_async(config, event, wait)
    while True:
        run.stats.attempts += 1
        timeout = run.attempt_timeout()
        try:
            if timeout is None:
                result = await fn(*args, **kwargs)
            else:
                with anyio.move_on_after(max(timeout, 0.0)) as scope:
                    result = await fn(*args, **kwargs)
                if scope.cancelled_caught:
                    raise _AttemptTimeout(
                        f"{name}: attempt {run.stats.attempts} timed out after {timeout:.3g}s"
                    )
        except Exception as error:
            wait, event = await _afailed(run, error)
        else:
            if result_pred is None or not result_pred(result):
                await _asucceeded(run)
                return result
            wait, event = await _afailed(run, None, result)
        await _pause_async(config, event, wait)


async def _pause_async(config: RetryConfig, event: RetryEvent, wait: float) -> None:
    outcome = _call_hook(config, event)
    if inspect.isawaitable(outcome):
        await outcome
    await anyio.sleep(wait)


def _run_sync(
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    config: RetryConfig,
    name: str,
    first_error: Exception | None,
) -> T:
    run = _Run(config, name, fn)
    result_pred = config._result_pred
    if first_error is not None:
        run.stats.attempts = 1
        wait, event = _failed(run, first_error)
        _call_hook(config, event)
        time.sleep(wait)
    while True:
        run.stats.attempts += 1
        try:
            result = fn(*args, **kwargs)
        except Exception as error:
            wait, event = _failed(run, error)
        else:
            if result_pred is None or not result_pred(result):
                _succeeded(run)
                return result
            wait, event = _failed(run, None, result)
        _call_hook(config, event)
        time.sleep(wait)


def _check_refused(fn: Any, remote_idempotent: bool) -> None:
    kind = get_effect(fn)
    if kind is not None and kind.repeats_side_effect and not remote_idempotent:
        name = name_of(fn)
        raise RetryRefusedError(
            f"{name} is tagged {kind.value}: retrying it could repeat its side effect. Pass "
            "remote_idempotent=True only if the remote deduplicates by an idempotency key that "
            "every attempt sends (see IdempKey and @idempotent); otherwise do not retry it.",
            tool=name,
        )


@overload
def with_retry(
    fn: Callable[P, Coroutine[Any, Any, T]],
    *,
    config: RetryConfig | None = None,
    remote_idempotent: bool = False,
) -> Callable[P, Coroutine[Any, Any, T]]: ...


@overload
def with_retry(
    fn: Callable[P, T], *, config: RetryConfig | None = None, remote_idempotent: bool = False
) -> Callable[P, T]: ...


def with_retry(
    fn: Any, *, config: RetryConfig | None = None, remote_idempotent: bool = False
) -> Any:
    """Wrap ``fn`` (sync or async) so that transient failures are retried per ``config``.

    The result is of the same kind as ``fn`` (a coroutine function stays one) with the same
    signature for type checkers. A function tagged WRITE or DESTRUCTIVE is refused here with
    :class:`RetryRefusedError` unless ``remote_idempotent=True``.

    >>> safe_refund = with_retry(refund_order, config=RetryConfig(max_attempts=3, base_delay=1.0))
    """
    check_decoratable(fn, "with_retry")
    if config is None:
        config = DEFAULT_CONFIG
    elif not isinstance(config, RetryConfig):
        raise TypeError(f"config must be a RetryConfig, got {config!r}")
    _check_refused(fn, remote_idempotent)
    name = name_of(fn)
    simple = config.deadline is None and config.attempt_timeout is None and config.budget is None
    simple = simple and config._result_pred is None
    if is_async(fn):
        if simple:

            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    result = await fn(*args, **kwargs)
                except Exception as error:
                    return await _run_async(fn, args, kwargs, config, name, error)
                if _Sink.collect.get() is not None:
                    _record_single(name)
                return result

        else:

            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await _run_async(fn, args, kwargs, config, name, None)

        wrapper: Any = functools.wraps(fn)(async_wrapper)
    else:
        if config.attempt_timeout is not None:
            raise ValueError(
                f"attempt_timeout needs an async function: a running sync call ({name}) cannot be "
                "interrupted. Use deadline (checked between attempts) or a timeout inside the call."
            )
        if simple:

            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    result = fn(*args, **kwargs)
                except Exception as error:
                    return _run_sync(fn, args, kwargs, config, name, error)
                if _Sink.collect.get() is not None:
                    _record_single(name)
                return result

        else:

            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                return _run_sync(fn, args, kwargs, config, name, None)

        wrapper = functools.wraps(fn)(sync_wrapper)
    wrapper.retry_config = config
    return wrapper


def _record_single(name: str) -> None:
    sink = _COLLECT.get()
    if sink is not None:
        sink.append(RetryStats(name, attempts=1))


class _RetryDecorator:
    """What ``retry(...)`` returns when given options: a decorator for sync or async functions."""

    __slots__ = ("config", "remote_idempotent")

    def __init__(self, config: RetryConfig, remote_idempotent: bool) -> None:
        self.config = config
        self.remote_idempotent = remote_idempotent

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...

    def __call__(self, fn: Any) -> Any:
        return with_retry(fn, config=self.config, remote_idempotent=self.remote_idempotent)


@overload
def retry(fn: Callable[P, Coroutine[Any, Any, T]], /) -> Callable[P, Coroutine[Any, Any, T]]: ...


@overload
def retry(fn: Callable[P, T], /) -> Callable[P, T]: ...


@overload
def retry(
    config: RetryConfig | None = None, /, *, remote_idempotent: bool = False, **overrides: Any
) -> _RetryDecorator: ...


def retry(fn_or_config: Any = None, /, *, remote_idempotent: bool = False, **overrides: Any) -> Any:
    """Decorator form of :func:`with_retry`: ``@retry``, ``@retry()``, ``@retry(config)``,
    ``@retry(max_attempts=5, jitter="decorrelated")`` (overrides applied to ``config`` or the
    defaults).
    """
    if fn_or_config is None or isinstance(fn_or_config, RetryConfig):
        config = fn_or_config or DEFAULT_CONFIG
        if overrides:
            config = config.replace(**overrides)
        return _RetryDecorator(config, remote_idempotent)
    if overrides or remote_idempotent:
        raise TypeError(
            "retry(fn, ...) takes no options; use @retry(...) or with_retry(fn, config=...)"
        )
    return with_retry(fn_or_config)


class Attempt:
    """One attempt of :func:`retrying`; use it as ``with attempt:`` around the work."""

    __slots__ = ("_run", "_scope", "_timeout", "error", "failed", "number")

    def __init__(self, run: _Run, number: int, timeout: float | None) -> None:
        self._run = run
        self.number = number
        self._timeout = timeout
        self._scope: Any = None
        self.error: Exception | None = None
        self.failed: bool | None = None

    def __enter__(self) -> Self:
        if self._timeout is not None:
            self._scope = anyio.move_on_after(max(self._timeout, 0.0))
            self._scope.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._scope is not None:
            # The scope swallows only its own timeout; outer cancellation goes on.
            self._scope.__exit__(exc_type, exc, tb)
            if self._scope.cancelled_caught:
                self.error = _AttemptTimeout(
                    f"{self._run.name}: attempt {self.number} timed out after {self._timeout:.3g}s"
                )
                self.failed = True
                return True
        if exc is None:
            self.failed = False
            return False
        if isinstance(exc, Exception):
            self.error = exc
            self.failed = True
            return True
        return False  # cancellation, KeyboardInterrupt, SystemExit: never retried


class retrying:
    """Retry a block of code that is not one function.

    >>> for attempt in retrying(RetryConfig(max_attempts=5)):
    ...     with attempt:
    ...         response = client.get(url)
    >>> async for attempt in retrying(config):
    ...     with attempt:
    ...         response = await client.get(url)

    The loop ends after the first attempt whose block raised nothing; a non-retryable error
    propagates unchanged; running out raises :class:`RetryExhausted`. ``attempt_timeout`` is
    enforced in the ``async for`` form.
    """

    def __init__(
        self, config: RetryConfig | None = None, /, *, name: str = "retrying", **overrides: Any
    ) -> None:
        config = config or DEFAULT_CONFIG
        self.config = config.replace(**overrides) if overrides else config
        self.name = name

    def __iter__(self) -> Iterator[Attempt]:
        run = _Run(self.config, self.name)
        while True:
            run.stats.attempts += 1
            attempt = Attempt(run, run.stats.attempts, None)
            yield attempt
            if attempt.failed is None:
                raise RuntimeError(
                    "retrying(): use `with attempt:` around the work in the loop body"
                )
            if not attempt.failed:
                _succeeded(run)
                return
            wait, event = _failed(run, attempt.error)
            _call_hook(self.config, event)
            time.sleep(wait)

    def __aiter__(self) -> _AsyncAttempts:
        return _AsyncAttempts(self.config, self.name)


class _AsyncAttempts:
    """The ``async for`` iterator of :class:`retrying` (a class, not an async generator, so
    that nothing is left for the event loop to finalise when the loop is left early)."""

    def __init__(self, config: RetryConfig, name: str) -> None:
        self._config = config
        self._run = _Run(config, name)
        self._last: Attempt | None = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Attempt:
        run = self._run
        last = self._last
        if last is not None:
            if last.failed is None:
                raise RuntimeError(
                    "retrying(): use `with attempt:` around the work in the loop body"
                )
            if not last.failed:
                await _asucceeded(run)
                raise StopAsyncIteration
            wait, event = await _afailed(run, last.error)
            await _pause_async(self._config, event, wait)
        run.stats.attempts += 1
        self._last = Attempt(run, run.stats.attempts, run.attempt_timeout())
        return self._last
