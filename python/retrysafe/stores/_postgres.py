"""PostgresStore: durable, replicated records and cache entries in PostgreSQL (psycopg 3).

Every operation is one statement, one round trip: the multi-step ones (a claim, a
completion) are PL/pgSQL functions created with the tables. A replay of a key this process
has seen completed is a bare read of the record by its primary key. Every time comes from the
server's clock (``clock_timestamp()``), never a client's. Waiters are woken by
``LISTEN``/``NOTIFY`` (sent when the change commits), and look again after a short, growing
interval if a notification is missed.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import TracebackType
from typing import Any

import anyio

from .._exceptions import StoreError
from .._identity import current_call, escape
from ._base import MISS, Key, rebuild
from ._codec import Codec
from ._records import COMPLETED, IN_PROGRESS, UNKNOWN, Claim, Cursor, RecordView
from ._sql import (
    RECORD_COLUMNS,
    LocalWatchers,
    fence_nonce,
    forgotten_in_child,
    key_text,
    like_prefix,
    list_query,
    record_view,
)
from ._urls import redact_url

__all__ = ["SCHEMA_SQL", "PostgresStore"]

#: Bumped when the tables or functions change; the store creates what is missing.
#: The server's clock is written inline as ``extract(epoch FROM clock_timestamp())``: a SQL
#: function wrapping it (version 1's ``retrysafe_now()``) cost ~30 us per statement.
#: Version 3: releases and abandoned claims also from UNKNOWN; resolve leaves a live owner's record.
#: Version 4: ``unstarted`` (a claim with a checkpoint its owner never reached is taken over
#: when its lease runs out); ``retrysafe_claim`` takes ``p_checkpoint`` (the 8-argument one of
#: version 3 stays for processes not yet upgraded).
#: Version 6: what operators list (``meta``: the tool and identity, ``created``, ``updated``,
#: and their indexes); ``retrysafe_claim`` takes ``p_meta`` (version 5's form stays).
SCHEMA_VERSION = 6

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS retrysafe_kv (
    key text PRIMARY KEY,
    value bytea,
    num double precision,
    owner text,
    items text[],
    expires double precision NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS retrysafe_records (
    key text PRIMARY KEY,
    state text NOT NULL,
    fp text NOT NULL,
    owner text,
    fence text NOT NULL,
    nonce text,
    lease double precision NOT NULL,
    payload bytea,
    expires double precision NOT NULL
);
ALTER TABLE retrysafe_records ADD COLUMN IF NOT EXISTS unstarted boolean NOT NULL DEFAULT false;
ALTER TABLE retrysafe_records ADD COLUMN IF NOT EXISTS meta text;
ALTER TABLE retrysafe_records ADD COLUMN IF NOT EXISTS created double precision NOT NULL DEFAULT 0;
ALTER TABLE retrysafe_records ADD COLUMN IF NOT EXISTS updated double precision NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS retrysafe_records_created ON retrysafe_records (created DESC, key DESC);
CREATE INDEX IF NOT EXISTS retrysafe_records_state
    ON retrysafe_records (state, created DESC, key DESC);
CREATE TABLE IF NOT EXISTS retrysafe_fences (key text PRIMARY KEY, counter bigint NOT NULL);
CREATE TABLE IF NOT EXISTS retrysafe_schema (version integer NOT NULL);

DROP FUNCTION IF EXISTS retrysafe_now();

CREATE OR REPLACE FUNCTION retrysafe_claim(
    p_key text, p_fp text, p_owner text, p_lease double precision, p_ttl double precision,
    p_takeover boolean, p_nonce text, p_channel text, p_checkpoint boolean, p_meta text
) RETURNS TABLE (status text, fence text, payload bytea, lease_left double precision,
                 took boolean, expired_now boolean)
LANGUAGE plpgsql AS $$
DECLARE
    now_ double precision := extract(epoch FROM clock_timestamp())::float8;
    rec retrysafe_records%ROWTYPE;
    counter_ bigint;
BEGIN
    -- The replay path: a completed record is read without a lock.
    SELECT * INTO rec FROM retrysafe_records r
     WHERE r.key = p_key AND r.state = 'completed' AND r.fp = p_fp AND r.expires > now_;
    IF FOUND THEN
        RETURN QUERY SELECT 'completed'::text, rec.fence, rec.payload, 0::float8, false, false;
        RETURN;
    END IF;
    -- Claims of one key queue on its fence row (it outlives the record).
    INSERT INTO retrysafe_fences AS f (key, counter) VALUES (p_key, 0)
        ON CONFLICT (key) DO NOTHING;
    SELECT f.counter INTO counter_ FROM retrysafe_fences f WHERE f.key = p_key FOR UPDATE;
    -- A claim its caller abandoned before this statement arrived: refused, never recorded.
    -- (Read under the fence row's lock, which retrysafe_abandon takes too: one of them is
    -- first, and the other sees what it did.)
    IF EXISTS (SELECT 1 FROM retrysafe_kv k WHERE k.key = p_key || E'\x1fabandoned\x1f' || p_nonce
               AND k.expires > now_) THEN
        RETURN QUERY SELECT 'abandoned'::text, NULL::text, NULL::bytea, 0::float8, false, false;
        RETURN;
    END IF;
    SELECT * INTO rec FROM retrysafe_records r WHERE r.key = p_key;
    IF FOUND AND rec.expires <= now_ THEN
        DELETE FROM retrysafe_records r WHERE r.key = p_key;
        rec := NULL;
    END IF;
    IF rec.key IS NOT NULL THEN
        IF rec.state = 'in_progress' AND rec.nonce = p_nonce THEN  -- this claim, resent
            RETURN QUERY SELECT 'claimed'::text, rec.fence, NULL::bytea, 0::float8, false, false;
            RETURN;
        END IF;
        IF rec.fp <> p_fp THEN
            RETURN QUERY SELECT 'mismatch'::text, rec.fence, NULL::bytea, 0::float8, false, false;
            RETURN;
        END IF;
        IF rec.state = 'completed' THEN
            RETURN QUERY SELECT 'completed'::text, rec.fence, rec.payload, 0::float8, false, false;
            RETURN;
        END IF;
        IF rec.state = 'unknown' THEN
            RETURN QUERY SELECT 'unknown'::text, rec.fence, NULL::bytea, 0::float8, false, false;
            RETURN;
        END IF;
        IF rec.lease > now_ THEN
            RETURN QUERY SELECT 'in_progress'::text, rec.fence, NULL::bytea, rec.lease - now_,
                                false, false;
            RETURN;
        END IF;
        -- A write's owner vanished mid-call: it may have acted, unless it claimed with a
        -- checkpoint and never reached it.
        IF NOT p_takeover AND NOT rec.unstarted THEN
            UPDATE retrysafe_records r SET state = 'unknown', expires = now_ + p_ttl,
                   updated = now_ WHERE r.key = p_key;
            PERFORM pg_notify(p_channel, p_key);
            RETURN QUERY SELECT 'unknown'::text, rec.fence, NULL::bytea, 0::float8, false, true;
            RETURN;
        END IF;
    END IF;
    UPDATE retrysafe_fences f SET counter = f.counter + 1 WHERE f.key = p_key
        RETURNING f.counter INTO counter_;
    -- A takeover keeps the record's first claim time (its attempts are its fence counter).
    INSERT INTO retrysafe_records AS r
        (key, state, fp, owner, fence, nonce, lease, payload, expires, unstarted, meta,
         created, updated)
        VALUES (p_key, 'in_progress', p_fp, p_owner, counter_::text || p_nonce, p_nonce,
                now_ + p_lease, NULL, now_ + p_ttl, p_checkpoint AND NOT p_takeover, p_meta,
                now_, now_)
        ON CONFLICT (key) DO UPDATE SET state = excluded.state, fp = excluded.fp,
            owner = excluded.owner, fence = excluded.fence, nonce = excluded.nonce,
            lease = excluded.lease, payload = NULL, expires = excluded.expires,
            unstarted = excluded.unstarted, meta = excluded.meta,
            created = CASE WHEN r.created > 0 THEN r.created ELSE excluded.created END,
            updated = excluded.updated;
    RETURN QUERY SELECT 'claimed'::text, counter_::text || p_nonce, NULL::bytea, 0::float8,
                        rec.key IS NOT NULL, false;
END $$;

-- Version 5's form (processes not yet upgraded): the same, with no metadata.
CREATE OR REPLACE FUNCTION retrysafe_claim(
    p_key text, p_fp text, p_owner text, p_lease double precision, p_ttl double precision,
    p_takeover boolean, p_nonce text, p_channel text, p_checkpoint boolean
) RETURNS TABLE (status text, fence text, payload bytea, lease_left double precision,
                 took boolean, expired_now boolean)
LANGUAGE sql AS $$
    SELECT * FROM retrysafe_claim(p_key, p_fp, p_owner, p_lease, p_ttl, p_takeover, p_nonce,
                                  p_channel, p_checkpoint, NULL::text)
$$;

CREATE OR REPLACE FUNCTION retrysafe_complete(
    p_key text, p_fence text, p_payload bytea, p_ttl double precision, p_channel text
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    now_ double precision := extract(epoch FROM clock_timestamp())::float8;
BEGIN
    UPDATE retrysafe_records r
       SET state = 'completed', payload = p_payload, owner = NULL, expires = now_ + p_ttl,
           updated = now_
     WHERE r.key = p_key AND r.fence = p_fence AND r.state IN ('in_progress', 'unknown')
       AND r.expires > now_;
    IF FOUND THEN
        PERFORM pg_notify(p_channel, p_key);
        RETURN true;
    END IF;
    -- This fence's completion made before (a resent operation, or one recorded in the
    -- application's own transaction) is done, not lost.
    RETURN EXISTS (SELECT 1 FROM retrysafe_records r
                    WHERE r.key = p_key AND r.fence = p_fence AND r.state = 'completed');
END $$;

CREATE OR REPLACE FUNCTION retrysafe_abandon(
    p_key text, p_nonce text, p_channel text
) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    now_ double precision := extract(epoch FROM clock_timestamp())::float8;
    gone_ integer;
BEGIN
    -- Under the key's fence row lock, as claims: a claim of this nonce that arrives later
    -- finds the tombstone (kept an hour), one that came first is removed here.
    INSERT INTO retrysafe_fences AS f (key, counter) VALUES (p_key, 0)
        ON CONFLICT (key) DO NOTHING;
    PERFORM 1 FROM retrysafe_fences f WHERE f.key = p_key FOR UPDATE;
    INSERT INTO retrysafe_kv (key, value, num, owner, items, expires)
        VALUES (p_key || E'\x1fabandoned\x1f' || p_nonce, NULL, NULL, NULL, NULL, now_ + 3600)
        ON CONFLICT (key) DO UPDATE SET expires = excluded.expires;
    DELETE FROM retrysafe_records r WHERE r.key = p_key AND r.nonce = p_nonce
        AND r.state IN ('in_progress', 'unknown');
    GET DIAGNOSTICS gone_ = ROW_COUNT;
    PERFORM pg_notify(p_channel, p_key);
    RETURN gone_;
END $$;

-- Settled by hand: COMPLETED with p_payload, or removed. A live owner's record is not (it
-- is running, not unknown). With p_fence (version 5: what an operator saw), only while that
-- claim holds it: never a newer claim's, never one its late owner completed.
CREATE OR REPLACE FUNCTION retrysafe_resolve(
    p_key text, p_payload bytea, p_applied boolean, p_ttl double precision, p_channel text,
    p_fence text
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    now_ double precision := extract(epoch FROM clock_timestamp())::float8;
    rec record;
BEGIN
    SELECT r.state, r.lease, r.fence INTO rec FROM retrysafe_records r
     WHERE r.key = p_key AND r.expires > now_ FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF rec.state = 'in_progress' AND rec.lease > now_ THEN
        RETURN 'held';
    END IF;
    IF p_fence IS NOT NULL THEN
        IF rec.state = 'completed' THEN
            RETURN 'completed';
        END IF;
        IF rec.fence <> p_fence THEN
            RETURN 'changed';
        END IF;
    END IF;
    IF p_applied THEN
        UPDATE retrysafe_records r SET state = 'completed', payload = p_payload, owner = NULL,
               expires = now_ + p_ttl, updated = now_ WHERE r.key = p_key;
    ELSE
        DELETE FROM retrysafe_records r WHERE r.key = p_key;
    END IF;
    PERFORM pg_notify(p_channel, p_key);
    RETURN rec.state;
END $$;

-- Version 4's form (processes not yet upgraded): the same, fenced on nothing.
CREATE OR REPLACE FUNCTION retrysafe_resolve(
    p_key text, p_payload bytea, p_applied boolean, p_ttl double precision, p_channel text
) RETURNS text LANGUAGE sql AS $$
    SELECT retrysafe_resolve(p_key, p_payload, p_applied, p_ttl, p_channel, NULL::text)
$$;

CREATE OR REPLACE FUNCTION retrysafe_tail(arr text[], keep integer) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT arr[greatest(1, coalesce(array_length(arr, 1), 0) - keep + 1):]
$$;
"""

