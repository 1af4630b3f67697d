"""What the stores share: fence tokens, key text, and in-process wake-ups for waiters (a database has no pub/sub of its own across SQLite
processes, and PostgreSQL's LISTEN needs a connection held per waiter)."""

from __future__ import annotations

import os
import random
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio

from ._base import MISS, Key
from ._records import IN_PROGRESS, Cursor, RecordView


def key_text(key: Key) -> str:
    """A store key as text (the in-process cache's bytes keys never reach a shared store,
    but a caller's may)."""
    return key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else key


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching keys that start with ``prefix`` (``\\`` escapes)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


#: The columns a record is read with, for :func:`record_view` (both SQL stores).
RECORD_COLUMNS = "key, state, fp, fence, owner, payload, meta, created, updated, lease"


def list_query(
    prefix: str, state: str | None, after: Cursor | None, limit: int, now: float, mark: str
) -> tuple[str, tuple[Any, ...]]:
    """One page of a store's live records newest first (``mark``: the driver's placeholder):
    an ordered range read of the (state,) created, key index, never a scan of the table."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10_000:
        raise ValueError(f"limit must be an int from 1 to 10000, got {limit!r}")
    where = [f"key LIKE {mark} ESCAPE '\\'", f"expires > {mark}"]
    args: list[Any] = [like_prefix(prefix), now]
    if state is not None:
        where.append(f"state = {mark}")
        args.append(state)
    if after is not None:
        where.append(f"(created, key) < ({mark}, {mark})")
        args.extend((float(after[0]), prefix + after[1]))
    sql = (
        f"SELECT {RECORD_COLUMNS} FROM retrysafe_records WHERE {' AND '.join(where)} "
        f"ORDER BY created DESC, key DESC LIMIT {limit}"
    )
    return sql, tuple(args)


def record_view(codec: Any, row: Any, prefix: str, now: float) -> RecordView:
    """A row of :data:`RECORD_COLUMNS` as a :class:`RecordView` (its key without the
    store's prefix; times in epoch seconds, None where unknown)."""
    key, state, fp, fence, owner, payload, meta, created, updated, lease = row
    loaded = codec.load(payload) if payload is not None else None
    return RecordView(
        state,
        fp,
        codec.fence(fence, key),
        owner,
        None if loaded is MISS else loaded,
        meta=meta,
        created=created or None,
        updated=updated or None,
        lease_left=max(0.0, lease - now) if state == IN_PROGRESS else None,
        key=key[len(prefix) :],
    )


# The random tails of fence tokens: a generator of this process's own, seeded from the
# operating system, and seeded again in every forked child (a fork would otherwise repeat
# its parent's draws, and two workers would share tails). Not `secrets`: a tail needs to be
# unlikely to repeat, not secret, and the system call per claim was a tenth of a replay's
# own time. Not the `random` module's generator either: applications seed that one.
_tails = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_tails.seed)


#: What forked children inherited from their parent's stores (pools, connections, clients):
#: kept referenced and never closed in the child, since closing would end the parent's
#: sessions over the sockets both share.
_INHERITED: list[Any] = []


def forgotten_in_child(forget: Callable[[Any], object]) -> weakref.WeakSet[Any]:
    """A set for a store class's live instances: in a forked child, ``forget(store)`` runs
    for each (it drops what belongs to the parent and returns it, to be kept unclosed)."""
    live: weakref.WeakSet[Any] = weakref.WeakSet()

    def run() -> None:
        for store in list(live):
            _INHERITED.append(forget(store))

    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=run)
    return live


def fence_nonce() -> str:
    """12 random digits: a claim's nonce, the tail of its fence token."""
    return f"{_tails.randrange(10**12):012d}"


def fence_token(counter: int, nonce: str | None = None) -> int:
    """The claim counter's digits followed by the claim's nonce (12 random digits): if the
    database loses its data and the counter starts over, a token still never repeats (as in
    RedisStore)."""
    return int(f"{counter}{nonce or fence_nonce()}")


class _Wake:
    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()


class LocalWatchers:
    """Wakes this process's waiters when this process changes a key; waiters in other
    processes sleep out their (short, growing) interval and look again: the polling
    fallback every store's waiters have."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[Key, set[_Wake]] = {}

    def notify(self, key: Key) -> None:
        group = self._waiting.get(key)
        if group:
            for wake in list(group):
                wake.event.set()

    def _add(self, key: Key) -> _Wake:
        wake = _Wake()
        with self._lock:
            self._waiting.setdefault(key, set()).add(wake)
        return wake

    def _remove(self, key: Key, wake: _Wake) -> None:
        with self._lock:
            group = self._waiting.get(key)
            if group is not None:
                group.discard(wake)
                if not group:
                    del self._waiting[key]

    @contextmanager
    def watch(self, key: Key) -> Iterator[_SyncWake]:
        wake = self._add(key)
        try:
            yield _SyncWake(wake)
        finally:
            self._remove(key, wake)

    @asynccontextmanager
    async def awatch(self, key: Key) -> AsyncIterator[_AsyncWake]:
        wake = self._add(key)
        try:
            yield _AsyncWake(wake)
        finally:
            self._remove(key, wake)


class _SyncWake:
    def __init__(self, wake: _Wake) -> None:
        self.wake = wake

    def wait(self, seconds: float) -> bool:
        return self.wake.event.wait(seconds)


class _AsyncWake:
    def __init__(self, wake: _Wake) -> None:
        self.wake = wake

    async def wait(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        delay = 0.002
        while not self.wake.event.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await anyio.sleep(min(delay, left))
            delay = min(delay * 2, 0.05)
        return True
