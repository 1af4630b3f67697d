"""RedisStore: the shared store for swarms of processes on many machines."""

from __future__ import annotations

import asyncio as _asyncio
import contextvars
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import anyio

from .._exceptions import StoreError
from .._log import logger
from ._base import MISS, Key, rebuild
from ._codec import Codec, Serializer
from ._records import COMPLETED, IN_PROGRESS, UNKNOWN, Claim, Cursor, RecordView
from ._sql import fence_nonce, forgotten_in_child
from ._urls import redact_url

__all__ = ["RedisStore", "Serializer"]


# Safe to resend: the owner that already holds the lease gets it again.
_ACQUIRE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
local held = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  held = 1
end
redis.call('PUBLISH', ARGV[2], 'release')
return held
"""
_SET_RELEASE = """
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
if redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
redis.call('PUBLISH', ARGV[4], 'set')
return 1
"""
_INCR = """
local v = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return v
"""
# The newest item first in Redis; LTRIM keeps the last ARGV[2]. ARGV[1] empty: only read.
_RECENT = """
local keep = tonumber(ARGV[2])
if ARGV[1] ~= '' then
  redis.call('LPUSH', KEYS[1], ARGV[1])
  redis.call('LTRIM', KEYS[1], 0, keep - 1)
  if tonumber(ARGV[3]) > 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
  end
end
return redis.call('LRANGE', KEYS[1], 0, keep - 1)
"""
_ADD_CLAMPED = """
local v = tonumber(redis.call('GET', KEYS[1])) or tonumber(ARGV[2])
v = math.min(tonumber(ARGV[3]), math.max(tonumber(ARGV[2]), v + tonumber(ARGV[1])))
local text = string.format('%.17g', v)
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[1], text, 'PX', ARGV[4])
else
  redis.call('SET', KEYS[1], text)
end
return text
"""
# Idempotency records: a hash per record; the fence counter outlives it. Lease deadlines
# come from the server's clock (TIME), never the clients'. A fence token is the counter's
# digits followed by the claim's 12 random digits (ARGV[7], its nonce): if Redis loses its
# data (a restart without persistence, a failover) the counter starts over, but a token
# never repeats, so a stale owner can never complete a newer claim; every fenced write
# compares the whole token. Each script is safe to resend after a lost connection: a claim
# whose nonce is already recorded is that claim, a completion already made is reported done.
_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)"
_CLAIM = (
    _NOW
    + """
-- KEYS: record, fence, abandoned[, index, unknown index] | ARGV: fp, owner, lease_ms, ttl_ms,
-- takeover, channel, nonce, meta. takeover: '1' (an expired lease is taken over), '0' (it
-- turns UNKNOWN), 'c' (as '0', but the claim has a checkpoint: until mark_started,
-- 'unstarted' says it cannot have acted). The indexes (one server only: a cluster's script
-- reaches one slot) list records for operators, newest first; entries are hints, read back.
if redis.call('HEXISTS', KEYS[3], ARGV[7]) == 1 then return {'abandoned'} end
local state = redis.call('HGET', KEYS[1], 'state')
local took_over = 0
if state then
  if redis.call('HGET', KEYS[1], 'fp') ~= ARGV[1] then return {'mismatch'} end
  local fence = redis.call('HGET', KEYS[1], 'fence')
  if state == 'in_progress' and redis.call('HGET', KEYS[1], 'nonce') == ARGV[7] then
    return {'claimed', fence, redis.call('HGET', KEYS[1], 'took') or '0'}
  end
  if state == 'completed' then return {'completed', fence, redis.call('HGET', KEYS[1], 'payload')} end
  if state == 'unknown' then return {'unknown', fence} end
  local lease = tonumber(redis.call('HGET', KEYS[1], 'lease'))
  if lease > now then return {'in_progress', fence, tostring(lease - now)} end
  if ARGV[5] ~= '1' and redis.call('HGET', KEYS[1], 'unstarted') ~= '1' then
    redis.call('HSET', KEYS[1], 'state', 'unknown', 'updated', now)
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
    if KEYS[5] then
      redis.call('ZADD', KEYS[5], tonumber(redis.call('HGET', KEYS[1], 'created')) or now, KEYS[1])
    end
    redis.call('PUBLISH', ARGV[6], 'unknown')
    return {'unknown', fence, 'expired'}
  end
  took_over = 1
end
local created = now
if state then created = tonumber(redis.call('HGET', KEYS[1], 'created')) or now end
local fence = string.format('%d', redis.call('INCR', KEYS[2])) .. ARGV[7]
redis.call('PEXPIRE', KEYS[2], math.max(tonumber(ARGV[4]), 86400000) * 2)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'state', 'in_progress', 'fp', ARGV[1], 'owner', ARGV[2],
  'fence', fence, 'lease', now + tonumber(ARGV[3]), 'nonce', ARGV[7], 'took', took_over,
  'unstarted', ARGV[5] == 'c' and '1' or '0', 'created', created, 'updated', now)
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'meta', ARGV[8]) end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if KEYS[4] then redis.call('ZADD', KEYS[4], created, KEYS[1]) end
return {'claimed', fence, tostring(took_over)}
"""
)
_FENCED = """
local fence = redis.call('HGET', KEYS[1], 'fence')
local state = redis.call('HGET', KEYS[1], 'state')
if fence ~= ARGV[1] then return 0 end
"""
_HEARTBEAT = (
    _NOW
    + _FENCED
    + """
if state ~= 'in_progress' then return 0 end
redis.call('HSET', KEYS[1], 'lease', now + tonumber(ARGV[2]))
return 1
"""
)
_COMPLETE = (
    _NOW
    + _FENCED
    + """
-- ARGV: fence, payload, ttl_ms, channel
if state == 'completed' then return 1 end  -- this token's completion, resent
if state ~= 'in_progress' and state ~= 'unknown' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'completed', 'payload', ARGV[2], 'updated', now)
redis.call('HDEL', KEYS[1], 'owner', 'lease')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], 'completed')
return 1
"""
)
_RELEASE_RECORD = (
    _FENCED
    + """
-- ARGV: fence, channel. From UNKNOWN too: the owner knows it did not act.
if state ~= 'in_progress' and state ~= 'unknown' then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], 'released')
return 1
"""
)
# A claim whose caller never read the reply (lost, or the caller was cancelled): it never
# ran. Found by its nonce, in progress or turned UNKNOWN when its lease ran out; and the
# nonce is remembered for an hour, so the claim itself, if it arrives after this (held in
# a partitioned network), is refused instead of leaving a record nobody runs.
_ABANDON = """
-- KEYS: record, abandoned | ARGV: nonce, channel
redis.call('HSET', KEYS[2], ARGV[1], '1')
redis.call('PEXPIRE', KEYS[2], 3600000)
local state = redis.call('HGET', KEYS[1], 'state')
if redis.call('HGET', KEYS[1], 'nonce') ~= ARGV[1] then return 0 end
if state ~= 'in_progress' and state ~= 'unknown' then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], 'released')
return 1
"""
_MARK_UNKNOWN = (
    _NOW
    + _FENCED
    + """
-- KEYS: record[, unknown index] | ARGV: fence, ttl_ms, channel
if state ~= 'in_progress' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'unknown', 'updated', now)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if KEYS[2] then
  redis.call('ZADD', KEYS[2], tonumber(redis.call('HGET', KEYS[1], 'created')) or now, KEYS[1])
end
redis.call('PUBLISH', ARGV[3], 'unknown')
return 1
"""
)
_MARK_STARTED = (
    _FENCED
    + """
-- ARGV: fence
if state ~= 'in_progress' then return 0 end
redis.call('HSET', KEYS[1], 'unstarted', '0')
return 1
"""
)
_RESOLVE = (
    _NOW
    + """
-- ARGV: applied, payload, ttl_ms, channel, the fence an operator saw ('' for any). A live
-- owner's record is not settled by hand; a fenced one only while that claim still holds it.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return false end
if state == 'in_progress' and tonumber(redis.call('HGET', KEYS[1], 'lease')) > now then
  return 'held'
end
if ARGV[5] ~= '' then
  if state == 'completed' then return 'completed' end
  if redis.call('HGET', KEYS[1], 'fence') ~= ARGV[5] then return 'changed' end
