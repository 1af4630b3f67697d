"""cache_tool: never make the same read twice in a window, never stampede a slow API.

Keys: the call bound to the signature with defaults applied, fingerprinted with the
function's identity (one native call on the hit path). Values: kept by reference in memory,
serialized in shared stores. Single-flight: one execution per key at a time, across the
tasks of an event loop, across threads, and (with RedisStore) across processes.
"""

from __future__ import annotations

import functools
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, overload

import anyio

from . import _identity, _telemetry
from ._callables import bound_self, check_decoratable, make_keyer
from ._exceptions import StoreError
from ._flights import ThreadFlights, join_or_lead
from ._identity import _CURRENT as _CURRENT_SESSION
from ._identity import ANONYMOUS, escape, is_async
from ._lease import run_with_heartbeat, start_heartbeat
from ._log import logger
from ._native import CallKeyer, canonical_json, digest_with_head
from .stores import MISS, Store, resolve_store
from .stores._base import Key, rebuild

if TYPE_CHECKING:
    P = ParamSpec("P")

__all__ = ["CacheInfo", "CacheStats", "CachedTool", "cache_tool"]

T = TypeVar("T")

_KEY_VERSION = b"retrysafe/cache/v1\0"
# In-process stores key small calls by their canonical bytes (exact, no SHA-256 needed).
RAW_KEY_LIMIT = 256


class CacheStats:
    """Counters of one cached function (``fn.cache.stats()`` returns them as a dict).

    ``hits``: served from the store. ``misses``: calls that found nothing. ``coalesced``:
    misses that waited for another caller's execution instead of running the function.
    ``executions``: times the function actually ran. ``errors``: store failures (the call
    went through uncached). ``expirations``: misses that found the entry expired (in-process
    stores; Redis drops expired keys itself, so there they count as plain misses).
    ``evictions``: entries the memory store dropped for room (the store's count).
    """

    __slots__ = ("coalesced", "errors", "executions", "expirations", "hits", "misses")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.coalesced = 0
        self.executions = 0
        self.errors = 0
        self.expirations = 0


