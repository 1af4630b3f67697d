"""The Store protocol: what the cache (and the layers above it) need from a backend."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, Final, Protocol, Union, final, runtime_checkable

from ._records import Claim, RecordView

__all__ = ["MISS", "AsyncWatcher", "Key", "Store", "Watcher", "rebuild"]

#: A store key: a str, or bytes (in-process caches key small calls by their canonical bytes).
Key = Union[str, bytes]


@final
class _Miss:
    """The marker for "no value" (a cached ``None`` is a value)."""

    _instance: _Miss | None = None

    def __new__(cls) -> _Miss:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISS"

    def __bool__(self) -> bool:
        return False


MISS: Final = _Miss()


def rebuild(cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``cls(*args, **kwargs)``: how a store or a decorated tool's handle is unpickled, from
    what it was built of (its URL, its options), never from its connections or locks."""
    return cls(*args, **kwargs)


class Watcher(Protocol):
    """Subscribed to one key's change notifications (set up before the caller re-checks)."""

    def wait(self, seconds: float) -> bool:
        """Block until the key changes or ``seconds`` pass; True if notified."""
        ...


@runtime_checkable
class Store(Protocol):
    """A key-value store with TTLs, leases and counters, in sync and async forms.

    A store may also say whether its records survive its restart, as ``durable``: True,
    False, or None when it cannot tell (a managed Redis that refuses CONFIG); a store without
    it counts as None. Exactly-once across a crash needs True.

    Keys are logical names (``"ns:digest"``); a store maps them to its own layout. Values
    are Python objects: :class:`~retrysafe.stores.MemoryStore` keeps them as they are,
    :class:`~retrysafe.stores.RedisStore` serializes them (orjson by default).
    """

    #: True when other processes see the same data (cross-process single-flight applies).
    shared: bool

    def get(self, key: Key) -> Any:
        """The value, or ``MISS``."""
        ...

    def set(self, key: Key, value: Any, ttl: float | None) -> None:
        """Store a value for ``ttl`` seconds (``None``: until evicted)."""
        ...

    def delete(self, key: Key) -> bool:
        """Remove a key; True if it existed."""
        ...

    def clear(self, prefix: str) -> int:
        """Remove every key starting with ``prefix``; returns how many."""
        ...

    def incr(self, key: Key, amount: float, ttl: float | None) -> float:
        """Add to a counter (created at 0), refreshing its TTL; returns the new value."""
        ...

    def add_clamped(
        self, key: Key, delta: float, low: float, high: float, ttl: float | None
    ) -> float:
        """Add ``delta`` to a number (created at ``low``), kept within [low, high]; returns it."""
        ...

    def recent(self, key: Key, item: str | None, keep: int, ttl: float | None) -> list[str]:
        """Append ``item`` (None: only read) to a list that keeps its last ``keep`` items,
        refreshing its TTL; returns them, oldest first. One atomic step, so every process
        sees one order (the loop guard's window of a session's last calls)."""
        ...

    def acquire_lease(self, key: Key, owner: str, ttl: float) -> bool:
        """Take the lease on ``key`` for ``ttl`` seconds if nobody holds it."""
        ...

    def extend_lease(self, key: Key, owner: str, ttl: float) -> bool:
        """Extend a lease ``owner`` still holds; False if it was lost."""
        ...

    def release_lease(self, key: Key, owner: str) -> bool:
        """Drop a lease ``owner`` holds, and wake the key's watchers."""
        ...

    def set_and_release(self, key: Key, value: Any, ttl: float | None, owner: str) -> None:
        """Store a value, drop ``owner``'s lease and wake watchers, in one step."""
        ...

    # --- idempotency records: every transition checks the fence --------------------------

    def claim(
        self,
        key: Key,
        fingerprint: str,
        owner: str,
        lease: float,
        ttl: float,
        takeover: bool,
        nonce: str | None = None,
        checkpoint: bool = False,
        meta: str | None = None,
    ) -> Claim:
        """Claim a record: start it, replay it, or report who holds it (see :class:`Claim`).
        An expired lease is taken over when ``takeover`` (READ/IDEMPOTENT), or when the
        claim was made with ``checkpoint`` (and without ``takeover``, which keeps none) and
        its owner never called :meth:`mark_started` (it died before its side effect could
        start); else the record turns UNKNOWN.
        ``nonce`` (12 digits, the caller's; the store draws one if None) names this claim:
        the claim resent with it is recognised as itself, and :meth:`abandon` finds it by
        it. ``meta`` (JSON text: the tool and the identity, for operators; never an
        argument value) is kept with a record this claim starts."""
        ...

    def heartbeat(self, key: Key, fence: int, lease: float) -> bool:
        """Extend the lease of the claim holding ``fence``; False if it was fenced out."""
        ...

    def complete(self, key: Key, fence: int, payload: Any, ttl: float) -> bool:
        """Store the result of the claim holding ``fence`` (also from UNKNOWN: the late owner
        knows the truth); False if fenced out. True again for a record that ``fence`` has
        completed already (a completion resent after a lost connection)."""
        ...

    def release(self, key: Key, fence: int) -> bool:
        """Remove the record of the claim holding ``fence`` (nothing was applied), in
        progress or UNKNOWN (its lease ran out, but its owner knows it did not act)."""
        ...

    def abandon(self, key: Key, nonce: str) -> bool:
        """Remove the record of the claim made with ``nonce`` (in progress, or UNKNOWN since
        its lease ran out) whose reply its caller never read: that caller never ran it."""
        ...

    def mark_unknown(self, key: Key, fence: int, ttl: float) -> bool:
        """Turn the claim holding ``fence`` UNKNOWN (cut off after it may have acted)."""
        ...

    def mark_started(self, key: Key, fence: int) -> bool:
        """Record that the claim holding ``fence`` (made with ``checkpoint``) is about to
        start its side effect: from now on its expired lease turns the record UNKNOWN. False
        (nothing changed) when that claim no longer holds the record."""
        ...

    def resolve(
        self, key: Key, payload: Any, applied: bool, ttl: float, fence: int | None = None
    ) -> str | None:
        """Settle a record by hand: COMPLETED with ``payload`` or removed; returns the old
        state, or ``"held"`` (changing nothing) while an owner's lease on it is live.
        With ``fence`` (what an operator saw), only the record that claim left UNKNOWN (or
        whose lease ran out) is settled: ``"changed"`` (nothing changed) when another claim
        holds it now, ``"completed"`` when it completed meanwhile (its late owner knew)."""
        ...

    def record(self, key: Key) -> RecordView | None:
        """The record under ``key``, or None."""
        ...

    def watch(self, key: Key) -> AbstractContextManager[Watcher]:
        """Subscribe to the key's notifications."""
        ...

    async def aget(self, key: Key) -> Any:
        """The async form of :meth:`get`."""

    async def aset(self, key: Key, value: Any, ttl: float | None) -> None:
        """The async form of :meth:`set`."""

    async def adelete(self, key: Key) -> bool:
        """The async form of :meth:`delete`."""

    async def aclear(self, prefix: str) -> int:
        """The async form of :meth:`clear`."""

    async def aincr(self, key: Key, amount: float, ttl: float | None) -> float:
        """The async form of :meth:`incr`."""

    async def aadd_clamped(
        self, key: Key, delta: float, low: float, high: float, ttl: float | None
    ) -> float:
        """The async form of :meth:`add_clamped`."""

    async def arecent(self, key: Key, item: str | None, keep: int, ttl: float | None) -> list[str]:
        """The async form of :meth:`recent`."""

    async def aacquire_lease(self, key: Key, owner: str, ttl: float) -> bool:
        """The async form of :meth:`acquire_lease`."""

    async def aextend_lease(self, key: Key, owner: str, ttl: float) -> bool:
        """The async form of :meth:`extend_lease`."""

    async def arelease_lease(self, key: Key, owner: str) -> bool:
        """The async form of :meth:`release_lease`."""

    async def aset_and_release(self, key: Key, value: Any, ttl: float | None, owner: str) -> None:
        """The async form of :meth:`set_and_release`."""

    def awatch(self, key: Key) -> AbstractAsyncContextManager[AsyncWatcher]: ...
    async def aclaim(
        self,
        key: Key,
        fingerprint: str,
        owner: str,
        lease: float,
        ttl: float,
        takeover: bool,
        nonce: str | None = None,
        checkpoint: bool = False,
        meta: str | None = None,
    ) -> Claim:
        """The async form of :meth:`claim`."""

    async def aabandon(self, key: Key, nonce: str) -> bool:
        """The async form of :meth:`abandon`."""

    async def aheartbeat(self, key: Key, fence: int, lease: float) -> bool:
        """The async form of :meth:`heartbeat`."""

    async def acomplete(self, key: Key, fence: int, payload: Any, ttl: float) -> bool:
        """The async form of :meth:`complete`."""

    async def arelease(self, key: Key, fence: int) -> bool:
        """The async form of :meth:`release`."""

    async def amark_unknown(self, key: Key, fence: int, ttl: float) -> bool:
        """The async form of :meth:`mark_unknown`."""

    async def amark_started(self, key: Key, fence: int) -> bool:
        """The async form of :meth:`mark_started`."""


class AsyncWatcher(Protocol):
    async def wait(self, seconds: float) -> bool: ...