# Live rows: a value's or a record's expiry is in the future (0: none).
#: The server's clock, in epoch seconds, inline in every statement.
_NOW = "extract(epoch FROM clock_timestamp())::float8"
_LIVE = "(expires = 0 OR expires > " + _NOW + ")"
_EXPIRES = "CASE WHEN %(ttl)s > 0 THEN " + _NOW + " + %(ttl)s ELSE 0 END"
# A claim reads a completed record first by a plain indexed read; only a miss runs the
# claim function (the one-time filter skips it otherwise). Either way: one statement, one
# round trip, so a fresh write's claim + complete is two.
_CLAIM = (
    "WITH hit AS (SELECT 'completed'::text AS status, fence, payload, 0::float8 AS lease_left, "
    "false AS took, false AS expired_now FROM retrysafe_records WHERE key = %(key)s "
    "AND state = 'completed' AND fp = %(fp)s AND expires > " + _NOW + ") "
    "SELECT * FROM hit UNION ALL SELECT * FROM retrysafe_claim(%(key)s, %(fp)s, %(owner)s, "
    "%(lease)s, %(ttl)s, %(takeover)s, %(nonce)s, %(channel)s, %(checkpoint)s, %(meta)s) "
    "WHERE NOT EXISTS (SELECT 1 FROM hit)"
)
# The replay of a key this process has seen completed: the same read alone, two parameters
# and two columns (a bare read by primary key). A miss falls back to _CLAIM.
_REPLAY = (
    "SELECT fence, payload FROM retrysafe_records WHERE key = %s AND state = 'completed' "
    "AND fp = %s AND expires > " + _NOW
)
# Keys remembered as completed, per store (then forgotten all at once: a hint, not a cache).
_SEEN_MAX = 4096
_LEASE_SUFFIX = "\x1flease"
_RECENT_SUFFIX = "\x1frecent"