class CacheInfo(Generic[T]):
    """``fn.cache``: statistics, invalidation and bypass of one cached function."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        ttl_seconds: float | None,
        store: Store,
        namespace: str,
        key: Callable[..., Any] | None,
        cache_errors: tuple[type[Exception], ...],
        error_ttl_seconds: float,
        lease_seconds: float,
        wait_seconds: float,
        same_for_everyone: bool = False,
    ) -> None:
        #: What this is rebuilt from when pickled (see IdempotencyHandle.__reduce__).
        self._built_from = {k: v for k, v in locals().items() if k not in ("self", "fn")}
        self.fn = fn
        self.ttl = ttl_seconds
        self.store = store
        self.namespace = namespace
        #: True: one entry per call for every caller (data the same for everyone). False (the
        #: default): entries are per principal and tenant of the current session.
        self.same_for_everyone = same_for_everyone
        #: Every key of this cache starts with it: ``cache:`` + the escaped namespace + ``:``
        #: (the namespace holds no raw ``:``, so no other namespace's keys start with it).
        self.prefix = f"cache:{escape(namespace, 'a cache namespace')}:"
        self._custom_key = key
        self._raw_limit = 0 if store.shared else RAW_KEY_LIMIT
        self._signature = inspect.signature(fn)
        self._self = bound_self(self._signature.parameters)
        self._parts: dict[str, _Partition] = {}
        #: The native binders of the partitions built so far, by the session's partition
        #: string (the memory hit path's one lookup).
        self._binders: dict[str, Callable[..., Any]] = {}
        self.cache_errors = cache_errors
        self.error_ttl = error_ttl_seconds
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds
        self.counters = CacheStats()
        self._id = id(self)
        self._threads = ThreadFlights()
        self._warned = False
        self._down_until = 0.0
        self._evictions_before = 0

    def __reduce__(self) -> tuple[Any, ...]:
        """Rebuilt from the function and its options where it is unpickled: no entry, lock or
        count travels (a MemoryStore arrives empty, a shared store by its URL)."""
        return (rebuild, (CacheInfo, (self.fn,), self._built_from))

    # --- keys -------------------------------------------------------------------------------

    def key(self, *args: Any, **kwargs: Any) -> str | bytes:
        """The store key of a call (what ``invalidate`` removes): opaque, stable."""
        return self._key(args, kwargs)

    def _partition(self) -> _Partition:
        """The key space of the current caller: its principal's and tenant's, or everyone's
        for a shared cache."""
        sess = _CURRENT_SESSION.get()
        name = ANONYMOUS if sess is None or self.same_for_everyone else sess.partition
        found = self._parts.get(name)
        return found if found is not None else self._new_partition(name)

    def _new_partition(self, name: str) -> _Partition:
        if len(self._parts) > 4096:  # one per principal and tenant: keep the table bounded
            self._parts.clear()
            self._binders.clear()
        # The digest covers the namespace and the partition, each length-prefixed.
        head = _KEY_VERSION + b"".join(
            len(raw).to_bytes(8, "big") + raw for raw in (self.namespace.encode(), name.encode())
        )
        prefix = f"{self.prefix}{name}:"
        keyer = (
            None
            if self._custom_key is not None
            else make_keyer(self.fn, prefix, head, self._raw_limit)
        )
        part = self._parts[name] = _Partition(prefix, head, keyer)
        if keyer is not None:
            self._binders[name] = keyer.key
        return part

    def _key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | bytes:
        part = self._partition()
        keyer = part.keyer
        if keyer is not None:
            found = keyer.key(args, kwargs)
            if found is not None:
                return found
        return self._slow_key(part, args, kwargs)

    def _slow_key(
        self, part: _Partition, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> str | bytes:
        if self._custom_key is not None:
            value: Any = self._custom_key(*args, **kwargs)
        else:
            bound = self._signature.bind(*args, **kwargs)  # raises the TypeError a call would
            bound.apply_defaults()
            value = dict(bound.arguments)
            if self._self is not None:
                value.pop(self._self, None)
        if self._raw_limit:
            raw = part.prefix.encode() + canonical_json(value)
            if len(raw) <= self._raw_limit:
                return raw
        return part.prefix + digest_with_head(part.head, value)

    # --- the public face --------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """``{"hits", "misses", "coalesced", "executions", "errors", "expirations",
        "evictions"}`` (see :class:`CacheStats`), counted since the last :meth:`clear` or
        :meth:`reset_stats`."""
        c = self.counters
        return {
            "hits": c.hits,
            "misses": c.misses,
            "coalesced": c.coalesced,
            "executions": c.executions,
            "errors": c.errors,
            "expirations": c.expirations,
            "evictions": int(getattr(self.store, "evictions", 0)) - self._evictions_before,
        }

    def reset_stats(self) -> None:
        """Start every count of :meth:`stats` over at zero (the entries stay)."""
        for name in CacheStats.__slots__:
            setattr(self.counters, name, 0)
        self._evictions_before = int(getattr(self.store, "evictions", 0))

    # --- entries, by the call's arguments (bound as a call binds them) ---------------------

    def get(self, *args: Any, **kwargs: Any) -> Any:
        """The cached result of this call, or ``retrysafe.stores.MISS`` (a cached ``None``
        is ``None``). Counts nothing; a cached error (``cache_errors=``) is raised."""
        return _unwrap(self.store.get(self._key(args, kwargs)))

    async def aget(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`get` for async code."""
        return _unwrap(await self.store.aget(self._key(args, kwargs)))

    def set(self, value: T, /, *args: Any, **kwargs: Any) -> None:
        """Store ``value`` as the result of this call (warm the cache): ``fn.cache.set(
        {"temp": 21}, "Paris")`` is what ``fn("Paris")`` then returns, for ``ttl_seconds``."""
        self.store.set(self._key(args, kwargs), value, self.ttl)

    async def aset(self, value: T, /, *args: Any, **kwargs: Any) -> None:
        """:meth:`set` for async code."""
        await self.store.aset(self._key(args, kwargs), value, self.ttl)

    def contains(self, *args: Any, **kwargs: Any) -> bool:
        """True when this call's result is cached (and not expired)."""
        return self.store.get(self._key(args, kwargs)) is not MISS

    async def acontains(self, *args: Any, **kwargs: Any) -> bool:
        """:meth:`contains` for async code."""
        return await self.store.aget(self._key(args, kwargs)) is not MISS

    def __contains__(self, argument: Any) -> bool:
        """``x in fn.cache``: whether ``fn(x)`` is cached, for any ``x`` (a dict or a tuple
        is the one argument, as in the call); :meth:`contains` takes several."""
        return self.contains(argument)

    def get_or_set(self, factory: Callable[[], T], /, *args: Any, **kwargs: Any) -> T:
        """The cached result of this call; else ``factory()`` (not the function), stored as
        its result and returned."""
        key = self._key(args, kwargs)
        found = _unwrap(self.store.get(key))
        if found is not MISS:
            return found  # type: ignore[no-any-return]
        value = factory()
        self.store.set(key, value, self.ttl)
        return value

    async def aget_or_set(
        self, factory: Callable[[], Awaitable[T]], /, *args: Any, **kwargs: Any
    ) -> T:
        """:meth:`get_or_set` for async code: ``factory`` is awaited."""
        key = self._key(args, kwargs)
        found = _unwrap(await self.store.aget(key))
        if found is not MISS:
            return found  # type: ignore[no-any-return]
        value = await factory()
        await self.store.aset(key, value, self.ttl)
        return value

    def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Drop the cached result of this call; True if there was one."""
        return self.store.delete(self._key(args, kwargs))

    async def ainvalidate(self, *args: Any, **kwargs: Any) -> bool:
        """``invalidate`` for async code (no blocking I/O on the event loop)."""
        return await self.store.adelete(self._key(args, kwargs))

    def clear(self, *, every_caller: bool = False) -> int:
        """Drop the cached results of this function that the current caller sees (its
        principal's and tenant's; all of them with ``same_for_everyone``) and reset
        :meth:`stats`; returns how many entries. ``every_caller=True`` drops every
        principal's and tenant's entries too (an operator's action). Never touches another
        function's entries, idempotency records or loop-guard counts."""
        dropped = self.store.clear(self.prefix if every_caller else self._partition().prefix)
        self.reset_stats()
        return dropped

    def bypass(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function itself, neither reading nor writing the cache."""
        return self.fn(*args, **kwargs)

    # --- store failures: fail open ----------------------------------------------------------

    def _store_failed(self, exc: BaseException) -> None:
        self.counters.errors += 1
        self._down_until = time.monotonic() + 1.0
        if not self._warned:
            self._warned = True
            logger.warning(
                "retrysafe: cache store failed for %s, calling through uncached: %s",
                self.namespace,
                exc,
            )

    def _store_ok(self) -> None:
        if self._warned:
            self._warned = False
            logger.warning("retrysafe: cache store for %s is back", self.namespace)

    def _store_down(self) -> bool:
        return self._down_until > 0 and time.monotonic() < self._down_until

    def _cacheable_error(self, exc: Exception) -> bool:
        return bool(self.cache_errors) and isinstance(exc, self.cache_errors)

    # --- async miss path --------------------------------------------------------------------

    def _joined(self) -> None:
        self.counters.coalesced += 1
        _telemetry.note("coalesced")

    def _count_expired(self, key: Key) -> None:
        store: Any = self.store
        if getattr(store, "last_expired", None) == key:
            store.last_expired = None
            self.counters.expirations += 1

    async def _amiss(self, key: Key, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self._count_expired(key)
        # Concurrent identical misses in this loop run once (a cancelled waiter cancels only
        # itself; if the executing caller is cancelled, a waiter runs the READ again).
        started = time.monotonic()
        joined: list[bool] = []

        def on_join() -> None:
            joined.append(True)
            self._joined()

        try:
            return await join_or_lead(
                (self._id, key), lambda: self._acompute(key, args, kwargs), on_join=on_join
            )
        finally:
            if joined:
                _telemetry.note_wait(self.namespace, time.monotonic() - started)

    async def _acompute(self, key: Key, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        store = self.store
        if store.shared and not self._store_down():
            return await self._acompute_shared(key, args, kwargs)
        value = await self._aexecute(key, args, kwargs)
        await self._astore(key, value)
        return value

    async def _aexecute(self, key: Key, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self.counters.executions += 1
        _telemetry.note("executed")
        try:
            return await self.fn(*args, **kwargs)
        except Exception as exc:
            if self._cacheable_error(exc):
                await self._astore(key, _CachedError(exc), self.error_ttl)
            raise

    async def _astore(self, key: Key, value: Any, ttl: float | None = None) -> None:
        try:
            await self.store.aset(key, value, ttl if ttl is not None else self.ttl)
        except StoreError as exc:
            self._store_failed(exc)

    async def _acompute_shared(
        self, key: Key, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        store = self.store
        owner = os.urandom(16).hex()
        delay = 0.02
        give_up_at = time.monotonic() + self.wait_seconds
        try:
            while True:
                if await store.aacquire_lease(key, owner, self.lease_seconds):
                    found = await store.aget(key)  # finished between our miss and the lease?
                    if found is not MISS:
                        await store.arelease_lease(key, owner)
                        return _unwrap(found)
                    return await self._aexecute_leased(key, owner, args, kwargs)
                self.counters.coalesced += 1
                _telemetry.note("coalesced")
                async with store.awatch(key) as watcher:
                    found = await store.aget(key)
                    if found is MISS:
                        await watcher.wait(delay)
                        found = await store.aget(key)
                if found is not MISS:
                    self._store_ok()
                    return _unwrap(found)
                if time.monotonic() >= give_up_at:
                    break  # the holder is alive but slow: a READ may run here too
                delay = min(delay * 2, 1.0)
        except StoreError as exc:
            self._store_failed(exc)
        return await self._aexecute(key, args, kwargs)

    async def _aexecute_leased(
        self, key: Key, owner: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        store = self.store
        try:
            value = await run_with_heartbeat(
                lambda: self._aexecute(key, args, kwargs),
                lambda: store.aextend_lease(key, owner, self.lease_seconds),
                self.lease_seconds / 3,
            )
        except Exception:
            try:
                await store.arelease_lease(key, owner)
            except StoreError as exc:
                self._store_failed(exc)
            raise
        except BaseException:
            # Cancelled: let the others take over now rather than when the lease runs out.
            with anyio.CancelScope(shield=True):
                try:
                    await store.arelease_lease(key, owner)
                except StoreError:
                    pass
            raise
        try:
            await store.aset_and_release(key, value, self.ttl, owner)
            self._store_ok()
        except StoreError as exc:
            self._store_failed(exc)
        return value

    # --- sync miss path ---------------------------------------------------------------------

    def _miss(self, key: Key, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self._count_expired(key)
        return self._threads.join_or_lead(
            key, lambda: self._compute(key, args, kwargs), on_join=self._joined
        )

    def _compute(self, key: Key, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.store.shared and not self._store_down():
            return self._compute_shared(key, args, kwargs)
        value = self._execute(key, args, kwargs)
        self._store(key, value)
        return value

    def _execute(self, key: Key, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self.counters.executions += 1
        _telemetry.note("executed")
        try:
            return self.fn(*args, **kwargs)
        except Exception as exc:
            if self._cacheable_error(exc):
                self._store(key, _CachedError(exc), self.error_ttl)
            raise

    def _store(self, key: Key, value: Any, ttl: float | None = None) -> None:
        try:
            self.store.set(key, value, ttl if ttl is not None else self.ttl)
        except StoreError as exc:
            self._store_failed(exc)

    def _compute_shared(self, key: Key, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        store = self.store
        owner = os.urandom(16).hex()
        delay = 0.02
        give_up_at = time.monotonic() + self.wait_seconds
        try:
            while True:
                if store.acquire_lease(key, owner, self.lease_seconds):
                    found = store.get(key)
                    if found is not MISS:
                        store.release_lease(key, owner)
                        return _unwrap(found)
                    return self._execute_leased(key, owner, args, kwargs)
                self.counters.coalesced += 1
                _telemetry.note("coalesced")
                with store.watch(key) as watcher:
                    found = store.get(key)
                    if found is MISS:
                        watcher.wait(delay)
                        found = store.get(key)
                if found is not MISS:
                    self._store_ok()
                    return _unwrap(found)
                if time.monotonic() >= give_up_at:
                    break
                delay = min(delay * 2, 1.0)
        except StoreError as exc:
            self._store_failed(exc)
        return self._execute(key, args, kwargs)

    def _execute_leased(
        self, key: Key, owner: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        store = self.store
        stop = start_heartbeat(
            lambda: store.extend_lease(key, owner, self.lease_seconds), self.lease_seconds / 3
        )
        try:
            value = self._execute(key, args, kwargs)
        except BaseException:
            stop.set()
            try:
                store.release_lease(key, owner)
            except StoreError:
                pass
            raise
        finally:
            stop.set()
        try:
            store.set_and_release(key, value, self.ttl, owner)
            self._store_ok()
        except StoreError as exc:
            self._store_failed(exc)
        return value


class _Partition:
    """One caller partition of a cache: its key prefix, digest head and native binder."""

    __slots__ = ("head", "keyer", "prefix")

    def __init__(self, prefix: str, head: bytes, keyer: CallKeyer | None) -> None:
        self.prefix = prefix
        self.head = head
        self.keyer = keyer


class _CachedError:
    """An exception cached for a short TTL (``cache_errors=``): re-raised on a hit."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _unwrap(value: Any) -> Any:
    if type(value) is _CachedError:
        raise value.error
    return value


@overload
def cache_tool(fn: Callable[P, T], /) -> CachedTool[P, T]: ...


@overload
def cache_tool(
    fn: None = None,
    /,
    *,
    ttl_seconds: float | None = 300,
    max_size: int = 512,
    store: Any = None,
    namespace: str | None = None,
    key: Callable[..., Any] | None = None,
    cache_errors: tuple[type[Exception], ...] = (),
    error_ttl_seconds: float = 5.0,
    lease_seconds: float = 10.0,
    wait_seconds: float = 30.0,
    same_for_everyone: bool = False,
) -> _CacheDecorator: ...


def cache_tool(
    fn: Any = None,
    /,
    *,
    ttl_seconds: float | None = 300,
    max_size: int = 512,
    store: Any = None,
    namespace: str | None = None,
    key: Callable[..., Any] | None = None,
    cache_errors: tuple[type[Exception], ...] = (),
    error_ttl_seconds: float = 5.0,
    lease_seconds: float = 10.0,
    wait_seconds: float = 30.0,
    same_for_everyone: bool = False,
) -> Any:
    """Cache a tool's results (sync or async), with single-flight.

    ``@cache_tool``, ``@cache_tool()``, ``@cache_tool(ttl_seconds=300, max_size=512)``,
    ``@cache_tool(ttl_seconds=120, store=redis.Redis(host=..., port=...))``.

    - ``ttl_seconds``: how long a result is served (``None``: until evicted).
    - ``max_size``: entries kept by the default per-function ``MemoryStore`` (LRU).
    - ``store``: a Store, a ``redis.Redis``, a ``redis.asyncio.Redis`` or a ``redis://`` URL.
    - ``namespace``: the key prefix (default: the function's module and qualified name).
    - ``key``: a callable taking the call's arguments and returning what identifies it.
    - ``cache_errors``: exception types cached for ``error_ttl_seconds`` (others never are).
    - ``lease_seconds``/``wait_seconds``: cross-process single-flight with a shared store.
    - ``same_for_everyone``: entries are kept per principal and tenant of the current
      :func:`~retrysafe.session` (``my_balance()`` of one tenant is never served to another);
      pass True for data that is the same for every caller (weather, a catalog) to share one
      entry per call across them.

    Keys bind the call to the signature with defaults applied: ``f(1)``, ``f(x=1)`` and
    ``f(1, region="eu")`` (default ``"eu"``) are one key. A cached ``None`` is a hit.
    ``fn.cache`` gives ``stats()``, ``invalidate(...)``, ``clear()`` and ``bypass(...)``.
    """
    if fn is not None:
        check_decoratable(fn, "@cache_tool")
        return _CacheDecorator(dict(ttl_seconds=ttl_seconds, max_size=max_size))(fn)
    return _CacheDecorator(
        dict(
            ttl_seconds=ttl_seconds,
            max_size=max_size,
            store=store,
            namespace=namespace,
            key=key,
            cache_errors=cache_errors,
            error_ttl_seconds=error_ttl_seconds,
            lease_seconds=lease_seconds,
            wait_seconds=wait_seconds,
            same_for_everyone=same_for_everyone,
        )
    )


class _CacheDecorator:
    __slots__ = ("options",)

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options

    def __call__(self, fn: Callable[P, T]) -> CachedTool[P, T]:
        return _wrap(fn, **self.options)  # type: ignore[no-any-return]


def _positive(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(
            f"cache_tool: {name} must be a positive number{' or None' if allow_none else ''}, got {value!r}"
        )


def _wrap(
    fn: Any,
    *,
    ttl_seconds: float | None = 300,
    max_size: int = 512,
    store: Any = None,
    namespace: str | None = None,
    key: Callable[..., Any] | None = None,
    cache_errors: tuple[type[Exception], ...] = (),
    error_ttl_seconds: float = 5.0,
    lease_seconds: float = 10.0,
    wait_seconds: float = 30.0,
    same_for_everyone: bool = False,
) -> Any:
    check_decoratable(fn, "@cache_tool")
    _positive("ttl_seconds", ttl_seconds, allow_none=True)
    _positive("error_ttl_seconds", error_ttl_seconds)
    _positive("lease_seconds", lease_seconds)
    _positive("wait_seconds", wait_seconds)
    if key is not None and not callable(key):
        raise TypeError(f"cache_tool: key must be a callable, got {key!r}")
    if not isinstance(cache_errors, tuple) or not all(
        isinstance(t, type) and issubclass(t, Exception) for t in cache_errors
    ):
        raise TypeError(
            f"cache_tool: cache_errors must be a tuple of Exception types, got {cache_errors!r}"
        )
    resolved = resolve_store(store, max_size=max_size)
    if cache_errors and resolved.shared:
        raise ValueError(
            "cache_tool: cache_errors needs an in-process store (exceptions are not serialized)"
        )
    name = namespace or f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    info: CacheInfo[Any] = CacheInfo(
        fn,
        ttl_seconds=ttl_seconds,
        store=resolved,
        namespace=name,
        key=key,
        cache_errors=cache_errors,
        error_ttl_seconds=error_ttl_seconds,
        lease_seconds=lease_seconds,
        wait_seconds=wait_seconds,
        same_for_everyone=same_for_everyone,
    )
    # The wrappers' closures hold only what pickles (by value, as cloudpickle sends a tool
    # defined in __main__ to a Ray worker): `info` rebuilds itself there, and `get`, `aget`
    # and `make_key` are its store's and its own methods (one object each in the pickle).
    # Its counters and binders are read through it; the session through its module.
    make_key = info._key
    memory = not resolved.shared and type(resolved).__name__ == "MemoryStore"
    get = resolved.get
    aget = resolved.aget
    async_fn = is_async(fn)

    if async_fn and memory:
        # A cache shared by every caller has one partition: no session to look up.
        everyone = same_for_everyone

        async def memory_wrapper(*args: Any, **kwargs: Any) -> Any:
            # The hit path inlines _key: the caller's partition's native binder (a dict
            # subscript by the session's precomputed partition), then one native call.
            sess = None if everyone else _identity._CURRENT.get()
            try:
                native = info._binders[ANONYMOUS if sess is None else sess.partition]
            except KeyError:
                key = make_key(args, kwargs)
            else:
                key = native(args, kwargs) or make_key(args, kwargs)
            value = get(key)
            if value is not MISS:
                info.counters.hits += 1
                return _unwrap(value) if type(value) is _CachedError else value
            info.counters.misses += 1
            return await info._amiss(key, args, kwargs)

        wrapper: Any = memory_wrapper
    elif async_fn:

        async def shared_wrapper(*args: Any, **kwargs: Any) -> Any:
            key = make_key(args, kwargs)
            if not info._store_down():
                try:
                    value = await aget(key)
                except StoreError as exc:
                    info._store_failed(exc)
                else:
                    if value is not MISS:
                        info.counters.hits += 1
                        return value
            info.counters.misses += 1
            return await info._amiss(key, args, kwargs)

        wrapper = shared_wrapper
    else:

        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            key = make_key(args, kwargs)
            if not info._store_down():
                try:
                    value = get(key)
                except StoreError as exc:
                    info._store_failed(exc)
                else:
                    if value is not MISS:
                        info.counters.hits += 1
                        return _unwrap(value) if type(value) is _CachedError else value
            info.counters.misses += 1
            return info._miss(key, args, kwargs)

        wrapper = sync_wrapper
    wrapper = functools.wraps(fn)(wrapper)
    wrapper.cache = info
    return wrapper


_Args = ParamSpec("_Args")
_Result = TypeVar("_Result", covariant=True)


class CachedTool(Protocol[_Args, _Result]):
    """A function decorated by ``@cache_tool`` or ``@tool.read``: called as the function
    itself (same parameters, same result), with ``fn.cache``."""

    __name__: str
    __qualname__: str
    __module__: str
    __wrapped__: Any

    @property
    def cache(self) -> CacheInfo[Any]:
        """Its cache: ``stats()``, ``invalidate(...)``, ``clear()``, ``get``/``set``..."""
        ...

    def __call__(self, *args: _Args.args, **kwargs: _Args.kwargs) -> _Result: ...
