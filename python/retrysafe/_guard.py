"""LoopGuard: stop a model that calls tools over and over before it burns the budget."""

from __future__ import annotations

import functools
import inspect
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from ._exceptions import StoreError, ToolLoopError
from ._identity import _CURRENT as _CURRENT_SESSION
from ._identity import ANONYMOUS, Session, escape, is_async, name_of
from ._log import logger
from ._native import canonical_json, fingerprint
from .stores import Store, resolve_store
from .stores._base import rebuild

__all__ = ["LoopGuard", "LoopStop", "current_guard"]

#: The separator of a tool's name and its call's identity in a shared window's items.
_SEP = "\x1f"


@dataclass(frozen=True)
class LoopStop:
    """What a guarded tool returns instead of running when ``mode="message"``: a result the
    agent hands back to the model, which reads ``llm_hint`` and changes course.

    ``reason`` is the limit passed: ``"identical"``, ``"per_tool"``, ``"total"`` or
    ``"store_unavailable"``; ``count`` the calls it counted (this one included), ``limit``
    the limit, ``window`` what was counted over (``"session"``, ``"last 10 calls"``,
    ``"60s"``)."""

    tool: str
    reason: str
    llm_hint: str
    count: int = 0
    limit: int = 0
    window: str = "session"

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


class _Tally:
    """One session's counts in this process: the whole session's (or the time window's)
    total, per tool and per identity, and its last calls."""

    __slots__ = ("per_tool", "recent", "same", "started", "total", "touched")

    def __init__(self, now: float, started: float, keep: int) -> None:
        self.total = 0
        self.per_tool: dict[str, int] = {}
        self.same: dict[tuple[str, bytes], int] = {}
        self.recent: deque[tuple[str, bytes]] = deque(maxlen=keep)
        self.touched = now
        self.started = started


