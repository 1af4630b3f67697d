"""MemoryStore: the default in-process store, a bounded LRU with TTLs."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any

from ._base import MISS, Key, rebuild
from ._records import CHANGED, COMPLETED, HELD, IN_PROGRESS, UNKNOWN, Claim, Cursor, RecordView
from ._sql import LocalWatchers

__all__ = ["MemoryStore"]


class MemoryStore:
    """A bounded LRU with per-entry TTLs: O(1) per operation, thread-safe.

    Values are kept as they are, by reference: a caller that mutates a returned value
    mutates what the next caller gets from this process's cache (as with
    ``functools.lru_cache``). Return immutable values, or copy them, when that matters;
    shared stores (Redis) serialize, so every hit there is a fresh object.

    ``max_size`` bounds the number of entries; the least recently used goes first.
    Expired entries read as missing and are dropped when met or evicted. Cache entries are
    kept by reference; a write's result is kept as a shared store keeps it (``serializer``:
    orjson unless given), so the same results are refused and read back alike.
    """

    shared = False

    @property
    def durable(self) -> bool:
        """False: records die with the process."""
        return False

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (to a Ray task, a process pool), a MemoryStore arrives as a new, empty one
        with the same settings: its entries belong to the process that made them."""
        return (rebuild, (MemoryStore, (self.max_size,), {"serializer": self._serializer}))

    def __init__(self, max_size: int = 10_000, *, serializer: Any = None) -> None:
        if not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 1:
            raise ValueError(f"max_size must be an int >= 1, got {max_size!r}")
        self.max_size = max_size
        # A write's result is kept as a shared store would keep it: serialized and read back
        # (orjson unless told otherwise), so what a store refuses, or turns a tuple into, is
        # the same in development as in production. Cache entries stay by reference. (The
        # codec, and orjson with it, loads at the first completion: `import retrysafe` stays
        # free of uuid and datetime.)
        self._serializer = serializer
        self._codec: Any = None
        # Keys are str, or bytes (the cache keys small calls by their canonical bytes).
        self._data: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._watchers = LocalWatchers()
        self.evictions = 0
        #: Entries found expired when read (they count as missing).
        self.expirations = 0
        #: The key of the last entry found expired: a cache's miss path reads it to count
        #: expirations per function.
        self.last_expired: Any = None
        # Idempotency records: key -> fields; fences outlive their records.
        self._records: OrderedDict[Any, dict[str, Any]] = OrderedDict()
        self._fences: dict[Any, int] = {}

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"MemoryStore(max_size={self.max_size}, entries={len(self._data)})"

    # --- values -----------------------------------------------------------------------------

    def get(self, key: Key) -> Any:
        """The value, or ``MISS``. Reads take no lock: each dict operation is atomic."""
        entry = self._data.get(key)
        if entry is None:
            return MISS
        expires, value = entry
        if expires and expires <= time.monotonic():
            with self._lock:
                if self._data.get(key) is entry:
                    del self._data[key]
                    self.expirations += 1
                    self.last_expired = key
            return MISS
        try:
            self._data.move_to_end(key)
        except KeyError:  # removed by another thread meanwhile: still a valid read
            pass
        return value

    def set(self, key: Key, value: Any, ttl: float | None) -> None:
        expires = time.monotonic() + ttl if ttl else 0.0
        with self._lock:
            self._data[key] = (expires, value)
            self._data.move_to_end(key)
            while len(self._data) > self.max_size:
                self._data.popitem(last=False)
                self.evictions += 1
        self._notify(key)

    def delete(self, key: Key) -> bool:
        with self._lock:
            found = self._data.pop(key, None) is not None
        return found

    def clear(self, prefix: str = "") -> int:
        raw = prefix.encode()
        with self._lock:
            doomed = [
                k for k in self._data if k.startswith(raw if isinstance(k, bytes) else prefix)
            ]
            for k in doomed:
                del self._data[k]
        return len(doomed)

    def keys(self, prefix: str, limit: int = 100_000) -> list[str]:
        """The keys of live values that start with ``prefix`` (at most ``limit``), for
        operators' counts: never values."""
        raw = prefix.encode()
        now = time.monotonic()
        found: list[str] = []
        with self._lock:
            for k, (expires, _) in self._data.items():
                if len(found) >= limit:
                    break
                if isinstance(k, bytes):
                    if k.startswith(raw) and (not expires or expires > now):
                        found.append(k.decode("utf-8", "backslashreplace"))
                elif k.startswith(prefix) and (not expires or expires > now):
                    found.append(k)
        return found

    def incr(self, key: Key, amount: float, ttl: float | None) -> float:
        with self._lock:
            entry = self._data.get(key)
            now = time.monotonic()
            current = entry[1] if entry is not None and (not entry[0] or entry[0] > now) else 0
            if not isinstance(current, (int, float)):
                raise TypeError(
                    f"MemoryStore.incr: {key!r} holds a {type(current).__name__}, not a counter"
                )
            value = current + amount
            self._data[key] = (now + ttl if ttl else 0.0, value)
            self._data.move_to_end(key)
            while len(self._data) > self.max_size:
                self._data.popitem(last=False)
                self.evictions += 1
        return value

    def recent(self, key: Key, item: str | None, keep: int, ttl: float | None) -> list[str]:
        with self._lock:
            entry = self._data.get(key)
            now = time.monotonic()
            live = entry is not None and (not entry[0] or entry[0] > now)
            items: list[str] = list(entry[1]) if live and entry is not None else []
            if item is None:
                return items[-keep:]
            items = [*items[-(keep - 1) :], item] if keep > 1 else [item]
            self._data[key] = (now + ttl if ttl else 0.0, tuple(items))
            self._data.move_to_end(key)
            while len(self._data) > self.max_size:
                self._data.popitem(last=False)
                self.evictions += 1
        return items

    def add_clamped(
        self, key: Key, delta: float, low: float, high: float, ttl: float | None
    ) -> float:
        with self._lock:
            entry = self._data.get(key)
            now = time.monotonic()
            live = entry is not None and (not entry[0] or entry[0] > now)
            current = entry[1] if live and entry is not None else low
            value = min(high, max(low, current + delta))
            self._data[key] = (now + ttl if ttl else 0.0, value)
            self._data.move_to_end(key)
        return value

    # --- leases -----------------------------------------------------------------------------

    def _lease_key(self, key: Key) -> str:
        return f"\x00lease:{key!r}"

    def acquire_lease(self, key: Key, owner: str, ttl: float) -> bool:
        lease = self._lease_key(key)
        with self._lock:
            entry = self._data.get(lease)
            if entry is not None and entry[0] > time.monotonic():
                return False
            self._data[lease] = (time.monotonic() + ttl, owner)
        return True

    def extend_lease(self, key: Key, owner: str, ttl: float) -> bool:
        lease = self._lease_key(key)
        with self._lock:
            entry = self._data.get(lease)
            if entry is None or entry[1] != owner or entry[0] <= time.monotonic():
                return False
            self._data[lease] = (time.monotonic() + ttl, owner)
        return True

    def release_lease(self, key: Key, owner: str) -> bool:
        lease = self._lease_key(key)
        with self._lock:
            entry = self._data.get(lease)
            held = entry is not None and entry[1] == owner
            if held:
                del self._data[lease]
        self._notify(key)
        return held

    def set_and_release(self, key: Key, value: Any, ttl: float | None, owner: str) -> None:
        self.set(key, value, ttl)
        self.release_lease(key, owner)

    # --- idempotency records -------------------------------------------------------------

    def _live_record(self, key: Key, now: float) -> dict[str, Any] | None:
        rec = self._records.get(key)
        if rec is not None and rec["expires"] <= now:
            del self._records[key]
            return None
        return rec

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
        now = time.monotonic()
        # The replay path: a live completed record is read without the lock (one dict get is
        # atomic) and its Claim was built once, when it completed.
        rec = self._records.get(key)
        if (
            rec is not None
            and rec["state"] == COMPLETED
            and rec["fp"] == fingerprint
            and rec["expires"] > now
        ):
            return rec["claim"]  # type: ignore[no-any-return]
        with self._lock:
            rec = self._live_record(key, now)
            took_over = rec is not None
            taken = takeover
            if rec is not None:
                if rec["fp"] != fingerprint:
                    return Claim("mismatch")
                if rec["state"] == COMPLETED:
                    return Claim("completed", rec["fence"], rec["payload"])
                if rec["state"] == UNKNOWN:
                    return Claim("unknown", rec["fence"])
                if rec["lease"] > now:
                    return Claim("in_progress", rec["fence"], lease_left=rec["lease"] - now)
                # A write's owner vanished mid-call: it may have acted, unless it claimed
                # with a checkpoint and never reached it.
                taken = takeover or bool(rec.get("unstarted"))
                if not taken:
                    rec.update(state=UNKNOWN, expires=now + ttl, updated=time.time())
                    cut_off = Claim("unknown", rec["fence"], expired_now=True)
            if rec is None or taken:
                fence = self._fences.get(key, 0) + 1
                self._fences[key] = fence
                wall = time.time()
                self._records[key] = {
                    "meta": meta,
                    "created": wall if rec is None else rec.get("created", wall),
                    "updated": wall,
                    "state": IN_PROGRESS,
                    "fp": fingerprint,
                    "owner": owner,
                    "fence": fence,
                    "nonce": nonce,
                    # As every store: a takeover claim keeps no checkpoint.
                    "unstarted": checkpoint and not takeover,
                    "lease": now + lease,
                    "payload": None,
                    "expires": now + ttl,
                }
                self._records.move_to_end(key)
                while len(self._records) > self.max_size:
                    self._records.popitem(last=False)
                    self.evictions += 1
                return Claim("claimed", fence, takeover=took_over)
        self._notify(key)
        return cut_off

    def _with_fence(self, key: Key, fence: int, states: tuple[str, ...]) -> dict[str, Any] | None:
        rec = self._live_record(key, time.monotonic())
        if rec is None or rec["fence"] != fence or rec["state"] not in states:
            return None
        return rec

    def mark_started(self, key: Key, fence: int) -> bool:
        with self._lock:
            rec = self._with_fence(key, fence, (IN_PROGRESS,))
            if rec is None:
                return False
            rec["unstarted"] = False
        return True

    async def amark_started(self, key: Key, fence: int) -> bool:
        """The async form of :meth:`mark_started`."""
        return self.mark_started(key, fence)

    def heartbeat(self, key: Key, fence: int, lease: float) -> bool:
        with self._lock:
            rec = self._with_fence(key, fence, (IN_PROGRESS,))
            if rec is None:
                return False
            rec["lease"] = time.monotonic() + lease
        return True

    def complete(self, key: Key, fence: int, payload: Any, ttl: float) -> bool:
        with self._lock:
            rec = self._with_fence(key, fence, (IN_PROGRESS, UNKNOWN, COMPLETED))
            if rec is None:
                return False
            if rec["state"] == COMPLETED:
                return True  # this fence's completion, made before (as RedisStore's resend)
            payload = self._as_stored(key, payload)
            rec.update(
                state=COMPLETED,
                payload=payload,
                owner=None,
                expires=time.monotonic() + ttl,
                updated=time.time(),
                claim=Claim("completed", fence, payload),
            )
        self._notify(key)
        return True

    def release(self, key: Key, fence: int) -> bool:
        with self._lock:  # from UNKNOWN too: the owner knows it did not act
            rec = self._with_fence(key, fence, (IN_PROGRESS, UNKNOWN))
            if rec is not None:
                del self._records[key]
        self._notify(key)
        return rec is not None

    def abandon(self, key: Key, nonce: str) -> bool:
        with self._lock:
            rec = self._live_record(key, time.monotonic())
            found = (
                rec is not None
                and rec.get("nonce") == nonce
                and rec["state"] in (IN_PROGRESS, UNKNOWN)
            )
            if found:
                del self._records[key]
        self._notify(key)
        return found

    def mark_unknown(self, key: Key, fence: int, ttl: float) -> bool:
        with self._lock:
            rec = self._with_fence(key, fence, (IN_PROGRESS,))
            if rec is None:
                return False
            rec.update(state=UNKNOWN, expires=time.monotonic() + ttl, updated=time.time())
        self._notify(key)
        return True

    def resolve(
        self, key: Key, payload: Any, applied: bool, ttl: float, fence: int | None = None
    ) -> str | None:
        with self._lock:
            now = time.monotonic()
            rec = self._live_record(key, now)
            before = None if rec is None else str(rec["state"])
            if rec is not None and rec["state"] == IN_PROGRESS and rec["lease"] > now:
                return HELD  # its owner runs it: not settled by hand
            if rec is not None and fence is not None:
                if rec["state"] == COMPLETED:
                    return COMPLETED  # its late owner completed it meanwhile
                if rec["fence"] != fence:
                    return CHANGED  # another claim holds it now
            if rec is not None:
                if applied:
                    payload = self._as_stored(key, payload)
                    rec.update(
                        state=COMPLETED,
                        payload=payload,
                        owner=None,
                        expires=time.monotonic() + ttl,
                        updated=time.time(),
                        claim=Claim("completed", rec["fence"], payload),
                    )
                else:
                    del self._records[key]
        self._notify(key)
        return before

    def _as_stored(self, key: Key, payload: Any) -> Any:
        """``payload`` serialized and read back; StoreError for what cannot be kept."""
        codec = self._codec
        if codec is None:
            from ._codec import Codec

            codec = self._codec = Codec(self._serializer, "MemoryStore")
        return codec.load_result(codec.dump(payload), str(key))

    def record(self, key: Key) -> RecordView | None:
        with self._lock:
            now = time.monotonic()
            rec = self._live_record(key, now)
            return None if rec is None else self._view(key, rec, now)

    @staticmethod
    def _view(key: Key, rec: dict[str, Any], now: float) -> RecordView:
        return RecordView(
            rec["state"],
            rec["fp"],
            rec["fence"],
            rec["owner"],
            rec["payload"],
            meta=rec.get("meta"),
            created=rec.get("created"),
            updated=rec.get("updated"),
            lease_left=max(0.0, rec["lease"] - now) if rec["state"] == IN_PROGRESS else None,
            key=str(key),
        )

    def list_records(
        self, state: str | None = None, after: Cursor | None = None, limit: int = 50
    ) -> list[RecordView]:
        """Live records newest first (by first claim, then key), ``state`` only if given,
        those after the cursor ``after`` only: one page of at most ``limit``."""
        with self._lock:
            now = time.monotonic()
            found = [
                self._view(key, rec, now)
                for key, rec in self._records.items()
                if rec["expires"] > now and (state is None or rec["state"] == state)
            ]
        found.sort(key=lambda r: (r.created or 0.0, r.key or ""), reverse=True)
        if after is not None:
            found = [r for r in found if (r.created or 0.0, r.key or "") < after]
        return found[:limit]

    def purge_expired(self) -> int:
        """Drop the records whose time ran out; how many went."""
        with self._lock:
            now = time.monotonic()
            gone = [key for key, rec in self._records.items() if rec["expires"] <= now]
            for key in gone:
                del self._records[key]
        return len(gone)

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
        return self.claim(key, fingerprint, owner, lease, ttl, takeover, nonce, checkpoint, meta)

    async def aabandon(self, key: Key, nonce: str) -> bool:
        """The async form of :meth:`abandon`."""
        return self.abandon(key, nonce)

    async def aheartbeat(self, key: Key, fence: int, lease: float) -> bool:
        """The async form of :meth:`heartbeat`."""
        return self.heartbeat(key, fence, lease)

    async def acomplete(self, key: Key, fence: int, payload: Any, ttl: float) -> bool:
        """The async form of :meth:`complete`."""
        return self.complete(key, fence, payload, ttl)

    async def arelease(self, key: Key, fence: int) -> bool:
        """The async form of :meth:`release`."""
        return self.release(key, fence)

    async def amark_unknown(self, key: Key, fence: int, ttl: float) -> bool:
        """The async form of :meth:`mark_unknown`."""
        return self.mark_unknown(key, fence, ttl)

    # --- notifications ----------------------------------------------------------------------

    def _notify(self, key: Key) -> None:
        self._watchers.notify(key)

    def watch(self, key: Key) -> AbstractContextManager[Any]:
        """Woken by this store's changes of ``key`` (from any thread)."""
        return self._watchers.watch(key)

    # --- async forms: no I/O, so they run inline ----------------------------------------------

    async def aget(self, key: Key) -> Any:
        """The async form of :meth:`get`."""
        return self.get(key)

    async def aset(self, key: Key, value: Any, ttl: float | None) -> None:
        """The async form of :meth:`set`."""
        self.set(key, value, ttl)

    async def adelete(self, key: Key) -> bool:
        """The async form of :meth:`delete`."""
        return self.delete(key)

    async def aclear(self, prefix: str = "") -> int:
        """The async form of :meth:`clear`."""
        return self.clear(prefix)

    async def aincr(self, key: Key, amount: float, ttl: float | None) -> float:
        """The async form of :meth:`incr`."""
        return self.incr(key, amount, ttl)

    async def aadd_clamped(
        self, key: Key, delta: float, low: float, high: float, ttl: float | None
    ) -> float:
        """The async form of :meth:`add_clamped`."""
        return self.add_clamped(key, delta, low, high, ttl)

    async def arecent(self, key: Key, item: str | None, keep: int, ttl: float | None) -> list[str]:
        """The async form of :meth:`recent`."""
        return self.recent(key, item, keep, ttl)

    async def aacquire_lease(self, key: Key, owner: str, ttl: float) -> bool:
        """The async form of :meth:`acquire_lease`."""
        return self.acquire_lease(key, owner, ttl)

    async def aextend_lease(self, key: Key, owner: str, ttl: float) -> bool:
        """The async form of :meth:`extend_lease`."""
        return self.extend_lease(key, owner, ttl)

    async def arelease_lease(self, key: Key, owner: str) -> bool:
        """The async form of :meth:`release_lease`."""
        return self.release_lease(key, owner)

    async def aset_and_release(self, key: Key, value: Any, ttl: float | None, owner: str) -> None:
        """The async form of :meth:`set_and_release`."""
        self.set_and_release(key, value, ttl, owner)

    def awatch(self, key: Key) -> AbstractAsyncContextManager[Any]:
        return self._watchers.awatch(key)