end
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'state', 'completed', 'payload', ARGV[2], 'updated', now)
  redis.call('HDEL', KEYS[1], 'owner', 'lease')
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
redis.call('PUBLISH', ARGV[4], 'resolved')
return state
"""
)
# Index entries whose record is gone (or, in the UNKNOWN index, no longer UNKNOWN) are
# removed, each checked and removed in one step: a record turning UNKNOWN again meanwhile
# keeps its entry. KEYS: index, records... | ARGV: '1' for the UNKNOWN index.
_UNINDEX = """
local n = 0
for i = 2, #KEYS do
  local state = redis.call('HGET', KEYS[i], 'state')
  if not state or (ARGV[1] == '1' and state ~= 'unknown') then
    n = n + redis.call('ZREM', KEYS[1], KEYS[i])
  end
end
return n
"""
_SCRIPTS = {
    "acquire": _ACQUIRE,
    "extend": _EXTEND,
    "release": _RELEASE,
    "set_release": _SET_RELEASE,
    "incr": _INCR,
    "add_clamped": _ADD_CLAMPED,
    "recent": _RECENT,
    "claim": _CLAIM,
    "heartbeat": _HEARTBEAT,
    "complete": _COMPLETE,
    "release_record": _RELEASE_RECORD,
    "abandon": _ABANDON,
    "mark_unknown": _MARK_UNKNOWN,
    "mark_started": _MARK_STARTED,
    "resolve": _RESOLVE,
    "unindex": _UNINDEX,
}

# Connection settings carried from one client to a client of the other kind.
_PORTABLE = (
    "host",
    "port",
    "db",
    "username",
    "password",
    "socket_timeout",
    "socket_connect_timeout",
    "socket_keepalive",
    "client_name",
    "protocol",
    "path",
)


def _accepted(cls: Any, ssl_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The TLS settings of a sync client that ``cls`` (an asyncio twin) takes: redis.asyncio
    has no OCSP options (``ssl_validate_ocsp_stapled``...), and refuses them."""
    import inspect

    taken = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in ssl_kwargs.items() if k in taken}


def _evalsha(script: Any, keys: list[str], args: list[Any]) -> tuple[Any, ...]:
    """The raw command that runs a registered ``script`` (a batch sends it as it is)."""
    return ("EVALSHA", script.sha, len(keys), *keys, *args)