class _Local:
    """The tallies of one namespace of an in-process store, by session (two guards on one
    MemoryStore share a budget, as they would on Redis)."""

    __slots__ = ("lock", "sessions")

    #: Sessions kept; past it, the tenth idle longest is dropped.
    MAX_SESSIONS = 10_000

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sessions: dict[str, _Tally] = {}

    def trim(self) -> None:
        """Drop the tenth of the sessions idle longest (under the lock; amortised over the
        thousand sessions that may be added before the next trim)."""
        by_age = sorted(self.sessions.items(), key=lambda item: item[1].touched)
        for sess, _ in by_age[: max(1, len(by_age) // 10)]:
            del self.sessions[sess]


_LOCAL: weakref.WeakKeyDictionary[Any, dict[str, _Local]] = weakref.WeakKeyDictionary()
_LOCAL_LOCK = threading.Lock()


def _local_for(store: Any, namespace: str) -> _Local:
    with _LOCAL_LOCK:
        spaces = _LOCAL.setdefault(store, {})
        local = spaces.get(namespace)
        if local is None:
            local = spaces[namespace] = _Local()
        return local


#: How many stops a guard's log keeps, and for how long (seconds).
STOPS_KEPT = 200
STOPS_TTL = 7 * 86400.0


def stops_key(namespace: str) -> str:
    """The store key of a guard namespace's log of stops (beside, never inside, the
    ``guard/<namespace>:`` space that sessions' counts live in)."""
    return f"guard-stops/{escape(namespace, 'a guard namespace')}"


def recent_stops(store: Any, namespace: str = "guard", limit: int = 50) -> list[dict[str, Any]]:
    """The recent stops of the guards of ``namespace`` on ``store``, newest first: each a
    dict of ``at`` (epoch seconds), ``tool``, ``reason``, ``count``, ``limit``, ``window``
    and ``session`` (the session's identity, encoded)."""
    import json

    found = []
    items = store.recent(stops_key(namespace), None, STOPS_KEPT, None)  # oldest first
    for item in reversed(items[-limit:] if limit > 0 else []):
        try:
            made = json.loads(item)
        except ValueError:
            continue
        if isinstance(made, dict):
            found.append(made)
    return found


@functools.lru_cache(maxsize=4096)
def _explicit_scope(session_id: str) -> str:
    """The scope of a conversation named by ``session_id=``: that of ``session(session_id)``
    (remembered: a guard given ``session_id=`` looks it up on every call)."""
    return Session(session_id).scope


class LoopGuard:
    """Per-session call budgets, checked before a tool runs.

    - ``max_calls``: tool calls per session in all; ``max_calls_per_tool``: per tool;
      ``max_identical``: calls of one tool with the same arguments. A call past a limit is
      stopped (the 4th identical call with ``max_identical=3``).
    - ``window_calls``: count ``max_calls_per_tool`` and ``max_identical`` over the
      session's last N calls (this one included) instead of its whole life, as
      tool-loop-guard does: with ``window_calls=3, max_calls_per_tool=1``,
      ``search, fetch, list, search`` passes and ``search, fetch, search`` does not. Each
      limit must be below the window (a window of N holds at most N calls).
    - ``window_seconds``: count every limit within fixed windows of this length instead.
    - ``key``: what makes two calls identical, ``key(tool, arguments) -> value`` (arguments
      as a dict of the bound call): drop a fresh ``request_id`` so that it cannot defeat
      ``max_identical``. Default: all the arguments.
    - ``mode``: ``"raise"`` (:class:`ToolLoopError`) or ``"message"`` (the tool is not called;
      a :class:`LoopStop` carrying the hint is returned instead).
    - ``ttl_seconds``: a session idle this long starts over.

    Counters live in the store: in this process for ``MemoryStore`` (the default; guards on
    one store share them), in Redis for a swarm, so every process of a session shares one
    budget and one window. If a shared store fails, ``on_store_error`` decides: ``"local"``
    (default) counts in this process until it recovers, so the limits still hold per
    process; ``"open"`` lets calls through uncounted; ``"closed"`` stops them (reason
    ``"store_unavailable"``). The outage and the recovery are logged once each.

    The session is ``session_id=`` (a conversation id), else the current ``session(...)``
    (its principal, tenant and conversation), else one budget for calls outside any session.
    Use it as a decorator (``@guard``) or bind it for a block (``with guard:``) so that
    ``@tool`` functions count against it. :meth:`record` counts a call by hand,
    :meth:`check` previews one without counting, :meth:`reset` and :meth:`history` act on a
    session.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled with a tool (to a Ray worker, a process pool), a guard is rebuilt from its
        settings: its counts stay in its store (shared stores) or in this process (memory)."""
        return (rebuild, (LoopGuard, (), self._built_from))

    def __init__(
        self,
        max_calls: int | None = 50,
        max_calls_per_tool: int | None = None,
        max_identical: int | None = 3,
        *,
        window_calls: int | None = None,
        window_seconds: float | None = None,
        key: Callable[[str, dict[str, Any]], Any] | None = None,
        mode: Literal["raise", "message"] = "raise",
        store: Any = None,
        ttl_seconds: float = 86400,
        namespace: str = "guard",
        on_store_error: Literal["local", "open", "closed"] = "local",
        history_size: int = 50,
    ) -> None:
        #: What a pickled guard is rebuilt from (its store by URL; no tally travels).
        self._built_from = {k: v for k, v in locals().items() if k != "self"}
        for name, value in (
            ("max_calls", max_calls),
            ("max_calls_per_tool", max_calls_per_tool),
            ("max_identical", max_identical),
            ("window_calls", window_calls),
            ("history_size", history_size),
        ):
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ValueError(f"LoopGuard: {name} must be an int >= 1 or None, got {value!r}")
        if window_calls is not None:
            for name, value in (
                ("max_calls_per_tool", max_calls_per_tool),
                ("max_identical", max_identical),
            ):
                if value is not None and value >= window_calls:
                    raise ValueError(
                        f"LoopGuard: {name}={value} can never be passed within "
                        f"window_calls={window_calls} (the window holds {window_calls} calls, "
                        f"this one included): use a limit below {window_calls} or a larger window"
                    )
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
        if key is not None and not callable(key):
            raise TypeError(f"LoopGuard: key must be callable, got {key!r}")
        self.max_calls = max_calls
        self.max_calls_per_tool = max_calls_per_tool
        self.max_identical = max_identical
        self.window_calls = window_calls
        self.window_seconds = window_seconds
        self.key = key
        self.mode = mode
        self.store: Store = resolve_store(store)
        self.ttl_seconds = ttl_seconds
        self.namespace = namespace
        # Every key of this guard starts with it; sessions' scopes hold no raw ":", so one
        # session's prefix never matches another's (``chat`` and ``chat:1``).
        self._space = f"guard/{escape(namespace, 'a guard namespace')}:"
        self._namespace = namespace
        self._stops = stops_key(namespace)
        self.on_store_error = on_store_error
        self.history_size = history_size
        #: How many of a session's last calls are kept: the window, else the history.
        self._keep = window_calls or history_size
        self._window_name = (
            f"last {window_calls} calls"
            if window_calls
            else f"{window_seconds:g}s"
            if window_seconds
            else "session"
        )
        self._local = None if self.store.shared else _local_for(self.store, namespace)
        # The limits as numbers a count is compared with (no limit: never passed).
        never = 1 << 62
        self._limits = (
            never if max_calls is None else max_calls,
            never if max_calls_per_tool is None else max_calls_per_tool,
            never if max_identical is None else max_identical,
        )
        self._fallback: _Local | None = None
        self._outage = False
        self._tokens: list[Token[LoopGuard | None]] = []

    def __repr__(self) -> str:
        return (
            f"LoopGuard(max_calls={self.max_calls}, max_calls_per_tool={self.max_calls_per_tool}, "
            f"max_identical={self.max_identical}, window={self._window_name!r}, mode={self.mode!r})"
        )

    # --- the verdict ------------------------------------------------------------------------

    def _verdict(self, tool: str, total: int, per_tool: int, identical: int) -> LoopStop | None:
        window = self._window_name
        within = "in this session" if window == "session" else f"in the {window}"
        if self.max_identical is not None and identical > self.max_identical:
            return LoopStop(
                tool,
                "identical",
                f"You already called {tool} with these exact arguments {_times(identical - 1)} "
                f"{within}. Do not call it again with the same arguments; use the earlier "
                "result or change the arguments.",
                identical,
                self.max_identical,
                window,
            )
        if self.max_calls_per_tool is not None and per_tool > self.max_calls_per_tool:
            return LoopStop(
                tool,
                "per_tool",
                f"{tool} has been called {_times(per_tool - 1)} {within}, its limit. "
                "Stop calling it and answer with what you have.",
                per_tool,
                self.max_calls_per_tool,
                window,
            )
        if self.max_calls is not None and total > self.max_calls:
            return LoopStop(
                tool,
                "total",
                f"This session has used its {self.max_calls} tool calls. Stop calling tools and "
                "answer with what you have.",
                total,
                self.max_calls,
                "session" if self.window_seconds is None else window,
            )
        return None

    def _act(self, stop: LoopStop | None, args: Any) -> LoopStop | None:
        if stop is not None and self.mode == "raise":
            raise ToolLoopError(
                f"loop guard: {stop.reason} limit reached for {stop.tool} "
                f"({stop.count} calls, limit {stop.limit}, {stop.window})",
                tool=stop.tool,
                llm_hint=stop.llm_hint,
                arguments=args,
                count=stop.count,
                limit=stop.limit,
                window=stop.window,
                reason=stop.reason,
            )
        return stop

    def _identity(self, tool: str, args: Any) -> bytes:
        """The canonical bytes of what makes a call identical (``key=``, else the arguments)."""
        value = args if self.key is None else self.key(tool, args if args is not None else {})
        return canonical_json(value)

    @staticmethod
    def _session(session_id: str | None) -> str:
        if session_id is not None:
            return _explicit_scope(session_id)
        sess = _CURRENT_SESSION.get()
        return ANONYMOUS if sess is None else sess.scope

    def _window_start(self) -> float:
        """The wall-clock start of the current time window (0.0 without one)."""
        seconds = self.window_seconds
        return 0.0 if seconds is None else (time.time() // seconds) * seconds

    # --- in this process --------------------------------------------------------------------

    def _count_local(
        self, local: _Local, tool: str, ident: bytes, sess: str, commit: bool
    ) -> LoopStop | None:
        # The hot path of every guarded call in one process: one lock, a few dict reads.
        now = time.monotonic()
        started = 0.0 if self.window_seconds is None else self._window_start()
        sessions = local.sessions
        with local.lock:
            tally = sessions.get(sess)
            if tally is None or now - tally.touched > self.ttl_seconds or tally.started != started:
                if not commit:
                    return self._verdict(tool, 1, 1, 1)
                tally = sessions[sess] = _Tally(now, started, self._keep)
                if len(sessions) > local.MAX_SESSIONS:
                    local.trim()
            same_key = (tool, ident)
            total = tally.total + 1
            per_tool = tally.per_tool.get(tool, 0) + 1
            identical = tally.same.get(same_key, 0) + 1
            recent = tally.recent
            if self.window_calls is not None and len(recent) == self._keep:
                # The call that drops out of the window as this one enters.
                leaving = recent[0]
                per_tool -= leaving[0] == tool
                identical -= leaving == same_key
                if commit:
                    _drop(tally.per_tool, leaving[0])
                    _drop(tally.same, leaving)
            if commit:
                tally.total = total
                tally.per_tool[tool] = per_tool
                tally.same[same_key] = identical
                recent.append(same_key)
                tally.touched = now
        most_total, most_per_tool, most_identical = self._limits
        if total > most_total or per_tool > most_per_tool or identical > most_identical:
            return self._verdict(tool, total, per_tool, identical)
        return None

    # --- in the store -----------------------------------------------------------------------

    def _base(self, sess: str) -> tuple[str, float]:
        base = f"{self._space}{sess}"
        if self.window_seconds is not None:
            return f"{base}:w{int(time.time() // self.window_seconds)}", self.window_seconds
        return base, self.ttl_seconds

    def _counter_keys(self, base: str, tool: str, digest: str) -> list[tuple[str, bool]]:
        """(key, wanted) of the counters a call adds to: only those with a limit, and per
        tool and identity only when no count window supplies them."""
        counted = self.window_calls is None
        return [
            (f"{base}:all", self.max_calls is not None),
            (f"{base}:tool:{tool}", counted and self.max_calls_per_tool is not None),
            (f"{base}:same:{tool}:{digest}", counted and self.max_identical is not None),
        ]

    def _from_store(
        self, tool: str, item: str, items: list[str], counters: list[float], commit: bool
    ) -> LoopStop | None:
        total, per_tool, identical = (int(c) + (not commit) for c in counters)
        if self.window_calls is not None:
            window = items if commit else [*items[-(self._keep - 1) :], item]
            per_tool = sum(1 for i in window if i.partition(_SEP)[0] == tool)
            identical = window.count(item)
        return self._verdict(tool, total, per_tool, identical)

    def _shared_plan(
        self, tool: str, ident: bytes, sess: str
    ) -> tuple[str, str, float, list[tuple[str, bool]]]:
        base, ttl = self._base(sess)
        digest = fingerprint(ident)[:32]
        return base, f"{tool}{_SEP}{digest}", ttl, self._counter_keys(base, tool, digest)

    def _count_shared(self, tool: str, ident: bytes, sess: str, commit: bool) -> LoopStop | None:
        store = self.store
        base, item, ttl, counters = self._shared_plan(tool, ident, sess)
        try:
            items = store.recent(f"{base}:recent", item if commit else None, self._keep, ttl)
            # A preview adds 0: it reads the counter (and keeps its TTL) without counting.
            counts = [store.incr(k, int(commit), ttl) if wanted else 0.0 for k, wanted in counters]
        except StoreError as exc:
            return self._store_failed(exc, tool, ident, sess, commit)
        self._recovered()
        return self._from_store(tool, item, items, counts, commit)

    async def _acount_shared(
        self, tool: str, ident: bytes, sess: str, commit: bool
    ) -> LoopStop | None:
        store = self.store
        base, item, ttl, counters = self._shared_plan(tool, ident, sess)
        try:
            items = await store.arecent(f"{base}:recent", item if commit else None, self._keep, ttl)
            counts = [
                await store.aincr(k, int(commit), ttl) if wanted else 0.0 for k, wanted in counters
            ]
        except StoreError as exc:
            return self._store_failed(exc, tool, ident, sess, commit)
        self._recovered()
        return self._from_store(tool, item, items, counts, commit)

    def _store_failed(
        self, exc: StoreError, tool: str, ident: bytes, sess: str, commit: bool
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
            return LoopStop(
                tool,
                "store_unavailable",
                "The tool-call budget cannot be checked right now, so the call was not "
                "made. Try again later or answer with what you have.",
                window=self._window_name,
            )
        if self._fallback is None:
            self._fallback = _Local()
        return self._count_local(self._fallback, tool, ident, sess, commit)

    def _recovered(self) -> None:
        if self._outage:
            self._outage = False
            logger.warning("retrysafe: loop guard store recovered")

    # --- the operations ---------------------------------------------------------------------

    def record(
        self, tool: str, args: Any = None, *, session_id: str | None = None
    ) -> LoopStop | None:
        """Count a call of ``tool`` with ``args`` (a dict of its arguments) before it runs;
        raise :class:`ToolLoopError` (``mode="raise"``) or return a :class:`LoopStop` when it
        passes a limit, else None."""
        ident = canonical_json(args) if self.key is None else self._identity(tool, args)
        if session_id is None:
            current = _CURRENT_SESSION.get()
            sess = ANONYMOUS if current is None else current.scope
        else:
            sess = _explicit_scope(session_id)
        local = self._local
        if local is not None:
            stop = self._count_local(local, tool, ident, sess, True)
        else:
            stop = self._count_shared(tool, ident, sess, True)
            if stop is not None and stop.reason != "store_unavailable":
                self._log_stop(stop, sess)
        return None if stop is None else self._act(stop, args)

    async def arecord(
        self, tool: str, args: Any = None, *, session_id: str | None = None
    ) -> LoopStop | None:
        """:meth:`record` for async code."""
        ident = self._identity(tool, args)
        sess = self._session(session_id)
        local = self._local
        if local is not None:
            stop = self._count_local(local, tool, ident, sess, True)
        else:
            stop = await self._acount_shared(tool, ident, sess, True)
            if stop is not None and stop.reason != "store_unavailable":
                try:
                    await self.store.arecent(
                        self._stops, self._stop_item(stop, sess), STOPS_KEPT, STOPS_TTL
                    )
                except StoreError:
                    logger.debug("retrysafe: a loop guard stop was not logged: the store failed")
        return None if stop is None else self._act(stop, args)

    def _log_stop(self, stop: LoopStop, sess: str) -> None:
        """Note a stop in the shared store's log of this guard's recent stops (what operators
        read: ``retrysafe.records.guard_stops``, the console). A store that fails loses the
        note, never the verdict."""
        try:
            self.store.recent(self._stops, self._stop_item(stop, sess), STOPS_KEPT, STOPS_TTL)
        except StoreError:
            logger.debug("retrysafe: a loop guard stop was not logged: the store failed")

    @staticmethod
    def _stop_item(stop: LoopStop, sess: str) -> str:
        """A stop as the log keeps it: the tool, the limit and the session's identity, never
        the arguments."""
        import json

        return json.dumps(
            {
                "at": round(time.time(), 3),
                "tool": stop.tool,
                "reason": stop.reason,
                "count": stop.count,
                "limit": stop.limit,
                "window": stop.window,
                "session": sess,
            },
            separators=(",", ":"),
        )

    def stops(self, limit: int = 50) -> list[dict[str, Any]]:
        """This guard's recent stops, newest first: every process's on a shared store, none
        on an in-process one (its stops are the results its callers got)."""
        return recent_stops(self.store, self._namespace, limit) if self._local is None else []

    def check(
        self, tool: str, args: Any = None, *, session_id: str | None = None
    ) -> LoopStop | None:
        """Preview: the :class:`LoopStop` this call would get now, or None. Counts nothing
        and never raises for a limit (whatever ``mode``)."""
        ident = self._identity(tool, args)
        sess = self._session(session_id)
        if self._local is not None:
            return self._count_local(self._local, tool, ident, sess, False)
        return self._count_shared(tool, ident, sess, False)

    async def acheck(
        self, tool: str, args: Any = None, *, session_id: str | None = None
    ) -> LoopStop | None:
        """:meth:`check` for async code."""
        ident = self._identity(tool, args)
        sess = self._session(session_id)
        if self._local is not None:
            return self._count_local(self._local, tool, ident, sess, False)
        return await self._acount_shared(tool, ident, sess, False)

    def history(self, session_id: str | None = None) -> list[str]:
        """The tools of the session's last calls (up to ``window_calls``, else
        ``history_size``), oldest first."""
        sess = self._session(session_id)
        if self._local is not None:
            with self._local.lock:
                tally = self._local.sessions.get(sess)
                return [] if tally is None else [tool for tool, _ in tally.recent]
        base, _ = self._base(sess)
        items = self.store.recent(f"{base}:recent", None, self._keep, None)
        return [item.partition(_SEP)[0] for item in items]

    def reset(self, session_id: str | None = None) -> None:
        """Forget the session's counts and history: its next call starts a fresh budget."""
        sess = self._session(session_id)
        for local in (self._local, self._fallback):
            if local is not None:
                with local.lock:
                    local.sessions.pop(sess, None)
        if self._local is None:
            self.store.clear(f"{self._space}{sess}:")

    async def areset(self, session_id: str | None = None) -> None:
        """:meth:`reset` for async code."""
        if self._local is not None:
            self.reset(session_id)
            return
        sess = self._session(session_id)
        if self._fallback is not None:
            with self._fallback.lock:
                self._fallback.sessions.pop(sess, None)
        await self.store.aclear(f"{self._space}{sess}:")

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
        tool = name_of(fn)
        arguments = bound_arguments(fn)

        if is_async(fn):

            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                stop = await self.arecord(tool, arguments(args, kwargs))
                if stop is not None:
                    return stop
                return await fn(*args, **kwargs)

            wrapper: Any = functools.wraps(fn)(async_wrapper)
        else:

            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                stop = self.record(tool, arguments(args, kwargs))
                if stop is not None:
                    return stop
                return fn(*args, **kwargs)

            wrapper = functools.wraps(fn)(sync_wrapper)
        wrapper.guard = self
        return wrapper


def bound_arguments(
    fn: Callable[..., Any], hidden: tuple[str, ...] = ()
) -> Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]]:
    """A function giving a call's arguments as a dict, by name with defaults applied
    (``self``/``cls`` and ``hidden`` left out): what the guard counts and ``key=`` sees."""
    signature = inspect.signature(fn)
    first = next(iter(signature.parameters), None)
    drop = (*hidden, first) if first in ("self", "cls") else hidden

    def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        for name in drop:
            values.pop(name, None)
        return values

    return arguments


def _drop(counts: dict[Any, int], key: Any) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"
