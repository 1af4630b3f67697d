"""SQLiteStore: durable records, cache entries, counters and leases for the processes of
one machine, in one SQLite file."""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import anyio
import orjson

from .._exceptions import StoreError
from .._identity import escape
from ._base import MISS, Key, rebuild
from ._codec import Codec
from ._records import CHANGED, COMPLETED, HELD, IN_PROGRESS, UNKNOWN, Claim, Cursor, RecordView
from ._sql import (
    RECORD_COLUMNS,
    LocalWatchers,
    fence_token,
    forgotten_in_child,
    key_text,
    like_prefix,
    list_query,
    record_view,
)

__all__ = ["SQLiteStore"]

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS retrysafe_kv (
    key TEXT PRIMARY KEY, value, expires REAL NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS retrysafe_kv_expires ON retrysafe_kv (expires) WHERE expires > 0;
CREATE TABLE IF NOT EXISTS retrysafe_records (
    key TEXT PRIMARY KEY, state TEXT NOT NULL, fp TEXT NOT NULL, owner TEXT,
    fence TEXT NOT NULL, lease REAL NOT NULL, payload BLOB, expires REAL NOT NULL,
    unstarted INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS retrysafe_records_expires ON retrysafe_records (expires);
CREATE TABLE IF NOT EXISTS retrysafe_fences (
    key TEXT PRIMARY KEY, counter INTEGER NOT NULL
) WITHOUT ROWID;
"""
#: A sweep of expired rows runs on about one write in this many (no background thread).
SWEEP_EVERY = 256
_LEASE = "\x1flease"
_ABANDONED = "\x1fabandoned\x1f"
_RECENT = "\x1frecent"


class SQLiteStore:
    """Records, cache entries, counters and leases in one SQLite file, shared by every
    process of a machine and kept across crashes and restarts.

    - WAL mode; each operation is one short transaction (``BEGIN IMMEDIATE`` for writes, so
      two processes never deadlock upgrading a read lock); a busy database is waited for up
      to ``busy_timeout`` seconds, then the operation fails with :class:`StoreError` (caches
      fail open, records fail closed). No lock is held across a tool call.
    - ``synchronous="FULL"`` (default) makes every completed record survive a power loss as
      well as a crash; ``"NORMAL"`` survives a crash of the process, faster.
    - Each thread has its own connection; the async forms run the same operation in a
      worker thread, so the event loop never blocks on the file.
    - Times are the machine's wall clock, the same for every process on it.
    - Expired rows are swept by the writes themselves (about one in 256), and read as
      missing before that.
    - Waiters in this process are woken by this process's changes; waiters in other
      processes look again after a short, growing interval.

    Keys are namespaced by ``prefix``, so several applications can share one file.
    ``store="sqlite:///path/to/file.db"`` works wherever ``store=`` is taken (four slashes
    for an absolute path: ``sqlite:////var/lib/agent/retrysafe.db``).
    """

    shared = True
    durable = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        prefix: str = "retrysafe",
        busy_timeout: float = 10.0,
        synchronous: str = "FULL",
        serializer: Any = None,
    ) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}")
        if not isinstance(busy_timeout, (int, float)) or busy_timeout <= 0:
            raise ValueError(f"busy_timeout must be a positive number, got {busy_timeout!r}")
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix must be a non-empty str, got {prefix!r}")
        self.prefix = prefix
        self._escaped_prefix = escape(prefix, "a store prefix")
        self.path = os.fspath(path)
        if self.path == ":memory:":
            raise ValueError("SQLiteStore needs a file (use MemoryStore for one process)")
        self.busy_timeout = float(busy_timeout)
        self.synchronous = synchronous.upper()
        self._codec = Codec(serializer, f"SQLite at {self.path}")
        self._local = threading.local()
        self._connections: list[tuple[sqlite3.Connection, threading.Lock]] = []
        self._lock = threading.Lock()
        self._watchers = LocalWatchers()
        self._writes = 0
        self._closed = False
        _LIVE_STORES.add(self)
        # The file and its tables come at first use: a store built at import or decoration
        # time touches no disk (a sandbox, a module imported before a fork).
        self._schema_done = False
        self._setup_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, prefix: str = "retrysafe") -> SQLiteStore:
        """``sqlite:///relative/file.db`` or ``sqlite:////absolute/file.db``."""
        if not url.startswith("sqlite:///") or len(url) <= len("sqlite:///"):
            raise ValueError(
                f"not a SQLite URL: {url!r} (expected sqlite:///relative.db or "
                "sqlite:////absolute/path.db)"
            )
        return cls(url[len("sqlite:///") :], prefix=prefix)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r}, prefix={self.prefix!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        """A store pickles by its path: the process that loads it opens its own connections
        (to the same file: the processes of one machine)."""
        options = {
            "prefix": self.prefix,
            "busy_timeout": self.busy_timeout,
            "synchronous": self.synchronous,
            "serializer": self._codec.given,
        }
        return (rebuild, (SQLiteStore, (self.path,), options))

    def _k(self, key: Key) -> str:
        # The prefix escaped (no raw ":" or "%"): "prod" never reaches "prod:eu"'s rows.
        return f"{self._escaped_prefix}:{key_text(key)}"

    # --- connections and transactions -------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            if self._schema_done:
                self._wal(conn)
            else:
                # The first connections of this process (threads starting together) set the
                # file up one at a time.
                with self._setup_lock:
                    self._wal(conn)
                    if not self._schema_done:
                        conn.executescript(SCHEMA)
                        _add_columns(conn)
                        self._schema_done = True
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _wal(self, conn: sqlite3.Connection) -> None:
        """``journal_mode=WAL``: switching a new file needs it alone, and SQLite answers
        "database is locked" at once (no busy wait) while another connection, in this process
        or another, is setting the file up: retried until ``busy_timeout``."""
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.005
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.1)

    def _conn(self) -> tuple[sqlite3.Connection, threading.Lock]:
        found: tuple[sqlite3.Connection, threading.Lock] | None = getattr(self._local, "conn", None)
        if found is None:
            found = (self._connect(), threading.Lock())
            with self._lock:
                if self._closed:
                    found[0].close()
                    raise StoreError(f"{self!r} is closed")
                self._connections.append(found)
            self._local.conn = found
        return found

    def _with_connection(self, run: Callable[[sqlite3.Connection], T]) -> T:
        # Each connection is used under its lock (uncontended: a connection per thread), so
        # close() never closes one another thread is inside: sqlite3 would crash.
        try:
            conn, in_use = self._conn()
            with in_use:
                if self._closed:
                    raise StoreError(f"{self!r} is closed")
                return run(conn)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite at {self.path} failed: {type(exc).__name__}: {exc}") from exc

    def _read(self, sql: str, args: tuple[Any, ...]) -> Any:
        """One row of a single statement (autocommit: its own read transaction)."""
        return self._with_connection(lambda c: c.execute(sql, args).fetchone())

    def _write(self, run: Callable[[sqlite3.Connection, float], T]) -> T:
        """``run(conn, now)`` in one ``BEGIN IMMEDIATE`` transaction."""

        def transaction(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                now = time.time()
                result = run(conn, now)
                self._writes += 1
                if self._writes % SWEEP_EVERY == 0:
                    self._sweep(conn, now)
                conn.execute("COMMIT")
                return result
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        return self._with_connection(transaction)

    @staticmethod
    def _sweep(conn: sqlite3.Connection, now: float) -> None:
        conn.execute("DELETE FROM retrysafe_kv WHERE expires > 0 AND expires <= ?", (now,))
        conn.execute("DELETE FROM retrysafe_records WHERE expires <= ?", (now,))

    def close(self) -> None:
        """Close every connection this store opened (in any thread)."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn, in_use in connections:
            with in_use:  # waits for an operation in another thread to end
                try:
                    conn.close()
                except sqlite3.Error:
                    pass

    async def aclose(self) -> None:
        self.close()

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args), abandon_on_cancel=True)

    # --- values -----------------------------------------------------------------------------

    def get(self, key: Key) -> Any:
        row = self._read(
            "SELECT value FROM retrysafe_kv WHERE key = ? AND (expires = 0 OR expires > ?)",
            (self._k(key), time.time()),
        )
        return MISS if row is None else self._codec.load(row[0])

    def set(self, key: Key, value: Any, ttl: float | None) -> None:
        text, data = self._k(key), self._codec.dump(value)
        self._write(
            lambda c, now: c.execute(
                "INSERT OR REPLACE INTO retrysafe_kv (key, value, expires) VALUES (?, ?, ?)",
                (text, data, now + ttl if ttl else 0.0),
            )
        )
        self._watchers.notify(text)

    def delete(self, key: Key) -> bool:
        text = self._k(key)
        return self._write(
            lambda c, now: (
                c.execute(
                    "DELETE FROM retrysafe_kv WHERE key = ? AND (expires = 0 OR expires > ?)",
                    (text, now),
                ).rowcount
                > 0
            )
        )

    def clear(self, prefix: str = "") -> int:
        pattern = like_prefix(self._k(prefix))

        def run(conn: sqlite3.Connection, now: float) -> int:
            n = 0
            for table in ("retrysafe_kv", "retrysafe_records", "retrysafe_fences"):
                cursor = conn.execute(
                    f"DELETE FROM {table} WHERE key LIKE ? ESCAPE '\\'", (pattern,)
                )
                n += cursor.rowcount if table != "retrysafe_fences" else 0
            return n

        return self._write(run)

    def _number(self, conn: sqlite3.Connection, text: str, now: float) -> float | None:
        row = conn.execute(
            "SELECT value FROM retrysafe_kv WHERE key = ? AND (expires = 0 OR expires > ?)",
            (text, now),
        ).fetchone()
        if row is None:
            return None
        if isinstance(row[0], (int, float)):
            return float(row[0])
        raise StoreError(f"SQLiteStore: {text!r} holds a value, not a counter")

    def _put_number(
        self, conn: sqlite3.Connection, text: str, value: float, now: float, ttl: float | None
    ) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO retrysafe_kv (key, value, expires) VALUES (?, ?, ?)",
            (text, value, now + ttl if ttl else 0.0),
        )

    def incr(self, key: Key, amount: float, ttl: float | None) -> float:
        text = self._k(key)

        def run(conn: sqlite3.Connection, now: float) -> float:
            value = (self._number(conn, text, now) or 0.0) + amount
            self._put_number(conn, text, value, now, ttl)
            return value

        return self._write(run)

    def add_clamped(
        self, key: Key, delta: float, low: float, high: float, ttl: float | None
    ) -> float:
        text = self._k(key)

        def run(conn: sqlite3.Connection, now: float) -> float:
            current = self._number(conn, text, now)
            value = min(high, max(low, (low if current is None else current) + delta))
            self._put_number(conn, text, value, now, ttl)
            return value

        return self._write(run)

    def recent(self, key: Key, item: str | None, keep: int, ttl: float | None) -> list[str]:
        text = self._k(key) + _RECENT

        def run(conn: sqlite3.Connection, now: float) -> list[str]:
            row = conn.execute(
                "SELECT value FROM retrysafe_kv WHERE key = ? AND (expires = 0 OR expires > ?)",
                (text, now),
            ).fetchone()
            items: list[str] = orjson.loads(row[0]) if row is not None else []
            if item is None:
                return items[-keep:]
            items = [*items[-(keep - 1) :], item] if keep > 1 else [item]
            conn.execute(
                "INSERT OR REPLACE INTO retrysafe_kv (key, value, expires) VALUES (?, ?, ?)",
                (text, orjson.dumps(items).decode(), now + ttl if ttl else 0.0),
            )
            return items

        if item is None:
            return self._with_connection(lambda c: run(c, time.time()))
        return self._write(run)

    # --- leases -----------------------------------------------------------------------------

    def _lease_row(self, conn: sqlite3.Connection, text: str, now: float) -> str | None:
        row = conn.execute(
            "SELECT value FROM retrysafe_kv WHERE key = ? AND expires > ?", (text, now)
        ).fetchone()
        return None if row is None else str(row[0])

    def acquire_lease(self, key: Key, owner: str, ttl: float) -> bool:
        text = self._k(key) + _LEASE

        def run(conn: sqlite3.Connection, now: float) -> bool:
            holder = self._lease_row(conn, text, now)
            if holder is not None and holder != owner:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO retrysafe_kv (key, value, expires) VALUES (?, ?, ?)",
                (text, owner, now + ttl),
            )
            return True

        return self._write(run)

    def extend_lease(self, key: Key, owner: str, ttl: float) -> bool:
        text = self._k(key) + _LEASE
        return self._write(
            lambda c, now: (
                c.execute(
                    "UPDATE retrysafe_kv SET expires = ? WHERE key = ? AND value = ? AND expires > ?",
                    (now + ttl, text, owner, now),
                ).rowcount
                > 0
            )
        )

    def release_lease(self, key: Key, owner: str) -> bool:
        text = self._k(key)
        held = self._write(
            lambda c, now: (
                c.execute(
                    "DELETE FROM retrysafe_kv WHERE key = ? AND value = ?", (text + _LEASE, owner)
                ).rowcount
                > 0
            )
        )
        self._watchers.notify(text)
        return held

    def set_and_release(self, key: Key, value: Any, ttl: float | None, owner: str) -> None:
        text, data = self._k(key), self._codec.dump(value)

        def run(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO retrysafe_kv (key, value, expires) VALUES (?, ?, ?)",
                (text, data, now + ttl if ttl else 0.0),
            )
            conn.execute(
                "DELETE FROM retrysafe_kv WHERE key = ? AND value = ?", (text + _LEASE, owner)
            )

        self._write(run)
        self._watchers.notify(text)

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
        text = self._k(key)
        # The replay path: one read, no write lock.
        row = self._read(
            "SELECT fence, payload FROM retrysafe_records "
            "WHERE key = ? AND state = 'completed' AND fp = ? AND expires > ?",
            (text, fingerprint, time.time()),
        )
        if row is not None:
            return Claim(
                COMPLETED, self._codec.fence(row[0], text), self._codec.load_result(row[1], text)
            )

        def run(conn: sqlite3.Connection, now: float) -> Claim:
            if (
                nonce is not None
                and conn.execute(
                    "SELECT 1 FROM retrysafe_kv WHERE key = ? AND expires > ?",
                    (text + _ABANDONED + nonce, now),
                ).fetchone()
            ):
                return Claim("abandoned")  # its caller gave it up before it arrived
            rec = conn.execute(
                "SELECT state, fp, fence, lease, payload, unstarted, created "
                "FROM retrysafe_records WHERE key = ? AND expires > ?",
                (text, now),
            ).fetchone()
            if rec is not None:
                state, fp, fence, lease_until, payload, unstarted, _ = rec
                if state == IN_PROGRESS and nonce is not None and str(fence).endswith(nonce):
                    return Claim("claimed", self._codec.fence(fence, text))  # this claim, resent
                if fp != fingerprint:
                    return Claim("mismatch")
                fence = self._codec.fence(fence, text)
                if state == COMPLETED:
                    return Claim(COMPLETED, fence, self._codec.load_result(payload, text))
                if state == UNKNOWN:
                    return Claim(UNKNOWN, fence)
                if lease_until > now:
                    return Claim(IN_PROGRESS, fence, lease_left=lease_until - now)
                # A write's owner vanished mid-call: it may have acted, unless it claimed
                # with a checkpoint and never reached it.
                if not takeover and not unstarted:
                    conn.execute(
                        "UPDATE retrysafe_records SET state = ?, expires = ?, updated = ? "
                        "WHERE key = ?",
                        (UNKNOWN, now + ttl, now, text),
                    )
                    return Claim(UNKNOWN, int(fence), expired_now=True)
            counter = conn.execute(
                "INSERT INTO retrysafe_fences (key, counter) VALUES (?, 1) "
                "ON CONFLICT (key) DO UPDATE SET counter = counter + 1 RETURNING counter",
                (text,),
            ).fetchone()[0]
            fence = fence_token(int(counter), nonce)
            conn.execute(
                "INSERT OR REPLACE INTO retrysafe_records "
                "(key, state, fp, owner, fence, lease, payload, expires, unstarted, meta, "
                "created, updated) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?)",
                (
                    text,
                    IN_PROGRESS,
                    fingerprint,
                    owner,
                    str(fence),
                    now + lease,
                    now + ttl,
                    int(checkpoint and not takeover),
                    meta,
                    now if rec is None or not rec[6] else rec[6],
                    now,
                ),
            )
            return Claim("claimed", fence, takeover=rec is not None)

        claim = self._write(run)
        if claim.expired_now:
            self._watchers.notify(text)
        return claim

    def _fenced(
        self, key: Key, fence: int, states: tuple[str, ...], change: str, args: tuple[Any, ...]
    ) -> bool:
        """``UPDATE ... SET <change>`` on the live record ``fence`` holds in one of
        ``states``; True if it changed (the ``now`` placeholder is the first argument)."""
        text = self._k(key)
        marks = ", ".join("?" * len(states))

        def run(conn: sqlite3.Connection, now: float) -> bool:
            sql = (
                f"UPDATE retrysafe_records SET {change} "
                f"WHERE key = ? AND fence = ? AND state IN ({marks}) AND expires > ?"
            )
            values = [now + a.seconds if isinstance(a, _After) else a for a in args]
            return conn.execute(sql, (*values, text, str(fence), *states, now)).rowcount > 0

        changed = self._write(run)
        if changed:
            self._watchers.notify(text)
        return changed

    def mark_started(self, key: Key, fence: int) -> bool:
        return self._fenced(key, fence, (IN_PROGRESS,), "unstarted = 0", ())

    def heartbeat(self, key: Key, fence: int, lease: float) -> bool:
        return self._fenced(key, fence, (IN_PROGRESS,), "lease = ?", (_After(lease),))

    def complete(self, key: Key, fence: int, payload: Any, ttl: float) -> bool:
        data = self._codec.dump(payload)
        if self._fenced(
            key,
            fence,
            (IN_PROGRESS, UNKNOWN),
            "state = 'completed', payload = ?, owner = NULL, expires = ?, updated = ?",
            (data, _After(ttl), _After(0.0)),
        ):
            return True
        # This fence's completion made before (a retried operation) is done, not lost.
        row = self._read(
            "SELECT 1 FROM retrysafe_records WHERE key = ? AND fence = ? AND state = 'completed'",
            (self._k(key), str(fence)),
        )
        return row is not None

    def release(self, key: Key, fence: int) -> bool:
        text = self._k(key)
        released = self._write(
            lambda c, now: (
                c.execute(
                    "DELETE FROM retrysafe_records WHERE key = ? AND fence = ? AND state IN (?, ?)",
                    (text, str(fence), IN_PROGRESS, UNKNOWN),  # the owner knows it did not act
                ).rowcount
                > 0
            )
        )
        self._watchers.notify(text)
        return released

    def abandon(self, key: Key, nonce: str) -> bool:
        text = self._k(key)

        def run(conn: sqlite3.Connection, now: float) -> bool:
            # The nonce is remembered for an hour (a claim arriving after this is refused);
            # a fence token ends with its claim's nonce (12 digits).
            conn.execute(
                "INSERT OR REPLACE INTO retrysafe_kv (key, value, expires) VALUES (?, 1, ?)",
                (text + _ABANDONED + nonce, now + 3600),
            )
            return (
                conn.execute(
                    "DELETE FROM retrysafe_records WHERE key = ? AND substr(fence, -12) = ? "
                    "AND length(fence) > 12 AND state IN (?, ?)",
                    (text, nonce, IN_PROGRESS, UNKNOWN),
                ).rowcount
                > 0
            )

        abandoned = self._write(run)
        self._watchers.notify(text)
        return abandoned

    def mark_unknown(self, key: Key, fence: int, ttl: float) -> bool:
        return self._fenced(
            key,
            fence,
            (IN_PROGRESS,),
            "state = 'unknown', expires = ?, updated = ?",
            (_After(ttl), _After(0.0)),
        )

    def resolve(
        self, key: Key, payload: Any, applied: bool, ttl: float, fence: int | None = None
    ) -> str | None:
        text = self._k(key)
        data = self._codec.dump(payload) if applied else None

        def run(conn: sqlite3.Connection, now: float) -> str | None:
            row = conn.execute(
                "SELECT state, lease, fence FROM retrysafe_records WHERE key = ? AND expires > ?",
                (text, now),
            ).fetchone()
            if row is None:
                return None
            if row[0] == IN_PROGRESS and row[1] > now:
                return HELD  # its owner runs it: not settled by hand
            if fence is not None:
                if row[0] == COMPLETED:
                    return COMPLETED  # its late owner completed it meanwhile
                if str(row[2]) != str(fence):
                    return CHANGED  # another claim holds it now
            if applied:
                conn.execute(
                    "UPDATE retrysafe_records SET state = 'completed', payload = ?, owner = NULL, "
                    "expires = ?, updated = ? WHERE key = ?",
                    (data, now + ttl, now, text),
                )
            else:
                conn.execute("DELETE FROM retrysafe_records WHERE key = ?", (text,))
            return str(row[0])

        before = self._write(run)
        self._watchers.notify(text)
        return before

    def record(self, key: Key) -> RecordView | None:
        now = time.time()
        row = self._read(
            f"SELECT {RECORD_COLUMNS} FROM retrysafe_records WHERE key = ? AND expires > ?",
            (self._k(key), now),
        )
        return None if row is None else record_view(self._codec, row, self._k(""), now)

    def list_records(
        self, state: str | None = None, after: Cursor | None = None, limit: int = 50
    ) -> list[RecordView]:
        """Live records newest first (by first claim, then key), ``state`` only if given,
        those after the cursor ``after`` only: one page of at most ``limit`` (an indexed
        range read, as fast on a million records as on ten)."""
        now = time.time()
        sql, args = list_query(self._k(""), state, after, limit, now, "?")
        rows = self._with_connection(lambda c: c.execute(sql, args).fetchall())
        return [record_view(self._codec, row, self._k(""), now) for row in rows]

    def keys(self, prefix: str, limit: int = 100_000) -> list[str]:
        """The keys of live values that start with ``prefix`` (at most ``limit``), for
        operators' counts: never values."""
        rows = self._with_connection(
            lambda c: c.execute(
                "SELECT key FROM retrysafe_kv WHERE key LIKE ? ESCAPE '\\' "
                "AND (expires = 0 OR expires > ?) LIMIT ?",
                (like_prefix(self._k(prefix)), time.time(), limit),
            ).fetchall()
        )
        start = len(self._k(""))
        return [row[0][start:] for row in rows]

    def purge_expired(self) -> int:
        """Delete the records whose time ran out; how many went."""
        pattern = like_prefix(self._k(""))
        return self._write(
            lambda c, now: (
                c.execute(
                    "DELETE FROM retrysafe_records WHERE key LIKE ? ESCAPE '\\' AND expires <= ?",
                    (pattern, now),
                ).rowcount
            )
        )

    # --- waiting ----------------------------------------------------------------------------

    @contextmanager
    def watch(self, key: Key) -> Iterator[Any]:
        with self._watchers.watch(self._k(key)) as watcher:
            yield watcher

    @asynccontextmanager
    async def awatch(self, key: Key) -> AsyncIterator[Any]:
        async with self._watchers.awatch(self._k(key)) as watcher:
            yield watcher

    # --- async forms: the same operation in a worker thread -------------------------------

    async def aget(self, key: Key) -> Any:
        return await self._in_thread(self.get, key)

    async def aset(self, key: Key, value: Any, ttl: float | None) -> None:
        await self._in_thread(self.set, key, value, ttl)

    async def adelete(self, key: Key) -> bool:
        return await self._in_thread(self.delete, key)

    async def aclear(self, prefix: str = "") -> int:
        return await self._in_thread(self.clear, prefix)

    async def aincr(self, key: Key, amount: float, ttl: float | None) -> float:
        return await self._in_thread(self.incr, key, amount, ttl)

    async def aadd_clamped(
        self, key: Key, delta: float, low: float, high: float, ttl: float | None
    ) -> float:
        return await self._in_thread(self.add_clamped, key, delta, low, high, ttl)

    async def arecent(self, key: Key, item: str | None, keep: int, ttl: float | None) -> list[str]:
        return await self._in_thread(self.recent, key, item, keep, ttl)

    async def aacquire_lease(self, key: Key, owner: str, ttl: float) -> bool:
        return await self._in_thread(self.acquire_lease, key, owner, ttl)

    async def aextend_lease(self, key: Key, owner: str, ttl: float) -> bool:
        return await self._in_thread(self.extend_lease, key, owner, ttl)

    async def arelease_lease(self, key: Key, owner: str) -> bool:
        return await self._in_thread(self.release_lease, key, owner)

    async def aset_and_release(self, key: Key, value: Any, ttl: float | None, owner: str) -> None:
        await self._in_thread(self.set_and_release, key, value, ttl, owner)

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
        return await self._in_thread(
            self.claim, key, fingerprint, owner, lease, ttl, takeover, nonce, checkpoint, meta
        )

    async def amark_started(self, key: Key, fence: int) -> bool:
        return await self._in_thread(self.mark_started, key, fence)

    async def aabandon(self, key: Key, nonce: str) -> bool:
        return await self._in_thread(self.abandon, key, nonce)

    async def aheartbeat(self, key: Key, fence: int, lease: float) -> bool:
        return await self._in_thread(self.heartbeat, key, fence, lease)

    async def acomplete(self, key: Key, fence: int, payload: Any, ttl: float) -> bool:
        return await self._in_thread(self.complete, key, fence, payload, ttl)

    async def arelease(self, key: Key, fence: int) -> bool:
        return await self._in_thread(self.release, key, fence)

    async def amark_unknown(self, key: Key, fence: int, ttl: float) -> bool:
        return await self._in_thread(self.mark_unknown, key, fence, ttl)


_COLUMNS = {
    "unstarted": "INTEGER NOT NULL DEFAULT 0",
    "meta": "TEXT",
    "created": "REAL NOT NULL DEFAULT 0",
    "updated": "REAL NOT NULL DEFAULT 0",
}


def _add_columns(conn: sqlite3.Connection) -> None:
    """A file made by an earlier version lacks the later columns: add them (once; another
    process adding one at the same moment is fine), and the listing's indexes."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(retrysafe_records)")}
    for name, kind in _COLUMNS.items():
        if name in columns:
            continue
        try:
            conn.execute(f"ALTER TABLE retrysafe_records ADD COLUMN {name} {kind}")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):
                raise
    conn.execute(
        "CREATE INDEX IF NOT EXISTS retrysafe_records_created "
        "ON retrysafe_records (created DESC, key DESC)"
    )
    conn.execute(
        "CREATE INDEX IF NOT EXISTS retrysafe_records_state "
        "ON retrysafe_records (state, created DESC, key DESC)"
    )


def _forget_parent(store: SQLiteStore) -> object:
    # SQLite's rule: a connection never crosses a fork; the child opens its own.
    inherited = store._connections
    store._connections = []
    store._local = threading.local()
    store._lock = threading.Lock()  # a parent's thread may have held it at the fork
    store._setup_lock = threading.Lock()
    store._watchers = LocalWatchers()
    return inherited


#: Every SQLiteStore of this process, to be told of a fork.
_LIVE_STORES = forgotten_in_child(_forget_parent)


class _After:
    """A time ``seconds`` after the transaction's ``now`` (filled in inside it)."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
