"""Stores behind the cache, the idempotency records and the loop guard.

``MemoryStore`` (the default, one process) and ``RedisStore`` (a swarm of processes).
``redis`` is imported only when a ``RedisStore`` is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import MISS, AsyncWatcher, Store, Watcher
from ._memory import MemoryStore

if TYPE_CHECKING:
    from ._redis import RedisStore, Serializer

__all__ = [
    "MISS",
    "AsyncWatcher",
    "MemoryStore",
    "RedisStore",
    "Serializer",
    "Store",
    "Watcher",
    "resolve_store",
]


def __getattr__(name: str) -> Any:
    if name in ("RedisStore", "Serializer"):
        from . import _redis

        return getattr(_redis, name)
    raise AttributeError(f"module 'retrysafe.stores' has no attribute {name!r}")


def resolve_store(store: Any, *, max_size: int = 10_000) -> Store:
    """Turn what a user passes as ``store=`` into a Store.

    ``None`` gives a new ``MemoryStore(max_size)``; a Store is used as is; a ``redis.Redis``,
    a ``redis.asyncio.Redis``, a ``RedisCluster`` (sync or asyncio) or a ``redis://`` /
    ``rediss://`` / ``redis+cluster://`` URL gives a ``RedisStore``.
    """
    if store is None:
        return MemoryStore(max_size=max_size)
    if isinstance(store, Store):
        return store
    if isinstance(store, str) or type(store).__module__.startswith("redis"):
        from ._redis import RedisStore

        return RedisStore(store)
    raise TypeError(
        "store must be a Store, a redis.Redis, a redis.asyncio.Redis, a RedisCluster or a "
        f"redis:// / redis+cluster:// URL, got {store!r}"
    )