class PostgresStore:
    """Records, cache entries, counters and leases in PostgreSQL: durable (what the server
    committed survives its crash), replicated when the server is, and shared by every
    machine that reaches it.

    ``dsn_or_pool``: a ``postgresql://`` URL (the store builds a psycopg connection pool,
    and under asyncio an async pool per event loop), or a ``psycopg_pool.ConnectionPool``
    you own (async callers then use it from a worker thread; so do trio callers). Keys are
    namespaced by ``prefix``. The tables and functions are created on first use (under an
    advisory lock) or ahead of time by ``retrysafe store init URL``; ``SCHEMA_SQL`` is the
    same SQL, for teams that run their own migrations.

    Each operation is one statement: a claim, a completion and a replay are one round trip
    each. Times come from the server's clock. A completion can also be written in the
    application's own transaction, with :meth:`transaction`, so that a charge and its record
    commit together. Every failure reaches callers as :class:`StoreError`.
    """

    shared = True
    durable = True

    def __init__(
        self,
        dsn_or_pool: Any,
        prefix: str = "retrysafe",
        *,
        serializer: Any = None,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 10.0,
        command_timeout: float | None = 10.0,
        create_schema: bool = True,
    ) -> None:
        try:
            import psycopg  # noqa: F401
            import psycopg_pool
        except ImportError as exc:
            raise ImportError(
                "PostgresStore needs psycopg 3 and psycopg-pool: pip install 'retrysafe[postgres]'"
            ) from exc
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix must be a non-empty str, got {prefix!r}")
        self.prefix = prefix
        self._escaped_prefix = escape(prefix, "a store prefix")
        self._codec = Codec(serializer, "PostgreSQL")
        digest = hashlib.sha256(prefix.encode()).hexdigest()[:16]
        self._channel = f"retrysafe_{digest}"
        self._sizes = (min_size, max_size)
        #: Seconds to wait for a pooled connection before the operation fails (StoreError).
        self.timeout = timeout
        if command_timeout is not None and (
            not isinstance(command_timeout, (int, float)) or command_timeout <= 0
        ):
            raise ValueError(
                f"command_timeout must be a positive number or None, got {command_timeout!r}"
            )
        #: Seconds one statement may wait for its reply before its connection is hung up and
        #: the operation fails (StoreError): a server cut off behind a middlebox that keeps
        #: the connection open never holds a caller longer. None: no limit.
        self.command_timeout = command_timeout
        #: The asyncio connections, by event loop: (loop, connections).
        self._async_pools: dict[int, tuple[Any, _LoopConnections]] = {}
        self._lock = threading.Lock()
        #: Set in a forked child (``os.register_at_fork``): the parent's pool is not ours.
        self._forked = False
        # Nothing is opened here: the pool and the schema come at first use, so a store built
        # at import or decoration time connects nowhere (Temporal's workflow sandbox, a
        # Celery module imported before the fork, a test collecting tools).
        self._pool_made: Any = None
        if isinstance(dsn_or_pool, str):
            self._dsn: str | None = dsn_or_pool
            self._own_pool = True
        elif isinstance(dsn_or_pool, psycopg_pool.ConnectionPool):
            self._dsn = None
            self._pool_made = dsn_or_pool
            self._own_pool = False
        else:
            raise TypeError(
                "PostgresStore takes a postgresql:// URL or a psycopg_pool.ConnectionPool, "
                f"got {dsn_or_pool!r}"
            )
        self._watchers = LocalWatchers()
        self._listener: _Listener | None = None
        #: Record keys this process saw completed: their replays take _REPLAY.
        self._seen: dict[str, None] = {}
        _LIVE_STORES.add(self)
        self._closed = False
        #: The schema is still to be checked (at first use; ``create_schema=False``: never).
        self._schema_wanted = create_schema
        #: The pool is open in this process and the schema checked: the fast path of _pool.
        self._ready = False
        self._options = {
            "serializer": serializer,
            "min_size": min_size,
            "max_size": max_size,
            "timeout": timeout,
            "command_timeout": command_timeout,
            "create_schema": create_schema,
        }

    def __repr__(self) -> str:
        return f"PostgresStore(prefix={self.prefix!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        """A store pickles by its URL (to a Ray task, a process pool): the process that loads
        it opens its own pool. One built on a pool you passed has no URL to travel by."""
        if self._dsn is None:
            raise TypeError(
                f"{self!r} was built on a psycopg pool and cannot be pickled: build it from a "
                "postgresql:// URL to send it to another process"
            )
        return (rebuild, (PostgresStore, (self._dsn, self.prefix), self._options))

    # --- connections ------------------------------------------------------------------------

    @property
    def _pool(self) -> Any:
        """The sync pool of this process, opened (and the schema checked) at first use. In a
        forked child (Celery's prefork pool, gunicorn, multiprocessing) the parent's pool and
        its connections stay the parent's: a child that used them interleaved its statements
        with the parent's on the same sockets (rows returned to the wrong caller); it opens
        its own."""
        if self._ready:
            return self._pool_made
        pool = self._open_pool()
        if self._schema_wanted:
            self._create_schema_on(pool)  # a StoreError leaves it wanted: the next use retries
            self._schema_wanted = False
        self._ready = True
        return pool

    def _open_pool(self) -> Any:
        import psycopg_pool

        with self._lock:
            if self._forked:
                if not self._own_pool:
                    raise StoreError(
                        "PostgresStore: the psycopg pool you passed was opened before this "
                        "process forked and cannot be shared with the parent; pass a "
                        "postgresql:// URL (the store opens a pool in each process) or build "
                        "the pool after the fork"
                    )
                self._forked = False
                self._pool_made = None
            if self._pool_made is None:
                if self._closed:
                    raise StoreError(f"{self!r} is closed")
                try:
                    self._pool_made = self._new_pool(psycopg_pool.ConnectionPool)
                except Exception as exc:  # a malformed URL: psycopg names the fault
                    raise StoreError(
                        f"PostgreSQL failed: cannot open a pool: {type(exc).__name__}: "
                        f"{redact_url(str(exc))}"
                    ) from exc
            return self._pool_made

    def _new_pool(self, cls: Any) -> Any:
        return cls(
            self._dsn,
            min_size=self._sizes[0],
            max_size=self._sizes[1],
            kwargs={"autocommit": True, "prepare_threshold": 0},
            open=True,
            timeout=self.timeout,
        )

    def _failed(self, exc: BaseException) -> StoreError:
        if type(exc).__name__ == "PoolTimeout":
            cause = self._why_no_connection()
            if cause is not None:
                return StoreError(f"PostgreSQL failed: no connection: {cause}")
        return StoreError(f"PostgreSQL failed: {type(exc).__name__}: {exc}".strip())

    def _no_reply(self) -> StoreError:
        return StoreError(
            f"PostgreSQL failed: no reply within {self.command_timeout:g} s (command_timeout); "
            "the connection was hung up"
        )

    def _why_no_connection(self) -> str | None:
        """Why the pool gets no connection (its PoolTimeout says only that it waited): one
        direct attempt, its failure named as authentication, TLS or an unreachable server.
        The message is psycopg's (host, port, user), never the password."""
        if self._dsn is None:
            return None
        import psycopg

        try:
            psycopg.connect(self._dsn, connect_timeout=max(1, round(min(self.timeout, 5)))).close()
        except psycopg.Error as probe:
            text = (str(probe).strip().splitlines() or [type(probe).__name__])[-1]
            state = getattr(getattr(probe, "diag", None), "sqlstate", None) or ""
            lowered = text.lower()
            if "ssl" in lowered or "certificate" in lowered or "tls" in lowered:
                kind = "TLS failed"
            elif state.startswith("28") or any(
                word in lowered
                for word in ("authentication", "password", "role ", "pg_hba", "permission denied")
            ):
                kind = "authentication failed"
            elif "fatal:" in lowered:  # the server answered, and refused
                kind = "server refused the connection"
            else:
                kind = "server unreachable"
            return f"{kind} ({redact_url(text)})"
        return None

    def _execute(self, sql: str, params: Any, fetch: str) -> Any:
        """One statement on a pooled connection. A connection found dead (the server
        restarted, a failover) is retried once on a fresh one, for every statement that is
        safe to resend (all but counters and list pushes, marked ``-once``: the functions
        recognise their own earlier effect, as RedisStore's scripts do)."""
        import psycopg
        import psycopg_pool

        fetch, once = _fetch_mode(fetch)
        for attempt in (1, 2):
            alarm = None
            try:
                with self._pool.connection() as conn:
                    if self.command_timeout is not None:
                        alarm = _WATCHDOG.arm(conn, self.command_timeout)
                    cursor = conn.execute(sql, params)
                    if fetch == "one":
                        found = cursor.fetchone()
                    elif fetch == "all":
                        found = cursor.fetchall()
                    else:
                        found = cursor.rowcount
                    if alarm is not None:
                        _WATCHDOG.disarm(alarm)
                    return found
            except psycopg.OperationalError as exc:
                if alarm is not None and _WATCHDOG.disarm(alarm):  # it fired: no resend
                    raise self._no_reply() from exc
                if once or attempt == 2:
                    raise self._failed(exc) from exc
                self._pool.check()  # drop the dead idle connections before the resend
            except (psycopg.Error, psycopg_pool.PoolTimeout, OSError) as exc:
                raise self._failed(exc) from exc
        raise AssertionError("unreachable")

    def _async_pool(self) -> _LoopConnections | None:
        """The asyncio connections of the running loop, or None (trio, or a pool you
        passed: their operations go through a worker thread and the sync pool)."""
        if self._dsn is None:
            return None
        try:
            import sniffio

            if sniffio.current_async_library() != "asyncio":
                return None
        except Exception:
            return None
        import asyncio

        loop = asyncio.get_running_loop()
        found = self._async_pools.get(id(loop))
        if found is not None and found[0] is loop:
            return found[1]
        with self._lock:
            for key, (old_loop, old) in list(self._async_pools.items()):
                if old_loop.is_closed():  # its loop ended: hang up its idle connections
                    old.hang_up()
                    del self._async_pools[key]
            made = _LoopConnections(self._dsn, self._sizes[1], self.timeout)
            self._async_pools[id(loop)] = (loop, made)
        return made

    async def _aexecute(self, sql: str, params: Any, fetch: str) -> Any:
        import psycopg

        if not self._ready:  # the schema first (once per process), from a worker thread
            await anyio.to_thread.run_sync(getattr, self, "_pool", abandon_on_cancel=True)
        pool = self._async_pool()
        if pool is None:
            return await anyio.to_thread.run_sync(
                self._execute, sql, params, fetch, abandon_on_cancel=True
            )
        fetch, once = _fetch_mode(fetch)
        limit = self.command_timeout
        for attempt in (1, 2):
            try:
                with anyio.CancelScope() as scope:
                    if limit is not None:
                        scope.deadline = anyio.current_time() + limit
                    async with pool.connection() as conn:  # hung up if cut off mid-statement
                        cursor = await conn.execute(sql, params)
                        if fetch == "one":
                            return await cursor.fetchone()
                        if fetch == "all":
                            return await cursor.fetchall()
                        return cursor.rowcount
                raise self._no_reply()  # the scope ran out
            except psycopg.OperationalError as exc:
                if once or attempt == 2:
                    raise self._failed(exc) from exc
                pool.hang_up()  # the server restarted: its idle connections are dead too
            except (psycopg.Error, OSError, TimeoutError) as exc:
                raise self._failed(exc) from exc
        raise AssertionError("unreachable")

    def create_schema(self) -> None:
        """Create the tables and functions if missing (idempotent; safe from many processes
        at once: an advisory lock serialises them). The store does it at its first use
        unless built with ``create_schema=False``."""
        self._create_schema_on(self._open_pool())
        self._schema_wanted = False

    def _create_schema_on(self, pool: Any) -> None:
        import psycopg
        import psycopg_pool

        try:
            with pool.connection() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(7402711)")
                current = None
                exists = conn.execute("SELECT to_regclass('retrysafe_schema')").fetchone()
                if exists is not None and exists[0] is not None:
                    row = conn.execute("SELECT max(version) FROM retrysafe_schema").fetchone()
                    current = row[0] if row else None
                if current != SCHEMA_VERSION:
                    conn.execute(SCHEMA_SQL, prepare=False)
                    conn.execute("DELETE FROM retrysafe_schema")
                    conn.execute(
                        "INSERT INTO retrysafe_schema (version) VALUES (%s)", (SCHEMA_VERSION,)
                    )
        except (psycopg.Error, psycopg_pool.PoolTimeout, OSError) as exc:
            raise self._failed(exc) from exc

    def close(self) -> None:
        """Stop the listener and close the pool this store built (a pool you passed in stays
        yours)."""
        with self._lock:
            listener, self._listener = self._listener, None
            loops, self._async_pools = self._async_pools, {}
        if listener is not None:
            listener.stop()
        for _, connections in loops.values():
            connections.hang_up()
        self._closed = True
        if self._own_pool and not self._forked and self._pool_made is not None:
            self._pool_made.close()

    async def aclose(self) -> None:
        """Close the current event loop's connections (the sync pool stays: ``close()``)."""
        found = self._async_pools.pop(_loop_id(), None)
        if found is not None:
            await found[1].aclose()

    # --- keys -------------------------------------------------------------------------------

    def _k(self, key: Key) -> str:
        # The prefix escaped (no raw ":" or "%"): "prod" never reaches "prod:eu"'s rows.
        return f"{self._escaped_prefix}:{key_text(key)}"

    # --- each operation: its statement, and what its result means ---------------------------

    def _op_get(self, key: Key) -> tuple[str, Any, str]:
        return (
            f"SELECT value FROM retrysafe_kv WHERE key = %s AND {_LIVE}",
            (self._k(key),),
            "one",
        )

    def _got(self, row: Any) -> Any:
        return MISS if row is None else self._codec.load(row[0])

    def _op_set(self, key: Key, value: Any, ttl: float | None) -> tuple[str, Any, str]:
        sql = (
            "WITH w AS (INSERT INTO retrysafe_kv (key, value, num, owner, items, expires) "
            f"VALUES (%(key)s, %(value)s, NULL, NULL, NULL, {_EXPIRES}) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, num = NULL, items = NULL, "
            "expires = excluded.expires RETURNING key) "
            "SELECT pg_notify(%(channel)s, %(key)s) FROM w"
        )
        params = {
            "key": self._k(key),
            "value": self._codec.dump(value),
            "ttl": ttl or 0.0,
            "channel": self._channel,
        }
        return sql, params, "none"

    def _op_delete(self, key: Key) -> tuple[str, Any, str]:
        return (f"DELETE FROM retrysafe_kv WHERE key = %s AND {_LIVE}", (self._k(key),), "count")

    def _op_clear(self, prefix: str) -> tuple[str, Any, str]:
        pattern = like_prefix(self._k(prefix))
        sql = (
            "WITH a AS (DELETE FROM retrysafe_kv WHERE key LIKE %(p)s RETURNING 1), "
            "b AS (DELETE FROM retrysafe_records WHERE key LIKE %(p)s RETURNING 1), "
            "c AS (DELETE FROM retrysafe_fences WHERE key LIKE %(p)s RETURNING 1) "
            "SELECT (SELECT count(*) FROM a) + (SELECT count(*) FROM b)"
        )
        return sql, {"p": pattern}, "one"

    def _op_incr(self, key: Key, amount: float, ttl: float | None) -> tuple[str, Any, str]:
        sql = (
            "INSERT INTO retrysafe_kv AS t (key, num, expires) "
            f"VALUES (%(key)s, %(amount)s, {_EXPIRES}) ON CONFLICT (key) DO UPDATE SET "
            "num = CASE WHEN t.expires = 0 OR t.expires > " + _NOW + " "
            "THEN coalesce(t.num, 0) + %(amount)s ELSE %(amount)s END, "
            "value = NULL, expires = excluded.expires RETURNING num"
        )
        return sql, {"key": self._k(key), "amount": amount, "ttl": ttl or 0.0}, "one-once"

    def _op_add_clamped(
        self, key: Key, delta: float, low: float, high: float, ttl: float | None
    ) -> tuple[str, Any, str]:
        sql = (
            "INSERT INTO retrysafe_kv AS t (key, num, expires) "
            f"VALUES (%(key)s, least(%(high)s, greatest(%(low)s, %(low)s + %(delta)s)), {_EXPIRES}) "
            "ON CONFLICT (key) DO UPDATE SET num = least(%(high)s, greatest(%(low)s, "
            "CASE WHEN t.expires = 0 OR t.expires > " + _NOW + " "
            "THEN coalesce(t.num, %(low)s) ELSE %(low)s END + %(delta)s)), "
            "value = NULL, expires = excluded.expires RETURNING num"
        )
        params = {"key": self._k(key), "delta": delta, "low": low, "high": high, "ttl": ttl or 0.0}
        return sql, params, "one-once"

    def _op_recent(
        self, key: Key, item: str | None, keep: int, ttl: float | None
    ) -> tuple[str, Any, str]:
        params = {
            "key": self._k(key) + _RECENT_SUFFIX,
            "item": item,
            "keep": keep,
            "ttl": ttl or 0.0,
        }
        if item is None:
            sql = (
                f"SELECT retrysafe_tail(items, %(keep)s) FROM retrysafe_kv "
                f"WHERE key = %(key)s AND {_LIVE}"
            )
            return sql, params, "one"
        sql = (
            "INSERT INTO retrysafe_kv AS t (key, items, expires) "
            f"VALUES (%(key)s, ARRAY[%(item)s::text], {_EXPIRES}) ON CONFLICT (key) DO UPDATE "
            "SET items = retrysafe_tail(CASE WHEN t.expires = 0 OR t.expires > " + _NOW + " "
            "THEN coalesce(t.items, '{}') ELSE '{}' END || %(item)s::text, %(keep)s), "
            "expires = excluded.expires RETURNING items"
        )
        return sql, params, "one-once"

    @staticmethod
    def _items(row: Any) -> list[str]:
        return [] if row is None or row[0] is None else list(row[0])

    def _op_acquire(self, key: Key, owner: str, ttl: float) -> tuple[str, Any, str]:
        sql = (
            "INSERT INTO retrysafe_kv AS t (key, owner, expires) "
            "VALUES (%(key)s, %(owner)s, " + _NOW + " + %(ttl)s) ON CONFLICT (key) DO UPDATE "
            "SET owner = excluded.owner, expires = excluded.expires "
            "WHERE t.expires <= " + _NOW + " OR t.owner = excluded.owner RETURNING 1"
        )
        return sql, {"key": self._k(key) + _LEASE_SUFFIX, "owner": owner, "ttl": ttl}, "one"

    def _op_extend(self, key: Key, owner: str, ttl: float) -> tuple[str, Any, str]:
        sql = (
            "UPDATE retrysafe_kv SET expires = " + _NOW + " + %(ttl)s "
            "WHERE key = %(key)s AND owner = %(owner)s AND expires > " + _NOW + " RETURNING 1"
        )
        return sql, {"key": self._k(key) + _LEASE_SUFFIX, "owner": owner, "ttl": ttl}, "one"

    def _op_release_lease(self, key: Key, owner: str) -> tuple[str, Any, str]:
        sql = (
            "WITH d AS (DELETE FROM retrysafe_kv WHERE key = %(lease)s AND owner = %(owner)s "
            "RETURNING 1) SELECT (SELECT count(*) FROM d), pg_notify(%(channel)s, %(key)s)"
        )
        params = {
            "lease": self._k(key) + _LEASE_SUFFIX,
            "owner": owner,
            "key": self._k(key),
            "channel": self._channel,
        }
        return sql, params, "one"

    def _op_set_and_release(
        self, key: Key, value: Any, ttl: float | None, owner: str
    ) -> tuple[str, Any, str]:
        sql = (
            "WITH w AS (INSERT INTO retrysafe_kv (key, value, num, owner, items, expires) "
            f"VALUES (%(key)s, %(value)s, NULL, NULL, NULL, {_EXPIRES}) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, num = NULL, items = NULL, "
            "expires = excluded.expires RETURNING key), "
            "d AS (DELETE FROM retrysafe_kv WHERE key = %(lease)s AND owner = %(owner)s) "
            "SELECT pg_notify(%(channel)s, %(key)s) FROM w"
        )
        params = {
            "key": self._k(key),
            "value": self._codec.dump(value),
            "ttl": ttl or 0.0,
            "lease": self._k(key) + _LEASE_SUFFIX,
            "owner": owner,
            "channel": self._channel,
        }
        return sql, params, "none"

    def _op_claim(
        self,
        k: str,
        fingerprint: str,
        owner: str,
        lease: float,
        ttl: float,
        takeover: bool,
        nonce: str | None,
        checkpoint: bool = False,
        meta: str | None = None,
    ) -> tuple[str, Any, str]:
        params = {
            "checkpoint": checkpoint,
            "meta": meta,
            "key": k,
            "fp": fingerprint,
            "owner": owner,
            "lease": lease,
            "ttl": ttl,
            "takeover": takeover,
            "nonce": nonce or fence_nonce(),
            "channel": self._channel,
        }
        return _CLAIM, params, "one"

    def _claimed(self, k: str, row: Any) -> Claim:
        status, fence, payload, lease_left, took, expired_now = row
        if status in ("mismatch", "abandoned"):
            return Claim(status)
        fence = self._codec.fence(fence, k)
        if status == COMPLETED:
            result = self._codec.load_result(payload, k)
            self._saw_completed(k)
            return Claim(COMPLETED, fence, result)
        if status == IN_PROGRESS:
            return Claim(IN_PROGRESS, fence, lease_left=float(lease_left))
        if status == UNKNOWN:
            return Claim(UNKNOWN, fence, expired_now=bool(expired_now))
        return Claim("claimed", fence, takeover=bool(took))

    def _saw_completed(self, k: str) -> None:
        seen = self._seen
        if len(seen) >= _SEEN_MAX:
            seen.clear()
        seen[k] = None

    def _replayed(self, k: str, row: Any) -> Claim | None:
        """The completed record a _REPLAY read, or None (gone, other arguments, expired:
        the claim statement says which)."""
        if row is None:
            self._seen.pop(k, None)
            return None
        return Claim(COMPLETED, self._codec.fence(row[0], k), self._codec.load_result(row[1], k))

    def _op_fenced(
        self, key: Key, fence: int, states: tuple[str, ...], change: str, params: dict[str, Any]
    ) -> tuple[str, Any, str]:
        sql = (
            f"WITH u AS (UPDATE retrysafe_records SET {change} WHERE key = %(key)s "
            "AND fence = %(fence)s AND state = ANY(%(states)s) AND expires > " + _NOW + " "
            "RETURNING 1) SELECT (SELECT count(*) FROM u), "
            "CASE WHEN (SELECT count(*) FROM u) > 0 THEN pg_notify(%(channel)s, %(key)s) END"
        )
        values = {
            **params,
            "key": self._k(key),
            "fence": str(fence),
            "states": list(states),
            "channel": self._channel,
        }
        return sql, values, "one"

    def _op_heartbeat(self, key: Key, fence: int, lease: float) -> tuple[str, Any, str]:
        return self._op_fenced(
            key, fence, (IN_PROGRESS,), "lease = " + _NOW + " + %(lease)s", {"lease": lease}
        )

    def _op_complete(self, key: Key, fence: int, payload: Any, ttl: float) -> tuple[str, Any, str]:
        sql = "SELECT retrysafe_complete(%s, %s, %s, %s, %s)"
        data = self._codec.dump(payload)
        return sql, (self._k(key), str(fence), data, ttl, self._channel), "one"

    def _completed(self, key: Key, row: Any) -> bool:
        done = bool(self._first(row))
        if done:
            self._saw_completed(self._k(key))
        return done

    def _op_release(self, key: Key, fence: int) -> tuple[str, Any, str]:
        # From UNKNOWN too: the owner knows it did not act.
        sql = (
            "WITH d AS (DELETE FROM retrysafe_records WHERE key = %(key)s AND fence = %(fence)s "
            "AND state IN ('in_progress', 'unknown') RETURNING 1) "
            "SELECT (SELECT count(*) FROM d), pg_notify(%(channel)s, %(key)s)"
        )
        return sql, {"key": self._k(key), "fence": str(fence), "channel": self._channel}, "one"

    def _op_abandon(self, key: Key, nonce: str) -> tuple[str, Any, str]:
        sql = "SELECT retrysafe_abandon(%s, %s, %s)"
        return sql, (self._k(key), nonce, self._channel), "one"

    def _op_mark_started(self, key: Key, fence: int) -> tuple[str, Any, str]:
        return self._op_fenced(key, fence, (IN_PROGRESS,), "unstarted = false", {})

    def _op_mark_unknown(self, key: Key, fence: int, ttl: float) -> tuple[str, Any, str]:
        return self._op_fenced(
            key,
            fence,
            (IN_PROGRESS,),
            "state = 'unknown', expires = " + _NOW + " + %(ttl)s, updated = " + _NOW,
            {"ttl": ttl},
        )

    @staticmethod
    def _counted(row: Any) -> bool:
        return row is not None and int(row[0]) > 0

    @staticmethod
    def _first(row: Any) -> Any:
        return None if row is None else row[0]

    # --- sync operations --------------------------------------------------------------------

    def _do(self, op: tuple[str, Any, str]) -> Any:
        return self._execute(*op)

    def get(self, key: Key) -> Any:
        return self._got(self._do(self._op_get(key)))

    def set(self, key: Key, value: Any, ttl: float | None) -> None:
        self._do(self._op_set(key, value, ttl))

    def delete(self, key: Key) -> bool:
        return int(self._do(self._op_delete(key))) > 0

    def clear(self, prefix: str = "") -> int:
        return int(self._first(self._do(self._op_clear(prefix))) or 0)

    def incr(self, key: Key, amount: float, ttl: float | None) -> float:
        return float(self._first(self._do(self._op_incr(key, amount, ttl))))

    def add_clamped(
        self, key: Key, delta: float, low: float, high: float, ttl: float | None
    ) -> float:
        return float(self._first(self._do(self._op_add_clamped(key, delta, low, high, ttl))))

    def recent(self, key: Key, item: str | None, keep: int, ttl: float | None) -> list[str]:
        return self._items(self._do(self._op_recent(key, item, keep, ttl)))

    def acquire_lease(self, key: Key, owner: str, ttl: float) -> bool:
        return self._do(self._op_acquire(key, owner, ttl)) is not None

    def extend_lease(self, key: Key, owner: str, ttl: float) -> bool:
        return self._do(self._op_extend(key, owner, ttl)) is not None

    def release_lease(self, key: Key, owner: str) -> bool:
        return self._counted(self._do(self._op_release_lease(key, owner)))

    def set_and_release(self, key: Key, value: Any, ttl: float | None, owner: str) -> None:
        self._do(self._op_set_and_release(key, value, ttl, owner))

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
        k = self._k(key)
        if k in self._seen:
            replayed = self._replayed(k, self._execute(_REPLAY, (k, fingerprint), "one"))
            if replayed is not None:
                return replayed
        op = self._op_claim(k, fingerprint, owner, lease, ttl, takeover, nonce, checkpoint, meta)
        return self._claimed(k, self._do(op))

    def heartbeat(self, key: Key, fence: int, lease: float) -> bool:
        return self._counted(self._do(self._op_heartbeat(key, fence, lease)))

    def complete(self, key: Key, fence: int, payload: Any, ttl: float) -> bool:
        return self._completed(key, self._do(self._op_complete(key, fence, payload, ttl)))

    def release(self, key: Key, fence: int) -> bool:
        return self._counted(self._do(self._op_release(key, fence)))

    def abandon(self, key: Key, nonce: str) -> bool:
        return self._counted(self._do(self._op_abandon(key, nonce)))

    def mark_unknown(self, key: Key, fence: int, ttl: float) -> bool:
        return self._counted(self._do(self._op_mark_unknown(key, fence, ttl)))

    def mark_started(self, key: Key, fence: int) -> bool:
        return self._counted(self._do(self._op_mark_started(key, fence)))

    def resolve(
        self, key: Key, payload: Any, applied: bool, ttl: float, fence: int | None = None
    ) -> str | None:
        data = self._codec.dump(payload) if applied else None
        row = self._execute(
            "SELECT retrysafe_resolve(%s, %s, %s, %s, %s, %s)",
            (
                self._k(key),
                data,
                applied,
                ttl,
                self._channel,
                None if fence is None else str(fence),
            ),
            "one",
        )
        before = self._first(row)
        return None if before is None else str(before)

    def record(self, key: Key) -> RecordView | None:
        row = self._execute(
            f"SELECT {RECORD_COLUMNS}, {_NOW} FROM retrysafe_records "
            "WHERE key = %s AND expires > " + _NOW,
            (self._k(key),),
            "one",
        )
        return None if row is None else record_view(self._codec, row[:-1], self._k(""), row[-1])

    def list_records(
        self, state: str | None = None, after: Cursor | None = None, limit: int = 50
    ) -> list[RecordView]:
        """Live records newest first (by first claim, then key), ``state`` only if given,
        those after the cursor ``after`` only: one page of at most ``limit`` (an indexed
        range read, as fast on a million records as on ten)."""
        now = self._first(self._execute("SELECT " + _NOW, (), "one"))
        sql, args = list_query(self._k(""), state, after, limit, now, "%s")
        rows = self._execute(sql, args, "all")
        return [record_view(self._codec, row, self._k(""), now) for row in rows]

    def keys(self, prefix: str, limit: int = 100_000) -> list[str]:
        """The keys of live values that start with ``prefix`` (at most ``limit``), for
        operators' counts: never values."""
        rows = self._execute(
            "SELECT key FROM retrysafe_kv WHERE key LIKE %s ESCAPE '\\' AND " + _LIVE + " LIMIT %s",
            (like_prefix(self._k(prefix)), limit),
            "all",
        )
        start = len(self._k(""))
        return [row[0][start:] for row in rows]

    def purge_expired(self) -> int:
        """Delete the records whose time ran out; how many went."""
        row = self._execute(
            "WITH d AS (DELETE FROM retrysafe_records WHERE key LIKE %s ESCAPE '\\' "
            "AND expires <= " + _NOW + " RETURNING 1) SELECT count(*) FROM d",
            (like_prefix(self._k("")),),
            "one",
        )
        return int(self._first(row) or 0)

    # --- async operations: the same statements ----------------------------------------------

    async def _ado(self, op: tuple[str, Any, str]) -> Any:
        return await self._aexecute(*op)

    async def aget(self, key: Key) -> Any:
        return self._got(await self._ado(self._op_get(key)))

    async def aset(self, key: Key, value: Any, ttl: float | None) -> None:
        await self._ado(self._op_set(key, value, ttl))

    async def adelete(self, key: Key) -> bool:
        return int(await self._ado(self._op_delete(key))) > 0

    async def aclear(self, prefix: str = "") -> int:
        return int(self._first(await self._ado(self._op_clear(prefix))) or 0)

    async def aincr(self, key: Key, amount: float, ttl: float | None) -> float:
        return float(self._first(await self._ado(self._op_incr(key, amount, ttl))))

    async def aadd_clamped(
        self, key: Key, delta: float, low: float, high: float, ttl: float | None
    ) -> float:
        row = await self._ado(self._op_add_clamped(key, delta, low, high, ttl))
        return float(self._first(row))

    async def arecent(self, key: Key, item: str | None, keep: int, ttl: float | None) -> list[str]:
        return self._items(await self._ado(self._op_recent(key, item, keep, ttl)))

    async def aacquire_lease(self, key: Key, owner: str, ttl: float) -> bool:
        return await self._ado(self._op_acquire(key, owner, ttl)) is not None

    async def aextend_lease(self, key: Key, owner: str, ttl: float) -> bool:
        return await self._ado(self._op_extend(key, owner, ttl)) is not None

    async def arelease_lease(self, key: Key, owner: str) -> bool:
        return self._counted(await self._ado(self._op_release_lease(key, owner)))

    async def aset_and_release(self, key: Key, value: Any, ttl: float | None, owner: str) -> None:
        await self._ado(self._op_set_and_release(key, value, ttl, owner))

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
        k = self._k(key)
        if k in self._seen:
            replayed = self._replayed(k, await self._aexecute(_REPLAY, (k, fingerprint), "one"))
            if replayed is not None:
                return replayed
        op = self._op_claim(k, fingerprint, owner, lease, ttl, takeover, nonce, checkpoint, meta)
        return self._claimed(k, await self._ado(op))

    async def aheartbeat(self, key: Key, fence: int, lease: float) -> bool:
        return self._counted(await self._ado(self._op_heartbeat(key, fence, lease)))

    async def acomplete(self, key: Key, fence: int, payload: Any, ttl: float) -> bool:
        return self._completed(key, await self._ado(self._op_complete(key, fence, payload, ttl)))

    async def arelease(self, key: Key, fence: int) -> bool:
        return self._counted(await self._ado(self._op_release(key, fence)))

    async def aabandon(self, key: Key, nonce: str) -> bool:
        return self._counted(await self._ado(self._op_abandon(key, nonce)))

    async def amark_unknown(self, key: Key, fence: int, ttl: float) -> bool:
        return self._counted(await self._ado(self._op_mark_unknown(key, fence, ttl)))

    async def amark_started(self, key: Key, fence: int) -> bool:
        return self._counted(await self._ado(self._op_mark_started(key, fence)))

    # --- waiting: LISTEN/NOTIFY, with polling when a notification is missed ----------------

    def _listening(self) -> LocalWatchers:
        """The process's waiters, woken by one listener thread per store that holds one
        connection (``LISTEN``) and relays each notification; started on the first wait."""
        with self._lock:
            if self._listener is None:
                self._listener = _Listener(self._dsn_for_listener(), self._channel, self._watchers)
        return self._watchers

    def _dsn_for_listener(self) -> str:
        if self._dsn is not None:
            return self._dsn
        return str(self._pool.conninfo)

    @contextmanager
    def watch(self, key: Key) -> Iterator[Any]:
        with self._listening().watch(self._k(key)) as watcher:
            yield watcher

    @asynccontextmanager
    async def awatch(self, key: Key) -> AsyncIterator[Any]:
        with self._lock:
            ready = self._listener is not None
        if not ready:  # connecting the listener blocks: not on the event loop
            await anyio.to_thread.run_sync(self._listening)
        async with self._watchers.awatch(self._k(key)) as watcher:
            yield watcher

    # --- the application's own transaction ---------------------------------------------------

    def transaction(self, conn: Any) -> OutcomeTransaction:
        """A transaction on the application's connection that also records the outcome of
        the ``@idempotent``/``@tool.write`` call running now, so that the side effect's
        rows and its record commit together (or neither does)::

            @tool.write(store=store)
            async def charge(order_id: str, amount: int) -> dict:
                async with await psycopg.AsyncConnection.connect(DSN) as conn:
                    async with store.transaction(conn) as tx:
                        await conn.execute("INSERT INTO charges ...", (...))
                        tx.result = {"order": order_id, "charged": amount}
                return tx.result

        ``with`` for a sync connection, ``async with`` for an async one. Set ``tx.result``
        to what the tool returns; it is stored as the call's result when the transaction
        commits. If the transaction rolls back (an exception leaves the block), nothing was
        applied: the call's record is released and the next call runs again, so keep every
        side effect of the tool inside the transaction. Outside a recorded call it is a
        plain transaction."""
        return OutcomeTransaction(self, conn)


class OutcomeTransaction:
    """See :meth:`PostgresStore.transaction`."""

    def __init__(self, store: PostgresStore, conn: Any) -> None:
        self.store = store
        self.conn = conn
        self.result: Any = None
        self._tx: Any = None

    @staticmethod
    def _call(store: PostgresStore) -> Any:
        """The recorded call running in this context on ``store``, or None."""
        state = current_call()
        if state is None or state.record is None or state.store is not store:
            return None
        return state

    def _completion(self) -> tuple[str, Any] | None:
        state = self._call(self.store)
        if state is None:
            return None
        record_key, fence, ttl = state.record
        sql, params, _ = self.store._op_complete(record_key, fence, self.result, ttl)
        return sql, params

    def _rolled_back(self) -> None:
        state = self._call(self.store)
        if state is not None:
            state.started = False  # the transaction undid the side effect: not applied

    def __enter__(self) -> OutcomeTransaction:
        self._tx = self.conn.transaction()
        self._tx.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if exc_type is None:
            completion = self._completion()
            if completion is not None:
                try:
                    self.conn.execute(*completion)
                except BaseException:
                    self._tx.__exit__(*_exc_info())
                    raise
        suppressed = bool(self._tx.__exit__(exc_type, exc, tb))
        if exc_type is not None:
            self._rolled_back()
        return suppressed

    async def __aenter__(self) -> OutcomeTransaction:
        self._tx = self.conn.transaction()
        await self._tx.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if exc_type is None:
            completion = self._completion()
            if completion is not None:
                try:
                    await self.conn.execute(*completion)
                except BaseException:
                    await self._tx.__aexit__(*_exc_info())
                    raise
        suppressed = bool(await self._tx.__aexit__(exc_type, exc, tb))
        if exc_type is not None:
            self._rolled_back()
        return suppressed


def _fetch_mode(fetch: str) -> tuple[str, bool]:
    """``("one", True)`` for ``"one-once"``: a statement not to resend (a counter, a push)."""
    if fetch.endswith("-once"):
        return fetch[: -len("-once")], True
    return fetch, False


def _exc_info() -> tuple[Any, Any, Any]:
    import sys

    return sys.exc_info()


class _LoopConnections:
    """The asyncio connections of one event loop: a stack of idle ones and at most
    ``max_size`` open, with no background task. (psycopg_pool's AsyncConnectionPool runs
    maintenance tasks; one of them could outlive its loop's end, and asyncio's shutdown then
    waited on it forever: a program hung at exit.) A connection cut off mid-statement is
    hung up, never reused."""

    def __init__(self, dsn: str, max_size: int, timeout: float) -> None:
        import asyncio

        self.dsn = dsn
        self.timeout = timeout
        self.idle: list[Any] = []
        self.slots = asyncio.Semaphore(max_size)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        import asyncio

        import psycopg

        try:
            await asyncio.wait_for(self.slots.acquire(), self.timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no PostgreSQL connection free after {self.timeout:g} s") from None
        conn = None
        try:
            while self.idle and conn is None:
                conn = self.idle.pop()
                if conn.closed:
                    conn = None
            if conn is None:
                conn = await psycopg.AsyncConnection.connect(
                    self.dsn,
                    autocommit=True,
                    prepare_threshold=0,
                    connect_timeout=max(1, round(self.timeout)),
                )
            yield conn
        except BaseException:
            if conn is not None:
                _hang_up(conn)  # mid-statement: its state is unknown
            raise
        else:
            if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                _hang_up(conn)
            else:
                self.idle.append(conn)
        finally:
            self.slots.release()

    def hang_up(self) -> None:
        """Close the idle connections at once, without the event loop (it may be over)."""
        idle, self.idle = self.idle, []
        for conn in idle:
            _hang_up(conn)

    async def aclose(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            await conn.close()

    def __del__(self) -> None:
        self.hang_up()  # connections a store dropped are closed, not left to warn


class _Watchdog:
    """Shuts down the socket of a sync connection whose statement outlived its time: the
    blocked read then fails at once (psycopg raises OperationalError, the pool discards the
    connection). One thread for the process, started on first use; arming and disarming is a
    heap push and a flag under a lock, so the common case costs a microsecond or two."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._heap: list[list[Any]] = []  # [deadline, sequence, connection, state]
        self._count = 0
        self._thread: threading.Thread | None = None

    def arm(self, conn: Any, seconds: float) -> list[Any]:
        import time

        with self._lock:
            self._count += 1
            alarm = [time.monotonic() + seconds, self._count, conn, "armed"]
            heapq.heappush(self._heap, alarm)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="retrysafe-pg-watchdog", daemon=True
                )
                self._thread.start()
            elif len(self._heap) == 1:
                self._lock.notify()
        return alarm

    def disarm(self, alarm: list[Any]) -> bool:
        """Stop the alarm; True if it had fired."""
        with self._lock:
            fired: bool = alarm[3] == "fired"
            alarm[3] = "done"
            alarm[2] = None
            return fired

    def _run(self) -> None:
        import time

        while True:
            with self._lock:
                while self._heap and self._heap[0][3] == "done":
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._lock.wait(1.0)
                    continue
                left = self._heap[0][0] - time.monotonic()
                if left > 0:
                    self._lock.wait(min(left, 1.0))
                    continue
                alarm = heapq.heappop(self._heap)
                alarm[3] = "fired"
                # Under the lock: the connection cannot go back to the pool (and to another
                # caller) before its socket is shut.
                _shut_down(alarm[2])


_WATCHDOG = _Watchdog()


def _shut_down(conn: Any) -> None:
    """Shut a connection's socket down in both directions (from another thread: the read
    blocked on it returns at once)."""
    import socket

    try:
        duplicate = socket.socket(fileno=os.dup(conn.fileno()))
    except Exception:  # already closed
        return
    try:
        duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        duplicate.close()


def _forget_parent(store: PostgresStore) -> object:
    inherited = (store._pool_made, store._async_pools, store._listener)
    store._async_pools = {}
    store._listener = None
    store._lock = threading.Lock()  # a parent's thread may have held it at the fork
    store._watchers = LocalWatchers()
    store._forked = True  # its own pool is opened on first use
    store._ready = False
    return inherited


def _new_watchdog() -> None:
    global _WATCHDOG
    _WATCHDOG = _Watchdog()  # its thread does not exist in a forked child


#: Every PostgresStore of this process, to be told of a fork.
_LIVE_STORES = forgotten_in_child(_forget_parent)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_watchdog)


def _hang_up(conn: Any) -> None:
    """Close a connection's socket synchronously (libpq's finish), from any context."""
    try:
        conn.pgconn.finish()
    except Exception:  # already gone
        pass


def _loop_id() -> int:
    try:
        import asyncio

        return id(asyncio.get_running_loop())
    except RuntimeError:
        return 0


class _Listener:
    """A daemon thread with one connection that LISTENs on a store's channel and wakes the
    process's waiters of each key notified. If the connection breaks it reconnects (after
    a growing pause); waiters meanwhile look again after their own short intervals."""

    def __init__(self, dsn: str, channel: str, watchers: LocalWatchers) -> None:
        self.dsn = dsn
        self.channel = channel
        self.watchers = watchers
        self.stopped = threading.Event()
        self.conn: Any = None
        self.thread = threading.Thread(target=self._run, name="retrysafe-pg-listener", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import psycopg

        pause = 0.1
        while not self.stopped.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                    self.conn = conn
                    conn.execute(f"LISTEN {self.channel}")
                    pause = 0.1
                    while not self.stopped.is_set():
                        for notice in conn.notifies(timeout=0.5):
                            self.watchers.notify(notice.payload)
            except Exception:  # the server went away: wait, then listen again
                self.conn = None
                self.stopped.wait(pause)
                pause = min(pause * 2, 2.0)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=2)