def _glob_literal(text: str) -> str:
    """``text`` as a literal in a Redis glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class _Batcher:
    """Commands of concurrent tasks on one event loop, sent together while others are in
    flight. A command sent while none is in flight goes out at once, as it would without
    batching (one task alone pays nothing). Sent while one is, it is queued: the first one
    queued schedules a flush for the loop's next turn, which sends every command queued by
    then in one pipeline (``transaction=False``: each command stays its own, and each
    script its own atomic step) and hands each caller its own reply or error. A reply that
    is an error fails its caller only; a broken connection fails the batch's callers, and
    each resends on its own (``RedisStore._run``). A caller cancelled before its flush is
    never sent. Several flushes may be in flight at once, each on its own connection; past
    ``_MAX`` commands queued, a second flush takes the rest.

    Auto-pipelining, as ioredis and the Go clients do it: concurrent tasks share round
    trips, and the loop wakes once per batch, not once per reply."""

    _MAX = 256

    __slots__ = (
        "_busy",
        "_client",
        "_flushing",
        "_gate",
        "_limit",
        "_loop",
        "_queued",
        "_replicated",
    )

    def __init__(
        self,
        client: Any,
        gate: _asyncio.Semaphore,
        limit: float | None,
        replicated: Callable[[Any], None] | None = None,
    ) -> None:
        self._client = client
        self._gate = gate
        self._limit = limit  # seconds one send may take (None: the client keeps its own)
        #: Told the reply of the WAIT that ends a batch of writes that asked for one.
        self._replicated = replicated
        self._loop = _asyncio.get_running_loop()
        self._queued: list[tuple[tuple[Any, ...], _asyncio.Future[Any], bool]] = []
        self._busy = 0  # commands and flushes in flight
        self._flushing: set[_asyncio.Task[None]] = set()  # (the loop holds tasks weakly)

    async def run(self, command: tuple[Any, ...], wait: bool = False) -> Any:
        """``command``'s reply (raises what the command raised). ``wait``: a write whose
        reply must wait until a replica has it: its batch ends with one ``WAIT``, on the
        connection that sent it, which covers every write before it."""
        if self._busy or self._queued:
            future = self._loop.create_future()
            queued = self._queued
            queued.append((command, future, wait))
            if len(queued) == 1:
                self._schedule()
            return await future
        reply = (await self._exchange([command], wait))[0]
        if isinstance(reply, Exception):  # (a reply of a pipeline)
            raise reply
        return reply

    async def _exchange(self, commands: list[tuple[Any, ...]], wait: bool) -> list[Any]:
        """``commands`` sent and their replies read, counted in flight, within the gate and
        the time limit."""
        self._busy += 1
        try:
            async with self._gate:
                if self._limit is None:
                    return await self._send(commands, wait)
                with anyio.fail_after(self._limit):
                    return await self._send(commands, wait)
        finally:
            self._busy -= 1

    def _schedule(self) -> None:
        """A flush at the loop's next turn, in a context of its own: it serves many callers
        (no caller's context variables, a trace's span among them, reach it)."""
        task = contextvars.Context().run(self._loop.create_task, self._flush())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _send(self, commands: list[tuple[Any, ...]], wait: bool) -> list[Any]:
        if len(commands) == 1 and not wait:
            return [await self._client.execute_command(*commands[0])]
        # (A cluster's pipeline sends each node its part, concurrently.)
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        if wait:
            pipe.execute_command("WAIT", 1, RedisStore._WAIT_MS)
        replies = list(await pipe.execute(raise_on_error=False))
        if wait:
            acked = replies.pop()
            if self._replicated is not None:
                self._replicated(acked)
        return replies

    async def _flush(self) -> None:
        queued = self._queued
        batch = [(c, f, w) for c, f, w in queued[: self._MAX] if not f.done()]
        del queued[: self._MAX]
        if queued:
            self._schedule()
        if not batch:
            return
        try:
            replies = await self._exchange([c for c, _, _ in batch], any(w for _, _, w in batch))
        except BaseException as exc:  # the batch failed as a whole: every caller hears it
            for _, future, _ in batch:
                if not future.done():
                    if isinstance(exc, _asyncio.CancelledError):
                        future.cancel()
                    else:
                        future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future, _), reply in zip(batch, replies, strict=True):
            if not future.done():
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)


class _ThreadBatcher(_Batcher):
    """A :class:`_Batcher` whose batches run in a worker thread through ``many`` (a list of
    commands in, their replies or errors in the same places out): a cluster's record
    writes, which must each be followed by a ``WAIT`` on the connection that wrote them,
    and which the asyncio cluster client cannot send so. Concurrent writes of the loop
    share one thread hop and, per node, one round trip and one ``WAIT``."""

    __slots__ = ("_many",)

    def __init__(
        self,
        many: Callable[[list[Any]], list[Any]],
        gate: _asyncio.Semaphore,
        limit: float | None,
    ) -> None:
        super().__init__(None, gate, limit)
        self._many = many

    async def _send(self, commands: list[Any], wait: bool) -> list[Any]:
        # Left to finish on cancel, as a single write's thread was: its callers hear the
        # cancellation, and the scripts' fences and nonces make any resend safe.
        return await anyio.to_thread.run_sync(self._many, commands, abandon_on_cancel=True)


@dataclass
class _LoopClient:
    client: Any
    scripts: dict[str, Any]
    gate: _asyncio.Semaphore
    #: Reads of concurrent tasks, sent together (a cluster's pipeline splits them by node).
    reads: _Batcher
    #: Seconds a command may take, kept by the store (None: the client keeps it, or none).
    limit: float | None = None
    #: All commands of concurrent tasks, sent together: one server only (a cluster client's
    #: pipeline resends commands a node redirected, which only reads may be).
    batch: _Batcher | None = None
    #: A cluster's record writes of concurrent tasks, sent together from a worker thread,
    #: one pipeline per node that a WAIT ends (:meth:`RedisStore._replicated_many`).
    writes: _ThreadBatcher | None = None


def _import_redis() -> Any:
    try:
        import redis
        import redis.asyncio
        import redis.asyncio.cluster
        import redis.asyncio.retry
        import redis.backoff
        import redis.cluster
        import redis.retry
    except ImportError as exc:  # pragma: no cover - exercised without redis installed
        raise ImportError(
            "RedisStore needs redis-py: install it with `pip install 'retrysafe[redis]'`"
        ) from exc
    return redis


#: Keys remembered as completed, per store (then forgotten all at once: a hint).
_SEEN_MAX = 4096


def _seconds(ms: Any) -> float | None:
    """A stored time in milliseconds as epoch seconds (None: not stored)."""
    return int(ms) / 1000 if ms else None


def _ms(seconds: float | None) -> int:
    return 0 if not seconds else max(1, int(seconds * 1000))


def _oldest_first(raw: Any) -> list[str]:
    """A LRANGE reply of the ``recent`` script (newest first) as str, oldest first."""
    return [i.decode() if isinstance(i, bytes) else str(i) for i in reversed(raw or [])]


def _persistent(appendonly: Any, save: Any) -> bool:
    """From ``CONFIG GET appendonly`` and ``save`` replies (a cluster client answers per
    node, {node: {...}}): True when every node persists its data."""

    def per_node(reply: Any) -> list[dict[Any, Any]]:
        if isinstance(reply, dict) and reply and all(isinstance(v, dict) for v in reply.values()):
            return list(reply.values())
        return [reply if isinstance(reply, dict) else {}]

    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value or "")

    nodes = zip(per_node(appendonly), per_node(save), strict=False)
    return all(
        text(a.get("appendonly", a.get(b"appendonly"))) == "yes"
        or text(s.get("save", s.get(b"save"))).strip() != ""
        for a, s in nodes
    )


def _failed(store: Any, exc: BaseException) -> StoreError:
    """The StoreError for any failure of the client library: Redis errors, and the library's
    own bugs (a cold asyncio cluster client has raised AttributeError), so that a cache fails
    open and a record fails closed for every caller."""
    hint = ""
    moved = type(exc).__name__ in ("MovedError", "AskError") or "MOVED" in str(exc)
    if moved and getattr(store, "_cluster", None) is None:
        # A plain URL to one node of a cluster: most keys live on other nodes.
        hint = " (this server is a Redis Cluster node: use a redis+cluster:// URL)"
    return StoreError(f"Redis at {store._describe()} failed: {type(exc).__name__}: {exc}{hint}")


# A watcher only shortens a waiter's sleep between two claims. If its pub/sub connection
# fails (a failover, a node closing it), the waiter sleeps out the interval instead (polling)
# and its next claim, a real store operation, reports the store's state: a StoreError if it
# is down, so that caches fail open and records fail closed for waiters as for leaders.


class _SyncWatcher:
    def __init__(self, pubsub: Any) -> None:
        self.pubsub = pubsub
        self.broken = False

    def wait(self, seconds: float) -> bool:
        import time

        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self.broken:
                time.sleep(left)
                return False
            try:
                message = self.pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            except Exception:
                self.broken = True
                continue
            if message is not None and message.get("type") == "message":
                return True


class _AsyncWatcher:
    def __init__(self, pubsub: Any) -> None:
        self.pubsub = pubsub
        self.broken = False

    async def wait(self, seconds: float) -> bool:
        with anyio.move_on_after(seconds):
            while True:
                if self.broken:
                    await anyio.sleep(seconds)
                try:
                    message = await self.pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=seconds
                    )
                except Exception:
                    self.broken = True
                    continue
                if message is not None and message.get("type") == "message":
                    return True
        return False


class _PollWatcher:
    """No notification: the waiter sleeps out its interval and claims again."""

    async def wait(self, seconds: float) -> bool:
        await anyio.sleep(seconds)
        return False


class _ThreadWatcher:
    def __init__(self, inner: _SyncWatcher) -> None:
        self.inner = inner

    async def wait(self, seconds: float) -> bool:
        return await anyio.to_thread.run_sync(self.inner.wait, seconds, abandon_on_cancel=True)


def _forget_parent(store: RedisStore) -> object:
    # redis-py's sync pools reset themselves in a child (they check the pid); the per-loop
    # asyncio clients are this store's: the child builds its own.
    inherited = store._async
    store._async = {}
    store._lock = threading.Lock()
    return inherited


#: Every RedisStore of this process, to be told of a fork.
_LIVE_STORES = forgotten_in_child(_forget_parent)


class RedisStore:
    """A store in Redis (standalone, Sentinel or Cluster), shared by every process using it.

    ``client_or_url``: a ``redis.Redis`` (Sentinel's ``master_for`` gives one), a
    ``redis.asyncio.Redis``, a ``redis.cluster.RedisCluster``, a
    ``redis.asyncio.cluster.RedisCluster``, or a URL: ``redis://`` / ``rediss://`` for one
    server, ``redis+cluster://host:port`` / ``rediss+cluster://...`` for a cluster (any one
    node; the others are discovered). TLS and AUTH through the URL. Given one client, the
    other kind is built from its connection settings: the sync client serves sync callers,
    the asyncio one asyncio (one client per event loop). Under trio the sync client runs in
    worker threads. Call :meth:`aclose` (async) and :meth:`close` when done.

    Every multi-step operation is one Lua script; all keys of one entry share a hash tag
    (``{prefix}:{key}...``), so Redis Cluster works. Values are serialized with orjson behind
    a short header (pickle only with a serializer that you pass).

    ``command_timeout`` (10 s by default; None for none): how long one command may wait for
    its reply on the clients retrysafe builds (from a URL, or the other kind built from your
    client when yours sets none), so that a server cut off behind a middlebox that keeps the
    connection open fails the call with :class:`StoreError` instead of holding it forever.
    A client you pass keeps its own ``socket_timeout``.
    """

    shared = True

    def __init__(
        self,
        client_or_url: Any,
        prefix: str = "retrysafe",
        *,
        serializer: Serializer | None = None,
        command_timeout: float | None = 10.0,
    ) -> None:
        redis = _import_redis()
        if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"prefix must be a non-empty str without braces, got {prefix!r}")
        self.prefix = prefix
        self._codec = Codec(serializer, "Redis")
        self.serializer: Serializer = self._codec.serializer
        self._redis = redis
        if command_timeout is not None and (
            not isinstance(command_timeout, (int, float)) or command_timeout <= 0
        ):
            raise ValueError(
                f"command_timeout must be a positive number or None, got {command_timeout!r}"
            )
        # Seconds a command may wait for its reply on the clients retrysafe builds.
        self._command_timeout = command_timeout
        self._url: str | None = None
        self._kwargs: dict[str, Any] = {}
        self._ssl = False
        self._given_async: Any = None
        #: Cluster: the startup nodes ((host, port)) clients of the other kind are built from.
        self._cluster: list[tuple[str, int]] | None = None
        #: Record keys this process saw completed: their async replays read by HMGET.
        self._seen: dict[Key, None] = {}
        #: Sentinel: (sentinels' (host, port), service name, sentinel kwargs) of a
        #: `Sentinel.master_for` client: its asyncio twin asks the same sentinels.
        self._sentinel: tuple[list[tuple[str, int]], str, dict[str, Any]] | None = None
        cluster_types = (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster)
        if isinstance(client_or_url, str):
            if client_or_url.startswith(("redis+cluster://", "rediss+cluster://")):
                self._url = client_or_url.replace("+cluster", "", 1)
                self._cluster = []
            elif client_or_url.startswith(("redis://", "rediss://", "unix://")):
                self._url = client_or_url
            else:
                raise ValueError(
                    f"not a Redis URL: {redact_url(client_or_url)!r} (expected redis://, rediss:// or "
                    "redis+cluster://host:port for a cluster)"
                )
            given = None
        elif isinstance(client_or_url, cluster_types):
            # An asyncio cluster client knows only its startup nodes until first used.
            manager = getattr(client_or_url, "nodes_manager", None)
            known = client_or_url.get_nodes() or list(
                getattr(manager, "startup_nodes", {}).values()
            )
            self._cluster = [(n.host, int(n.port)) for n in known]
            self._take_cluster_kwargs(client_or_url)
            if isinstance(client_or_url, redis.asyncio.cluster.RedisCluster):
                self._given_async = client_or_url
                given = None
            else:
                given = client_or_url
        elif isinstance(client_or_url, redis.asyncio.Redis):
            self._given_async = client_or_url
            self._take_kwargs(client_or_url.connection_pool)
            given = None
        elif isinstance(client_or_url, redis.Redis):
            given = client_or_url
            self._take_kwargs(client_or_url.connection_pool)
            self._take_sentinel(client_or_url.connection_pool)
        else:
            raise TypeError(
                "RedisStore takes a redis.Redis, a redis.asyncio.Redis, a RedisCluster (sync or "
                f"asyncio) or a redis:// / redis+cluster:// URL, got {client_or_url!r}"
            )
        # The sync client (yours, or one built at first use: building one at import or
        # decoration time would connect, and a sandbox such as Temporal's refuses that).
        self._own_sync = given is None
        self._sync_made: Any = given
        self._scripts_made: dict[str, Any] | None = None
        # Per event loop, keyed by the loop's identity; a finalizer drops a closed loop's entry.
        # (A WeakKeyDictionary makes a weakref on every lookup: this is the hit path.)
        self._async: dict[int, _LoopClient] = {}
        self._lock = threading.Lock()
        _LIVE_STORES.add(self)
        self._durable: bool | None = None
        self._durable_known = False
        #: Per node ("host:port"): whether it has replicas to WAIT for (read once).
        self._replicas: dict[str, bool] = {}
        self._warned_unreplicated = False

    def __repr__(self) -> str:
        return f"RedisStore({self._describe()}, prefix={self.prefix!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        """A store pickles by its URL (to a Ray task, a process pool, a Celery chord): the
        process that loads it opens its own connections. One built from a client object has
        no URL to travel by."""
        if self._url is None:
            raise TypeError(
                f"{self!r} was built from a client object and cannot be pickled: build it from "
                "a redis:// or redis+cluster:// URL to send it to another process"
            )
        url = self._url.replace("://", "+cluster://", 1) if self._cluster is not None else self._url
        options = {"serializer": self._codec.given, "command_timeout": self._command_timeout}
        return (rebuild, (RedisStore, (url, self.prefix), options))

    @property
    def _sync(self) -> Any:
        """The sync client, built at first use."""
        client = self._sync_made
        if client is None:
            with self._lock:
                if self._sync_made is None:
                    try:  # a cluster client reads the slot map as it is built
                        self._sync_made = self._build_sync()
                    except Exception as exc:
                        raise _failed(self, exc) from exc
                client = self._sync_made
        return client

    @property
    def _sync_scripts(self) -> dict[str, Any]:
        scripts = self._scripts_made
        if scripts is None:
            client = self._sync
            scripts = {name: client.register_script(src) for name, src in _SCRIPTS.items()}
            self._scripts_made = scripts
        return scripts

    @property
    def durable(self) -> bool | None:
        """Whether the server keeps data across a restart: AOF (``appendonly yes``) or RDB
        snapshots (``save`` rules) on every primary. Read once (``CONFIG GET``); None when
        the server refuses CONFIG (managed services) or cannot be reached: unknown.

        AOF with ``appendfsync always`` loses nothing a client was told; ``everysec`` may
        lose the last second, snapshots everything since the last one. A record lost that
        way re-runs its write: use AOF, or a durable database store, for exactly-once."""
        if self._durable_known:
            return self._durable
        try:
            settings = self._sync.config_get("appendonly")
            settings_save = self._sync.config_get("save")
        except Exception as exc:
            logger.info("retrysafe: cannot read Redis persistence settings (%s): unknown", exc)
            self._durable, self._durable_known = None, True
            return None
        self._durable = _persistent(settings, settings_save)
        self._durable_known = True
        return self._durable

    def _describe(self) -> str:
        if self._url is not None:
            text = redact_url(self._url)  # never print credentials
            return f"cluster {text}" if self._cluster is not None else text
        if self._cluster:
            host, port = self._cluster[0]
            return f"cluster {host}:{port}"
        if self._sentinel is not None:
            return f"sentinel service {self._sentinel[1]!r}"
        return f"{self._kwargs.get('host', '?')}:{self._kwargs.get('port', '?')}"

    def _take_sentinel(self, pool: Any) -> None:
        manager = getattr(pool, "sentinel_manager", None)
        service = getattr(pool, "service_name", None)
        if manager is None or not service:
            return
        nodes = []
        for sentinel in manager.sentinels:
            kwargs = sentinel.connection_pool.connection_kwargs
            nodes.append((kwargs.get("host", "localhost"), int(kwargs.get("port", 26379))))
        # What travels to the asyncio twin: settings only (a sync client's `retry` object,
        # say, made redis-py warn that it converted it).
        portable = {k: v for k, v in (manager.sentinel_kwargs or {}).items() if k in _PORTABLE}
        self._sentinel = (nodes, service, portable)

    def _take_cluster_kwargs(self, client: Any) -> None:
        manager = getattr(client, "nodes_manager", None)
        kwargs = getattr(manager, "connection_kwargs", None) or getattr(
            client, "connection_kwargs", {}
        )
        self._kwargs = {k: v for k, v in (kwargs or {}).items() if k in _PORTABLE}
        self._kwargs.pop("host", None)
        self._kwargs.pop("port", None)
        self._ssl = bool((kwargs or {}).get("ssl")) or "SSL" in str(
            (kwargs or {}).get("connection_class", "")
        )
        self._ssl_kwargs = {k: v for k, v in (kwargs or {}).items() if k.startswith("ssl_")}
        self._default_timeout()

    def _default_timeout(self) -> None:
        # The other kind, built from your client's settings: a timeout where yours has none.
        if self._kwargs.get("socket_timeout") is None:
            self._kwargs["socket_timeout"] = self._command_timeout

    def _take_kwargs(self, pool: Any) -> None:
        kwargs = getattr(pool, "connection_kwargs", {}) or {}
        self._kwargs = {k: v for k, v in kwargs.items() if k in _PORTABLE}
        self._ssl = "SSL" in getattr(getattr(pool, "connection_class", None), "__name__", "")
        self._ssl_kwargs = {k: v for k, v in kwargs.items() if k.startswith("ssl_")}
        self._default_timeout()

    # Blocking pools: a burst of concurrent callers queues for a connection instead of
    # failing with "Too many connections".
    _POOL: ClassVar[dict[str, Any]] = {"max_connections": 64, "timeout": 20}
    _TIMEOUTS: ClassVar[dict[str, Any]] = {"socket_connect_timeout": 2}
    # Async commands in flight per event loop; the pool has room for pub/sub watchers on top.
    # (redis.asyncio's BlockingConnectionPool costs ~30 us per command; a semaphore ~0.3 us.)
    _ASYNC_COMMANDS = 64
    _ASYNC_POOL = 192

    def _build_sync(self) -> Any:
        redis = self._redis
        if self._cluster is not None:
            cluster = redis.cluster
            if self._url is not None:
                return cluster.RedisCluster.from_url(
                    self._url, socket_timeout=self._command_timeout, **self._TIMEOUTS
                )
            nodes = [cluster.ClusterNode(host, port) for host, port in self._cluster]
            extra = {"ssl": True, **self._ssl_kwargs} if self._ssl else {}
            return cluster.RedisCluster(startup_nodes=nodes, **self._kwargs, **extra)
        if self._url is not None:
            pool = redis.BlockingConnectionPool.from_url(
                self._url,
                socket_timeout=self._command_timeout,
                retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0),
                **self._POOL,
                **self._TIMEOUTS,
            )
        else:
            cls = redis.SSLConnection if self._ssl else redis.Connection
            extra = self._ssl_kwargs if self._ssl else {}
            pool = redis.BlockingConnectionPool(
                connection_class=cls,
                retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0),
                **self._POOL,
                **self._kwargs,
                **extra,
            )
        return redis.Redis(connection_pool=pool)

    def _build_async(self) -> Any:
        aredis = self._redis.asyncio
        if self._sentinel is not None:
            import redis.asyncio.sentinel

            nodes, service, sentinel_kwargs = self._sentinel
            kwargs = {k: v for k, v in self._kwargs.items() if k not in ("host", "port")}
            make: Any = redis.asyncio.sentinel.Sentinel  # untyped in redis-py
            sentinel = make(nodes, sentinel_kwargs=sentinel_kwargs, **kwargs)
            client = sentinel.master_for(service, max_connections=self._ASYNC_POOL)
            client._retrysafe_sentinels = sentinel.sentinels  # closed by aclose()
            return client
        if self._cluster is not None:
            cluster = aredis.cluster
            if self._url is not None:
                # socket_timeout=None, not redis-py's default: under one its asyncio cluster
                # connections race their own connect (AttributeError: writer None). The
                # store keeps the command time itself (_LoopClient.limit).
                return cluster.RedisCluster.from_url(
                    self._url,
                    max_connections=self._ASYNC_POOL,
                    socket_timeout=None,
                    **self._TIMEOUTS,
                )
            nodes = [cluster.ClusterNode(host, port) for host, port in self._cluster]
            extra = (
                {"ssl": True, **_accepted(cluster.RedisCluster, self._ssl_kwargs)}
                if self._ssl
                else {}
            )
            kwargs = {**self._kwargs, "socket_timeout": None}
            return cluster.RedisCluster(
                startup_nodes=nodes, max_connections=self._ASYNC_POOL, **kwargs, **extra
            )
        if self._url is not None:
            pool = aredis.ConnectionPool.from_url(
                self._url,
                max_connections=self._ASYNC_POOL,
                socket_timeout=self._command_timeout,
                retry=aredis.retry.Retry(self._redis.backoff.NoBackoff(), 0),
                **self._TIMEOUTS,
            )
        else:
            cls = aredis.SSLConnection if self._ssl else aredis.Connection
            extra = _accepted(cls, self._ssl_kwargs) if self._ssl else {}
            pool = aredis.ConnectionPool(
                connection_class=cls,
                max_connections=self._ASYNC_POOL,
                retry=aredis.retry.Retry(self._redis.backoff.NoBackoff(), 0),
                **self._kwargs,
                **extra,
            )
        return aredis.Redis(connection_pool=pool)

    # --- key layout -------------------------------------------------------------------------

    @staticmethod
    def _text(key: Key) -> str:
        return key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else key

    def _key(self, key: Key) -> str:
        return f"{self.prefix}:{{{self._text(key)}}}"

    def _lease(self, key: Key) -> str:
        return f"{self.prefix}:{{{self._text(key)}}}:lease"

    def _channel(self, key: Key) -> str:
        return f"{self.prefix}:{{{self._text(key)}}}:done"

    # --- (de)serialization ------------------------------------------------------------------

    def _dump(self, value: Any) -> bytes:
        return self._codec.dump(value)

    def _load(self, key: Key, data: bytes | None) -> Any:
        return self._codec.load(data, self._key(key))

    # --- async client selection -------------------------------------------------------------

    def _loop_client(self) -> _LoopClient | None:
        """The asyncio client of the running loop, or None under another backend (trio)."""
        try:
            loop = _asyncio.get_running_loop()
        except RuntimeError:
            return None  # trio (or no loop)
        found = self._async.get(id(loop))
        if found is None:
            with self._lock:
                found = self._async.get(id(loop))
                if found is None:
                    client = (
                        self._given_async
                        if self._given_async is not None and not self._async
                        else None
                    )
                    client = client or self._build_async()
                    scripts = {name: client.register_script(src) for name, src in _SCRIPTS.items()}
                    gate = _asyncio.Semaphore(self._ASYNC_COMMANDS)
                    limit = self._command_timeout if self._cluster is not None else None
                    reads = _Batcher(client, gate, limit, self._acked)
                    found = _LoopClient(
                        client,
                        scripts,
                        gate,
                        reads,
                        limit,
                        reads if self._cluster is None else None,
                        None
                        if self._cluster is None
                        else _ThreadBatcher(self._replicated_many, gate, limit),
                    )
                    self._async[id(loop)] = found
                    weakref.finalize(loop, self._async.pop, id(loop), None)
        return found

    # redis-py's own retries are off on the clients built here (it resent every command,
    # counters included, up to 3 times on a timeout: a 1 s timeout held a caller 15 s).
    # A lost connection (a restarted server, a failover, a pooled connection the server
    # closed) is retried once, on a fresh connection, for every operation that is safe to
    # resend (all but counters): the scripts recognise their own earlier effect.

    async def _run(
        self,
        sync_call: Callable[[], Any],
        async_call: Callable[[Any, dict[str, Any]], Any],
        *,
        resend: bool = True,
        command: tuple[Any, ...] | None = None,
        wait: bool = False,
        record: tuple[str, list[str], list[Any]] | None = None,
    ) -> Any:
        """One operation: ``sync_call`` in a worker thread under trio; on asyncio
        ``command`` (a raw command: its reply unparsed) in the loop's batch on one server,
        ``record`` (a record script's name, keys and arguments) in the loop's batch of a
        cluster's record writes, else ``async_call(client, scripts)``; a lost connection
        resent once."""
        for attempt in (1, 2):
            found = self._loop_client()
            try:
                if found is None:  # trio: the sync client in a worker thread, left on cancel
                    return await anyio.to_thread.run_sync(sync_call, abandon_on_cancel=True)
                if record is not None and found.writes is not None:
                    return await found.writes.run(record)
                if command is not None and found.batch is not None:
                    try:
                        return await found.batch.run(command, wait)
                    except self._redis.exceptions.NoScriptError:
                        pass  # (a server that lost its scripts) the script's call loads it
                async with found.gate:
                    if found.limit is None:
                        return await async_call(found.client, found.scripts)
                    with anyio.fail_after(found.limit):
                        return await async_call(found.client, found.scripts)
            except StoreError:
                raise
            except Exception as exc:
                if not (resend and attempt == 1 and self._lost_connection(exc)):
                    raise _failed(self, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _sync_run(self, call: Callable[[], Any], *, resend: bool = True) -> Any:
        for attempt in (1, 2):
            try:
                return call()
            except StoreError:
                raise
            except Exception as exc:
                if not (resend and attempt == 1 and self._lost_connection(exc)):
                    raise _failed(self, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _lost_connection(self, exc: BaseException) -> bool:
        """A connection that broke (the pool drops it): not a timeout, whose command may
        still be running."""
        return isinstance(exc, self._redis.ConnectionError) and not isinstance(
            exc, self._redis.TimeoutError
        )

    # --- sync operations --------------------------------------------------------------------

    def get(self, key: Key) -> Any:
        return self._load(key, self._sync_run(lambda: self._sync.get(self._key(key))))

    def set(self, key: Key, value: Any, ttl: float | None) -> None:
        data = self._dump(value)
        self._sync_run(lambda: self._sync.set(self._key(key), data, px=_ms(ttl) or None))

    def delete(self, key: Key) -> bool:
        return bool(self._sync_run(lambda: self._sync.delete(self._key(key))))

    def clear(self, prefix: str = "") -> int:
        pattern = self._key_pattern(prefix)

        def delete(batch: list[Any]) -> int:
            if self._cluster is None:
                return int(self._sync.delete(*batch))
            # Keys of a batch hash to many slots: one DELETE each (a cluster pipeline
            # sends each to its node).
            pipe = self._sync.pipeline(transaction=False)
            for k in batch:
                pipe.delete(k)
            return sum(int(n) for n in pipe.execute())

        def run() -> int:
            removed = 0
            batch: list[Any] = []
            if not prefix and self._indexes:  # the listing's indexes go with the records
                self._sync.delete(*self._indexes)
            for k in self._sync.scan_iter(match=pattern, count=500):
                batch.append(k)
                if len(batch) >= 500:
                    removed += delete(batch)
                    batch.clear()
            if batch:
                removed += delete(batch)
            return removed

        return int(self._sync_run(run))

    def _key_pattern(self, prefix: str) -> str:
        """A SCAN pattern matching exactly this store's keys that start with ``prefix``: the
        store's prefix and ``prefix`` both with glob metacharacters escaped (a store named
        ``*`` or ``vic*`` matches its own keys only)."""
        return f"{_glob_literal(self.prefix)}:{{{_glob_literal(prefix)}*"

    def incr(self, key: Key, amount: float, ttl: float | None) -> float:
        script = self._sync_scripts["incr"]
        keys, args = [self._key(key)], [amount, _ms(ttl)]
        return float(self._sync_run(lambda: script(keys=keys, args=args), resend=False))

    def recent(self, key: Key, item: str | None, keep: int, ttl: float | None) -> list[str]:
        script = self._sync_scripts["recent"]
        keys, args = [self._key(key)], [item or "", keep, _ms(ttl)]
        # Not resent: a push that reached Redis before the connection broke would repeat.
        return _oldest_first(
            self._sync_run(lambda: script(keys=keys, args=args), resend=item is None)
        )

    def add_clamped(
        self, key: Key, delta: float, low: float, high: float, ttl: float | None
    ) -> float:
        script = self._sync_scripts["add_clamped"]
        keys, args = [self._key(key)], [delta, low, high, _ms(ttl)]
        return float(self._sync_run(lambda: script(keys=keys, args=args), resend=False))

    def acquire_lease(self, key: Key, owner: str, ttl: float) -> bool:
        script = self._sync_scripts["acquire"]
        return bool(self._sync_run(lambda: script(keys=[self._lease(key)], args=[owner, _ms(ttl)])))

    def extend_lease(self, key: Key, owner: str, ttl: float) -> bool:
        script = self._sync_scripts["extend"]
        return bool(self._sync_run(lambda: script(keys=[self._lease(key)], args=[owner, _ms(ttl)])))

    def release_lease(self, key: Key, owner: str) -> bool:
        script = self._sync_scripts["release"]
        return bool(
            self._sync_run(
                lambda: script(keys=[self._lease(key)], args=[owner, self._channel(key)])
            )
        )

    def set_and_release(self, key: Key, value: Any, ttl: float | None, owner: str) -> None:
        data = self._dump(value)
        script = self._sync_scripts["set_release"]
        self._sync_run(
            lambda: script(
                keys=[self._key(key), self._lease(key)],
                args=[data, _ms(ttl), owner, self._channel(key)],
            )
        )

    # --- idempotency records -------------------------------------------------------------

    def _record(self, key: Key) -> str:
        return f"{self.prefix}:{{{self._text(key)}}}:rec"

    def _fence(self, key: Key) -> str:
        return f"{self.prefix}:{{{self._text(key)}}}:fence"

    def _abandoned(self, key: Key) -> str:
        return f"{self.prefix}:{{{self._text(key)}}}:abandoned"

    def _claim_args(
        self,
        key: Key,
        fingerprint: str,
        owner: str,
        lease: float,
        ttl: float,
        takeover: bool,
        nonce: str | None,
        checkpoint: bool = False,
        meta: str | None = None,
    ) -> tuple[list[str], list[Any]]:
        keys = [self._record(key), self._fence(key), self._abandoned(key), *self._indexes]
        args = [
            fingerprint,
            owner,
            _ms(lease),
            _ms(ttl),
            "1" if takeover else "c" if checkpoint else "0",
            self._channel(key),
            nonce or fence_nonce(),  # this claim's nonce: its token's tail
            meta or "",
        ]
        return keys, args

    def _to_claim(self, key: Key, raw: list[Any]) -> Claim:
        status = raw[0].decode() if isinstance(raw[0], bytes) else str(raw[0])
        fence = self._codec.fence(raw[1], self._record(key)) if len(raw) > 1 else 0
        if status == "completed":
            self._saw_completed(key)
            return Claim(status, fence, self._codec.load_result(raw[2], self._record(key)))
        if status == "in_progress":
            return Claim(status, fence, lease_left=int(raw[2]) / 1000)
        if status == "unknown":
            return Claim(status, fence, expired_now=len(raw) > 2)
        if status == "claimed":
            return Claim(status, fence, takeover=raw[2] in (b"1", "1", 1))
        return Claim(status)

    # --- replication of records ----------------------------------------------------------
    # Redis replicates asynchronously: a primary that fails right after a claim or a
    # completion may take it along, and the promoted replica lets the write run again. So a
    # record's claim and completion wait (WAIT 1) for one replica to have them, on the very
    # connection that wrote them, wherever the node has replicas.

    _WAIT_MS = 200

    def _node_client(self, full_key: str) -> Any:
        if self._cluster is None:
            return self._sync
        return self._sync.get_redis_connection(self._sync.get_node_from_key(full_key))

    def _has_replicas(self, client: Any) -> bool:
        kwargs = client.connection_pool.connection_kwargs
        node = f"{kwargs.get('host')}:{kwargs.get('port')}:{kwargs.get('path')}"
        known = self._replicas.get(node)
        if known is None:
            info = client.info("replication")
            known = self._replicas[node] = int(info.get("connected_slaves", 0)) > 0
        return known

    def _replicated(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run the record script ``name``; where the node has replicas, WAIT until one has
        its effect (logged once if none answers in time)."""
        client = self._node_client(keys[0])
        if not self._has_replicas(client):
            return self._sync_scripts[name](keys=keys, args=args)
        return self._then_wait(client, [(name, keys, args)])[0]

    def _replicated_many(self, records: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        """Record scripts of concurrent callers (name, keys, arguments) on a cluster, from a
        worker thread: per node, one pipeline of them that a WAIT ends where the node has
        replicas (on the connection that wrote them, covering them all), as
        :meth:`_replicated` does for one. Each caller's reply or error comes back in its
        place: an error reply fails its caller only, a node that fails (a lost connection)
        fails its own callers only, and each of those resends on its own."""
        replies: list[Any] = [None] * len(records)
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for i, (_, keys, _) in enumerate(records):
            node = self._sync.get_node_from_key(keys[0])
            by_node.setdefault(node.name, (node, []))[1].append(i)
        for node, places in by_node.values():
            try:
                client = self._sync.get_redis_connection(node)
                if not self._has_replicas(client):
                    # As one write without replicas: through the cluster client, which
                    # follows a redirection (a replica promoted since the slots were read).
                    answers = [self._script_or_error(records[i]) for i in places]
                else:
                    answers = self._then_wait(client, [records[i] for i in places], errors=True)
            except Exception as exc:
                answers = [exc] * len(places)
            for i, answer in zip(places, answers, strict=True):
                replies[i] = answer
        return replies

    def _then_wait(
        self, client: Any, records: list[tuple[str, list[str], list[Any]]], errors: bool = False
    ) -> list[Any]:
        """The record scripts (name, keys, arguments) in one pipeline on ``client``'s node,
        ended by a WAIT for a replica on the connection that wrote them; their replies.
        With ``errors``, an error reply is returned in its place instead of raised."""
        pipe = client.pipeline(transaction=False)
        for name, keys, args in records:
            self._sync_scripts[name](keys=keys, args=args, client=pipe)
        pipe.execute_command("WAIT", 1, self._WAIT_MS)
        answers = list(pipe.execute(raise_on_error=not errors))
        self._acked(answers.pop())
        return answers

    def _script_or_error(self, record: tuple[str, list[str], list[Any]]) -> Any:
        """The reply of one record script run through the sync client, or its error."""
        name, keys, args = record
        try:
            return self._sync_scripts[name](keys=keys, args=args)
        except Exception as exc:
            return exc

    def _acked(self, acked: Any) -> None:
        """A WAIT's reply after records were written: logged once when no replica has them
        (an error reply, as a demoted master gives, counts as none: it fails no caller)."""
        none = isinstance(acked, Exception) or int(acked) < 1
        if none and not self._warned_unreplicated:
            self._warned_unreplicated = True
            logger.warning(
                "retrysafe: no Redis replica confirmed a record within %d ms; a failover now "
                "could lose it",
                self._WAIT_MS,
            )

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
        keys, args = self._claim_args(
            key, fingerprint, owner, lease, ttl, takeover, nonce, checkpoint, meta
        )
        return self._to_claim(key, self._sync_run(lambda: self._replicated("claim", keys, args)))

    def mark_started(self, key: Key, fence: int) -> bool:
        # Replicated as a claim is: a failover that lost the mark would let the record be
        # taken over after its owner acted.
        keys, args = [self._record(key)], [fence]
        return bool(self._sync_run(lambda: self._replicated("mark_started", keys, args)))

    def heartbeat(self, key: Key, fence: int, lease: float) -> bool:
        script = self._sync_scripts["heartbeat"]
        return bool(
            self._sync_run(lambda: script(keys=[self._record(key)], args=[fence, _ms(lease)]))
        )

    def complete(self, key: Key, fence: int, payload: Any, ttl: float) -> bool:
        data = self._dump(payload)
        keys, args = [self._record(key)], [fence, data, _ms(ttl), self._channel(key)]
        return bool(self._sync_run(lambda: self._replicated("complete", keys, args)))

    def release(self, key: Key, fence: int) -> bool:
        script = self._sync_scripts["release_record"]
        args = [fence, self._channel(key)]
        return bool(self._sync_run(lambda: script(keys=[self._record(key)], args=args)))

    def abandon(self, key: Key, nonce: str) -> bool:
        script = self._sync_scripts["abandon"]
        args = [nonce, self._channel(key)]
        keys = [self._record(key), self._abandoned(key)]
        return bool(self._sync_run(lambda: script(keys=keys, args=args)))

    def mark_unknown(self, key: Key, fence: int, ttl: float) -> bool:
        script = self._sync_scripts["mark_unknown"]
        args = [fence, _ms(ttl), self._channel(key)]
        keys = [self._record(key), *self._indexes[1:]]
        return bool(self._sync_run(lambda: script(keys=keys, args=args)))

    def resolve(
        self, key: Key, payload: Any, applied: bool, ttl: float, fence: int | None = None
    ) -> str | None:
        data = self._dump(payload) if applied else b""
        script = self._sync_scripts["resolve"]
        expected = "" if fence is None else str(fence)
        args = ["1" if applied else "0", data, _ms(ttl), self._channel(key), expected]
        before = self._sync_run(lambda: script(keys=[self._record(key)], args=args))
        return before.decode() if isinstance(before, bytes) else before

    def record(self, key: Key) -> RecordView | None:
        now_ms, (fields,) = self._sync_run(lambda: self._fetch([self._record(key)]))
        return self._view(self._text(key), fields, now_ms) if fields else None

    def _view(self, key: str, fields: dict[bytes, Any], now_ms: int) -> RecordView:
        """A record's hash as a :class:`RecordView` (times in epoch seconds)."""
        owner = fields.get(b"owner")
        payload = self._load(key, fields[b"payload"]) if b"payload" in fields else None
        state = fields[b"state"].decode()
        lease = fields.get(b"lease")
        meta = fields.get(b"meta")
        return RecordView(
            state,
            fields[b"fp"].decode(),
            self._codec.fence(fields[b"fence"], self._record(key)),
            owner.decode() if owner else None,
            None if payload is MISS else payload,
            meta=meta.decode() if meta else None,
            created=_seconds(fields.get(b"created")),
            updated=_seconds(fields.get(b"updated")),
            lease_left=(
                max(0.0, (float(lease) - now_ms) / 1000)
                if state == IN_PROGRESS and lease is not None
                else None
            ),
            key=key,
        )

    @property
    def _indexes(self) -> list[str]:
        """The listing's indexes (every record; the UNKNOWN ones), on one server only: a
        cluster's script reaches one slot, and a cluster's listing scans its nodes."""
        if self._cluster is not None:
            return []
        return [f"{self.prefix}:records", f"{self.prefix}:records:unknown"]

    def list_records(
        self, state: str | None = None, after: Cursor | None = None, limit: int = 50
    ) -> list[RecordView]:
        """Live records newest first (by first claim, then key), ``state`` only if given,
        those after the cursor ``after`` only: one page of at most ``limit``. On one server
        a range read of the index (UNKNOWN ones: of their own index), whatever the number of
        records; on a cluster a scan of every node (no index can span slots)."""
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10_000:
            raise ValueError(f"limit must be an int from 1 to 10000, got {limit!r}")
        read = self._scan_records if self._cluster is not None else self._indexed_records
        page: list[RecordView] = self._sync_run(lambda: read(state, after, limit))
        return page

    def _fetch(self, names: list[Any]) -> tuple[int, list[dict[bytes, Any]]]:
        """The server's clock (ms) and the hashes named, in one round trip (a cluster's
        pipeline has no TIME: its clock is one node's, asked first)."""
        pipe = self._sync.pipeline(transaction=False)
        if self._cluster is None:
            pipe.time()
        else:
            now = self._sync.get_redis_connection(self._sync.get_default_node()).time()
        for name in names:
            pipe.hgetall(name)
        replies = pipe.execute()
        if self._cluster is None:
            now, *found = replies
        else:
            found = replies
        return now[0] * 1000 + now[1] // 1000, found

    def _indexed_records(
        self, state: str | None, after: Cursor | None, limit: int
    ) -> list[RecordView]:
        index = self._indexes[1 if state == UNKNOWN else 0]
        top: Any = "+inf" if after is None else round(after[0] * 1000)
        last = None if after is None else self._record(after[1]).encode()
        page: list[RecordView] = []
        stale: list[bytes] = []
        offset, batch = 0, max(limit, 100)
        while len(page) < limit:
            names = self._sync.zrevrangebyscore(
                index, top, "-inf", start=offset, num=batch, withscores=True
            )
            if not names:
                break
            offset += len(names)
            now_ms, found = self._fetch([name for name, _ in names])
            for (name, score), fields in zip(names, found, strict=True):
                if last is not None and score == top and name >= last:
                    continue  # at or before the cursor
                if not fields or (state == UNKNOWN and fields.get(b"state") != b"unknown"):
                    stale.append(name)
                    continue
                if state is not None and fields[b"state"].decode() != state:
                    continue
                page.append(self._view(self._record_name(name), fields, now_ms))
                if len(page) == limit:
                    break
        if stale:
            self._sync_scripts["unindex"](
                keys=[index, *stale], args=["1" if state == UNKNOWN else "0"]
            )
        return page

    def _record_name(self, name: bytes) -> str:
        """The record key inside a record's Redis name (``prefix:{key}:rec``)."""
        text = name.decode("utf-8", "backslashreplace")
        return text[len(self.prefix) + 2 : -5]

    def _scan_records(
        self, state: str | None, after: Cursor | None, limit: int
    ) -> list[RecordView]:
        pattern = f"{_glob_literal(self.prefix)}:{{idem:*}}:rec"
        names = list(dict.fromkeys(self._sync.scan_iter(match=pattern, count=1000)))
        found: list[RecordView] = []
        for start in range(0, len(names), 1000):
            now_ms, fields = self._fetch(names[start : start + 1000])
            for name, rec in zip(names[start : start + 1000], fields, strict=True):
                if rec and (state is None or rec[b"state"].decode() == state):
                    found.append(self._view(self._record_name(name), rec, now_ms))
        found.sort(key=lambda r: (r.created or 0.0, r.key or ""), reverse=True)
        if after is not None:
            found = [r for r in found if (r.created or 0.0, r.key or "") < after]
        return found[:limit]

    def keys(self, prefix: str, limit: int = 100_000) -> list[str]:
        """The keys of values that start with ``prefix`` (at most ``limit``; a scan of every
        node), for operators' counts: never values."""
        start = len(self.prefix) + 2

        def run() -> list[str]:
            found: list[str] = []
            for name in self._sync.scan_iter(match=self._key_pattern(prefix), count=1000):
                text = name.decode("utf-8", "backslashreplace")
                if text.endswith("}"):  # a value (a lease, a record end otherwise)
                    found.append(text[start:-1])
                    if len(found) >= limit:
                        break
            return found

        keys: list[str] = self._sync_run(run)
        return keys

    def purge_expired(self) -> int:
        """Drop the listing's index entries whose record expired (Redis drops expired
        records itself); how many went."""
        if self._cluster is not None:
            return 0

        def run() -> int:
            gone = 0
            for index, unknown in zip(self._indexes, ("0", "1"), strict=True):
                start = 0
                while names := self._sync.zrange(index, start, start + 999):
                    dropped = int(
                        self._sync_scripts["unindex"](keys=[index, *names], args=[unknown])
                    )
                    start += len(names) - dropped
                    gone += dropped
            return gone

        return int(self._sync_run(run))

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
        if key in self._seen:
            replayed = await self._areplay(key, fingerprint)
            if replayed is not None:
                return replayed
        keys, args = self._claim_args(
            key, fingerprint, owner, lease, ttl, takeover, nonce, checkpoint, meta
        )
        return self._to_claim(key, await self._record_script("claim", keys, args))

    async def _areplay(self, key: Key, fingerprint: str) -> Claim | None:
        """The replay of a key this process saw completed: the record's fields read by one
        HMGET (no script, no claim arguments), as ``aget`` reads a cache entry; None (the
        claim script decides) when it is not that completed record any more, under trio,
        or when the connection was lost (the claim resends)."""
        found = self._loop_client()
        if found is None:
            return None
        name = self._record(key)
        try:
            fields = await found.reads.run(("HMGET", name, "state", "fp", "fence", "payload"))
        except Exception as exc:
            if not self._lost_connection(exc):
                raise _failed(self, exc) from exc
            return None
        state, fp, fence, payload = fields
        if state != b"completed" or fp is None or fp.decode() != fingerprint:
            self._seen.pop(key, None)
            return None
        return Claim(
            COMPLETED, self._codec.fence(fence, name), self._codec.load_result(payload, name)
        )

    def _saw_completed(self, key: Key) -> None:
        seen = self._seen
        if len(seen) >= _SEEN_MAX:
            seen.clear()  # a hint, not a cache: forgotten all at once
        seen[key] = None

    async def amark_started(self, key: Key, fence: int) -> bool:
        return bool(await self._record_script("mark_started", [self._record(key)], [fence]))

    async def aheartbeat(self, key: Key, fence: int, lease: float) -> bool:
        return bool(await self._script("heartbeat", [self._record(key)], [fence, _ms(lease)]))

    async def acomplete(self, key: Key, fence: int, payload: Any, ttl: float) -> bool:
        args = [fence, self._dump(payload), _ms(ttl), self._channel(key)]
        done = bool(await self._record_script("complete", [self._record(key)], args))
        if done:
            self._saw_completed(key)
        return done

    async def _record_script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """A claim or completion: on the event loop's client; where the server has replicas,
        in the loop's batch, which then ends with one WAIT on the connection that wrote it
        (covering every write of the batch); on a cluster (until its nodes are known to have
        no replicas) in the loop's batch of record writes, sent from a worker thread as one
        pipeline per node that a WAIT ends (WAIT needs the writing connection, which the
        asyncio cluster client does not expose). Once per write, not per read."""
        if not self._replicas or any(self._replicas.values()):
            # One server known to have replicas: in the loop's batch, which a WAIT ends; a
            # cluster: in the loop's batch of record writes, a pipeline and a WAIT per node.
            batched = self._replicas and self._cluster is None
            return await self._run(
                lambda: self._replicated(name, keys, args),
                lambda c, s: anyio.to_thread.run_sync(
                    self._replicated, name, keys, args, abandon_on_cancel=True
                ),
                command=_evalsha(self._sync_scripts[name], keys, args) if batched else None,
                wait=True,
                record=(name, keys, args) if self._cluster is not None else None,
            )
        return await self._script(name, keys, args)

    async def arelease(self, key: Key, fence: int) -> bool:
        args = [fence, self._channel(key)]
        return bool(await self._script("release_record", [self._record(key)], args))

    async def aabandon(self, key: Key, nonce: str) -> bool:
        args = [nonce, self._channel(key)]
        keys = [self._record(key), self._abandoned(key)]
        return bool(await self._script("abandon", keys, args))

    async def amark_unknown(self, key: Key, fence: int, ttl: float) -> bool:
        args = [fence, _ms(ttl), self._channel(key)]
        keys = [self._record(key), *self._indexes[1:]]
        return bool(await self._script("mark_unknown", keys, args))

    @contextmanager
    def watch(self, key: Key) -> Iterator[_SyncWatcher]:
        pubsub = self._sync.pubsub(ignore_subscribe_messages=True)
        try:
            self._sync_run(lambda: pubsub.subscribe(self._channel(key)))
            yield _SyncWatcher(pubsub)
        finally:
            try:
                pubsub.close()
            except Exception:  # the connection may already be gone
                pass

    def close(self) -> None:
        """Close the sync client's connections (a client you passed in stays yours)."""
        if not self._own_sync:
            return
        client, self._sync_made, self._scripts_made = self._sync_made, None, None
        if client is not None:  # (none built yet: nothing to close)
            # A cluster has a pool per node, which closing the client leaves connected.
            nodes = client.get_nodes() if self._cluster is not None else []
            client.close()
            for node in nodes:
                made = getattr(node, "redis_connection", None)
                if made is not None:
                    made.connection_pool.disconnect()
            pool = getattr(client, "connection_pool", None)
            if pool is not None:
                pool.disconnect()

    # --- async operations -------------------------------------------------------------------

    async def aget(self, key: Key) -> Any:
        """The hit path: one GET, no script."""
        full = self._key(key)
        found = self._loop_client()
        try:
            if found is None:
                data = await anyio.to_thread.run_sync(self._sync.get, full, abandon_on_cancel=True)
            else:
                data = await found.reads.run(("GET", full))
        except Exception as exc:
            if not self._lost_connection(exc):
                raise _failed(self, exc) from exc
            data = await self._run(lambda: self._sync.get(full), lambda c, s: c.get(full))
        return self._load(key, data)

    async def aset(self, key: Key, value: Any, ttl: float | None) -> None:
        data = self._dump(value)
        full = self._key(key)
        px = _ms(ttl) or None
        await self._run(
            lambda: self._sync.set(full, data, px=px),
            lambda c, s: c.set(full, data, px=px),
            command=("SET", full, data, "PX", px) if px else ("SET", full, data),
        )

    async def adelete(self, key: Key) -> bool:
        full = self._key(key)
        return bool(await self._run(lambda: self._sync.delete(full), lambda c, s: c.delete(full)))

    async def aclear(self, prefix: str = "") -> int:
        return await anyio.to_thread.run_sync(self.clear, prefix, abandon_on_cancel=True)

    async def _script(
        self, name: str, keys: list[str], args: list[Any], *, resend: bool = True
    ) -> Any:
        sync_script = self._sync_scripts[name]
        return await self._run(
            lambda: sync_script(keys=keys, args=args),
            lambda c, s: s[name](keys=keys, args=args),
            resend=resend,
            command=_evalsha(sync_script, keys, args),
        )

    async def aincr(self, key: Key, amount: float, ttl: float | None) -> float:
        args = [amount, _ms(ttl)]
        return float(await self._script("incr", [self._key(key)], args, resend=False))

    async def arecent(self, key: Key, item: str | None, keep: int, ttl: float | None) -> list[str]:
        args = [item or "", keep, _ms(ttl)]
        raw = await self._script("recent", [self._key(key)], args, resend=item is None)
        return _oldest_first(raw)

    async def aadd_clamped(
        self, key: Key, delta: float, low: float, high: float, ttl: float | None
    ) -> float:
        args = [delta, low, high, _ms(ttl)]
        return float(await self._script("add_clamped", [self._key(key)], args, resend=False))

    async def aacquire_lease(self, key: Key, owner: str, ttl: float) -> bool:
        return bool(await self._script("acquire", [self._lease(key)], [owner, _ms(ttl)]))

    async def aextend_lease(self, key: Key, owner: str, ttl: float) -> bool:
        return bool(await self._script("extend", [self._lease(key)], [owner, _ms(ttl)]))

    async def arelease_lease(self, key: Key, owner: str) -> bool:
        return bool(await self._script("release", [self._lease(key)], [owner, self._channel(key)]))

    async def aset_and_release(self, key: Key, value: Any, ttl: float | None, owner: str) -> None:
        data = self._dump(value)
        await self._script(
            "set_release",
            [self._key(key), self._lease(key)],
            [data, _ms(ttl), owner, self._channel(key)],
        )

    @asynccontextmanager
    async def awatch(self, key: Key) -> AsyncIterator[Any]:
        found = self._loop_client()
        if found is None:
            with self.watch(key) as inner:
                yield _ThreadWatcher(inner)
            return
        if self._cluster is not None:
            # redis-py's asyncio cluster pub/sub lost its connections under a swarm's load
            # (8 processes x 50 waiters: "Connection closed by server"): waiters poll there,
            # at the growing intervals their claim loop sets (10 ms up to 0.5 s).
            yield _PollWatcher()
            return
        pubsub = found.client.pubsub(ignore_subscribe_messages=True)
        try:
            try:
                await pubsub.subscribe(self._channel(key))
            except Exception as exc:
                raise _failed(self, exc) from exc
            yield _AsyncWatcher(pubsub)
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await pubsub.aclose()
                except Exception:  # the connection may already be gone
                    pass

    async def aclose(self) -> None:
        """Close this event loop's async client (call before the loop ends)."""
        try:
            loop = _asyncio.get_running_loop()
        except RuntimeError:
            return
        found = self._async.pop(id(loop), None)
        if found is not None and found.client is not self._given_async:
            if self._cluster is not None:
                await found.client.aclose()  # a cluster client closes its nodes' pools
            else:
                await found.client.aclose(close_connection_pool=True)
            # The clients an asyncio Sentinel keeps to the sentinels themselves.
            for sentinel in getattr(found.client, "_retrysafe_sentinels", ()):
                await sentinel.aclose(close_connection_pool=True)
