"""Stores behind the cache, the idempotency records and the loop guard.

``MemoryStore`` (the default, one process), ``RedisStore`` (a swarm of processes),
``SQLiteStore`` (durable, the processes of one machine) and ``PostgresStore`` (durable and
replicated, many machines). Each backend's module is imported only when it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import MISS, AsyncWatcher, Store, Watcher
from ._memory import MemoryStore

if TYPE_CHECKING:
    from ._postgres import PostgresStore
    from ._redis import RedisStore, Serializer
    from ._sqlite import SQLiteStore

__all__ = [
    "MISS",
    "AsyncWatcher",
    "MemoryStore",
    "PostgresStore",
    "RedisStore",
    "SQLiteStore",
    "Serializer",
    "Store",
    "Watcher",
    "resolve_store",
]


def __getattr__(name: str) -> Any:
    if name in ("RedisStore", "Serializer"):
        from . import _redis

        return getattr(_redis, name)
    if name == "SQLiteStore":
        from ._sqlite import SQLiteStore

        return SQLiteStore
    if name == "PostgresStore":
        from ._postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module 'retrysafe.stores' has no attribute {name!r}")


def resolve_store(store: Any, *, max_size: int = 10_000, prefix: str = "retrysafe") -> Store:
    """Turn what a user passes as ``store=`` into a Store.

    ``None`` gives a new ``MemoryStore(max_size)``; a Store is used as is; a ``redis.Redis``,
    a ``redis.asyncio.Redis``, a ``RedisCluster`` (sync or asyncio) or a ``redis://`` /
    ``rediss://`` / ``redis+cluster://`` URL gives a ``RedisStore``; ``sqlite:///path`` a
    ``SQLiteStore``; ``postgresql://...`` (or a psycopg pool) a ``PostgresStore``.
    ``prefix``: the key prefix of a store built here.
    """
    if store is None:
        return MemoryStore(max_size=max_size)
    if isinstance(store, Store):
        return store
    if isinstance(store, str) and store.startswith("sqlite://"):
        from ._sqlite import SQLiteStore

        return SQLiteStore.from_url(store, prefix=prefix)
    if (isinstance(store, str) and store.startswith(("postgresql://", "postgres://"))) or type(
        store
    ).__module__.startswith("psycopg"):
        from ._postgres import PostgresStore

        return PostgresStore(store, prefix=prefix)
    if isinstance(store, str) or type(store).__module__.startswith("redis"):
        from ._redis import RedisStore

        return RedisStore(store, prefix=prefix)
    raise TypeError(
        "store must be a Store, a redis.Redis, a redis.asyncio.Redis, a RedisCluster, a "
        "psycopg pool, or a redis:// / redis+cluster:// / sqlite:/// / postgresql:// URL, "
        f"got {store!r}"
    )
