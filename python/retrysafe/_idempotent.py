"""@idempotent: run a write at most once per key, replay its result to every retry.

The record state machine (ABSENT -> IN_PROGRESS -> COMPLETED | UNKNOWN) lives in the store;
every transition is compare-and-set on a fence that grows with each claim. If the store is
unreachable the call fails closed with StoreError: a write never runs unprotected.
"""

from __future__ import annotations

import functools
import inspect
import os
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, overload

import anyio
import anyio.lowlevel

from . import _telemetry
from ._callables import bound_self, check_decoratable, hide_parameters, make_keyer
from ._classify import never_sent, server_hint, server_said, status_of
from ._effects import Effect, get_effect
from ._exceptions import (
    CodecError,
    IdempotencyInProgressError,
    IdempotencyKeyMismatchError,
    LeaseLostError,
    OutcomeUnknownError,
    RepeatNeedsConfirmationError,
    RetryLaterError,
    RetrysafeError,
    SessionRequiredError,
    StoreError,
)
from ._flights import ThreadFlights, join_or_lead
from ._identity import _CURRENT as _CURRENT_SESSION
from ._identity import CURRENT_CALL as _STATE
from ._identity import CallState as _CallState
from ._identity import Session, escape, is_async, name_of, partition_of
from ._keys import IdempKey
from ._lease import Held, run_with_heartbeat, start_heartbeat
from ._log import logger
from ._native import CallKeyer, fingerprint, idempotency_digest
from ._settle import settle_later
from .stores import Store, resolve_store
from .stores._base import rebuild
from .stores._records import HELD, Claim, claim_number
from .stores._sql import fence_nonce

if TYPE_CHECKING:
    P = ParamSpec("P")

__all__ = [
    "IdempotencyHandle",
    "NotApplied",
    "current_fence",
    "current_key",
    "idempotent",
    "resolve",
    "side_effect_started",
]

T = TypeVar("T")
#: Stores whose missing durability was already logged (one warning per store object). Held
#: weakly: an id() would be reused by the next store after a warned one is collected, and
#: that store would never be warned. A store that refuses weak references is held strongly.
_WARNED_STORES: weakref.WeakSet[Any] = weakref.WeakSet()
_WARNED_PINNED: list[Any] = []
_WARNED_KINDS: set[type] = set()
KEY_PARAM = "idempotency_key"
_KEY_TAG = b"retrysafe/idempotency-key/v1\0"  # as in the native idempotency_digest
_UNSET: Any = object()
#: Suffix of the key that holds a released write's "not before" time (the server's Retry-After).
_NOT_BEFORE = ":not-before"
#: The record key's suffix of the note a suspension after the side effect started leaves.
_SUSPENDED = ":suspended"
#: What an identical write in a later turn does: ask the user first, replay silently, or run.
REPEAT_POLICIES = ("confirm", "replay", "allow")
#: How many entries of a call's turn history are kept (runs, notices, released runs).
_TURNS_KEPT = 16
#: Seconds past the caller's deadline (or its cancellation) that the record transitions a
#: failed or cancelled call owes may take inline; what is not done by then is handed to the
#: background (``_settle``), so a caller is never held longer.
SETTLE_GRACE = 0.5
#: The share of the lease a holder counts on: the rest covers the claim's round trip.
_LEASE_SHARE = 0.9


class NotApplied(RetrysafeError):
    """Raise it from a tool (``raise NotApplied(...) from error``) to say the side effect did
    not happen: the record is released, and a retry runs the tool again."""

    llm_hint = "The operation was not performed; it is safe to try again."


def _first_warning_for(store: Any) -> bool:
    """True the first time ``store`` is asked about: once per process for the in-process
    kinds (every tool left on its default MemoryStore has one of its own: 20 tools printed
    20 warnings), once per store object for shared ones (each is a server of its own)."""
    if not getattr(store, "shared", False):
        kind = type(store)
        if kind in _WARNED_KINDS:
            return False
        _WARNED_KINDS.add(kind)
        return True
    try:
        if store in _WARNED_STORES:
            return False
        _WARNED_STORES.add(store)
    except TypeError:  # no __weakref__ slot
        if any(pinned is store for pinned in _WARNED_PINNED):
            return False
        _WARNED_PINNED.append(store)
    return True


def current_key() -> IdempKey | None:
    """The idempotency key of the ``@idempotent`` call running in this context, or None.

    Send ``str(current_key())`` as the remote's Idempotency-Key header, right before sending:
    once the call's lease ran out or was taken over it raises :class:`LeaseLostError`, and
    the call stops before acting (its record is released).
    """
    state = _STATE.get()
    if state is None:
        return None
    _still_held(state)
    return state.key  # type: ignore[no-any-return]


def current_fence() -> int | None:
    """The fence token of the ``@idempotent`` call running in this context, or None outside
    one: a number that grows with every claim of the key. Send it to a remote that keeps the
    highest token it has seen and refuses lower ones, and a cut-off owner can never act
    after a newer claim did. Raises :class:`LeaseLostError` once the lease ran out or was
    taken over (the call stops before acting; its record is released)."""
    state = _STATE.get()
    if state is None or state.record is None:
        return None
    _still_held(state)
    return state.record[1]


def side_effect_started() -> None:
    """Inside an ``@idempotent(checkpoint=True)`` tool: mark the point after which the side
    effect may have happened (call it right before sending the request). A failure before
    it releases the record; an ambiguous failure after it leaves the outcome UNKNOWN.
    On a WRITE or DESTRUCTIVE tool the start is recorded in the store first (one round
    trip): a process that dies before this point left a record the next caller takes over
    once its lease runs out (it cannot have acted); one that dies after it leaves the outcome
    UNKNOWN. Raises :class:`LeaseLostError`, without marking anything, once the call's lease
    ran out or was taken over, and :class:`StoreError` when the store cannot record the start:
    the tool stops before acting, and the record is released."""
    state = _STATE.get()
    if state is None:
        raise RuntimeError("side_effect_started() is only meaningful inside an @idempotent call")
    _still_held(state)
    if state.resumed_started:
        raise _Repeated(
            f"the call with key {state.key} was suspended (an interrupt) after its side effect "
            "had started; resumed, it would start it again",
            key=state.key,
        )
    if state.marks and not state.started and state.record is not None:
        # Recorded before the side effect: until now a crash left nothing to fear (the next
        # caller takes the record over); from now on it leaves the outcome UNKNOWN.
        record_key, fence, _ = state.record
        if not state.store.mark_started(record_key, fence):
            raise _Stopped(
                f"the record of key {state.key} was taken over before this call started its "
                "side effect: it must stop before acting",
                key=state.key,
            )
        # The round trip may have outlasted the lease (a process stopped meanwhile) or the
        # caller's deadline: checked again, so that nothing starts after either.
        _still_held(state)
        if _past_deadline():
            raise _Stopped(
                f"the caller's deadline passed before the call with key {state.key} started "
                "its side effect: it stops before acting",
                key=state.key,
            )
    state.started = True


def _past_deadline() -> bool:
    """Whether the running async task's deadline has passed (False outside one)."""
    try:
        return anyio.current_effective_deadline() <= anyio.current_time()
    except Exception:  # no async task here (a sync tool in a thread): no deadline to keep
        return False


def settle_command(record_key: str) -> str:
    """The command an operator settles an UNKNOWN record with (any process, any host)."""
    return (
        f"settle it: retrysafe records resolve {record_key} --applied RESULT_JSON | --not-applied"
    )


class _Stopped(LeaseLostError):
    """Raised by a checkpoint: the call stopped before acting (its record is released)."""


class _Repeated(RetrysafeError):
    """Raised by the checkpoint of a call resumed after a suspension that came after its
    side effect had started: its outcome is UNKNOWN."""

    def __init__(self, message: str, *, key: Any) -> None:
        super().__init__(message)
        self.key = key


#: Exceptions an agent framework raises to suspend a call until a person answers (LangGraph's
#: ``GraphInterrupt``): control flow, neither a failure nor a completion. See :func:`suspends`.
_SUSPENSIONS: tuple[type[BaseException], ...] = ()


def suspends(*types: type[BaseException]) -> None:
    """Make ``types`` suspensions: raised by a recorded call, they release its record for
    the resume (the framework runs the same call again, with the same key) instead of
    leaving its outcome UNKNOWN. A suspension after ``side_effect_started()`` is noted: the
    resumed call's checkpoint refuses to start the side effect again (its outcome becomes
    UNKNOWN), unless the remote deduplicates by the key (``remote_idempotent``)."""
    global _SUSPENSIONS
    _SUSPENSIONS = tuple(dict.fromkeys((*_SUSPENSIONS, *types)))


def _still_held(state: _CallState) -> None:
    held = state.held
    if held is not None and not held.valid():
        raise _Stopped(
            f"the lease on key {state.key} ran out or was taken over, so this call no longer "
            "holds its record: it must stop before acting",
            key=state.key,
        )


async def _not_past_deadline() -> None:
    """Let a caller whose deadline has passed be cancelled now, before its side effect
    starts: a store call that could not be interrupted (trio's worker threads) may return
    after the deadline without a checkpoint in between."""
    for _ in range(64):
        if anyio.current_effective_deadline() > anyio.current_time():
            return
        await anyio.lowlevel.checkpoint()  # the cancellation is delivered at a checkpoint


def _unserializable(exc: BaseException) -> bool:
    """The store answered, and refused the value or could not read its own (its serializer
    failed): trying again later cannot help, and a claim that got this was read."""
    return isinstance(exc, CodecError)


def turn_verdict(
    history: list[str], mine: str, now: float
) -> tuple[str, str | None, float | None, str | None]:
    """What a call claimed in turn ``mine`` (escaped) does, from its conversation's turn
    history (oldest first; entries ``r/TURN/AT`` a run started, ``x/TURN/AT`` a run released unapplied,
    ``n/TURN/AT`` a repeat refused for confirmation):

    ``("run", entry to append or None, None, None)``: the first run, a run of the same turn
    again (a crash's re-run), or a repeat confirmed (a notice was given in another turn after
    the last run, and the user's reply is this turn);
    ``("refuse", entry or None, earlier run's time, its turn)``: an earlier turn ran it.
    """
    runs: list[tuple[int, str, float]] = []
    notices: list[tuple[int, str]] = []
    for index, entry in enumerate(history):
        kind, _, rest = entry.partition("/")
        what, _, at = rest.rpartition("/")
        if kind == "r":
            runs.append((index, what, float(at or 0)))
        elif kind == "x" and runs and runs[-1][1] == what:
            runs.pop()  # released: it never acted
        elif kind == "n":
            notices.append((index, what))
    started = f"r/{mine}/{now:.3f}"
    if not runs:
        return "run", started, None, None
    index, last_turn, last_at = runs[-1]
    if last_turn == mine:
        return "run", None, None, None
    later = [what for position, what in notices if position > index]
    if any(what != mine for what in later):
        return "run", started, None, None
    notice = None if mine in later else f"n/{mine}/{now:.3f}"
    return "refuse", notice, last_at, last_turn


def _released(turns: tuple[str, str]) -> str:
    """The turn history's entry for a gated run released unapplied."""
    return f"x/{turns[1]}/{time.time():.3f}"


def _not_applied(exc: BaseException) -> bool:
    """A definite "no": the remote refused (a 4xx other than 408/409), or the request never
    left (the connection was refused or never made)."""
    if isinstance(exc, NotApplied) or never_sent(exc):
        return True
    status = status_of(exc)
    return status is not None and 400 <= status < 500 and status not in (408, 409)


class IdempotencyHandle:
    """``fn.idempotency``: the key of a call, its record, and settling UNKNOWN outcomes."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        kind: Effect,
        scope: str | None,
        store: Store,
        ttl_seconds: float,
        unknown_ttl_seconds: float,
        lease_seconds: float,
        wait_seconds: float,
        key: Callable[..., Any] | None,
        checkpoint: bool,
        require_session: bool | None = None,
        require_durable: bool = False,
        remote_idempotent: bool = False,
        repeat: str = "confirm",
    ) -> None:
        #: What this handle is rebuilt from when pickled (its store by URL; no lock, no
        #: count, no flight travels).
        self._built_from = {k: v for k, v in locals().items() if k not in ("self", "fn")}
        self.fn = fn
        #: The remote deduplicates by the key: an uncertain outcome releases the record (the
        #: next call resends the same key) instead of leaving it UNKNOWN.
        self.remote_idempotent = remote_idempotent
        self.require_durable = require_durable
        self._durability_checked = False
        self.tool = name_of(fn)
        self.effect = kind
        self.scope = scope
        self.store = store
        self.ttl = ttl_seconds
        self.unknown_ttl = unknown_ttl_seconds
        self.lease = lease_seconds
        self.wait = wait_seconds
        self._key_fn = key
        self.checkpoint = checkpoint
        self.takeover = kind in (Effect.READ, Effect.IDEMPOTENT)
        #: A write with a checkpoint records its start in the store, so that an owner that
        #: died before it is taken over after its lease instead of leaving the record UNKNOWN.
        self._marks = checkpoint and not self.takeover
        #: The metadata of this tool's claims, by session (see _meta).
        self._metas: dict[str | None, str] = {}
        self._signature = inspect.signature(fn)
        names = list(self._signature.parameters)
        self._skip = bound_self(names)
        self._passes_key = KEY_PARAM in self._signature.parameters
        self._threads = ThreadFlights()
        self._key_position = names.index(KEY_PARAM) if self._passes_key else len(names) + 1
        self._keyers: dict[str | None, CallKeyer | None] = {}
        # Who holds a claim, for inspection; fences, not owners, tell claims apart.
        self._owner_id = f"{os.getpid()}-{id(self):x}"
        self._base_escaped = escape(self.scope or self.tool, "a scope")
        if repeat not in REPEAT_POLICIES:
            raise ValueError(f"idempotent: repeat must be one of {REPEAT_POLICIES}, got {repeat!r}")
        #: What an identical call in a later turn of a conversation does (see idempotent).
        self.repeat = repeat
        # Outside a session a derived key would be scoped by the tool alone, for every caller.
        self._needs_session = scope is None if require_session is None else require_session
        self._sync_claim = None if store.shared else store.claim
        #: Calls answered from a completed record, calls that ran, calls that waited for
        #: another caller's run (the report's counts).
        self.replays = 0
        self.executions = 0
        self.coalesced = 0

    def __reduce__(self) -> tuple[Any, ...]:
        """A decorated tool sent by value (Ray and cloudpickle do so for a tool defined in
        ``__main__``) carries its handle: it is rebuilt from the tool and its options in the
        process that loads it."""
        return (rebuild, (IdempotencyHandle, (self.fn,), self._built_from))

    # --- durability -------------------------------------------------------------------------

    def _check_durable(self) -> None:
        """Once per tool: records on a store that may lose them (MemoryStore, a Redis without
        persistence) log one warning per store, or raise with ``require_durable=True``; a
        lost record lets a completed write run again."""
        if self._durability_checked:
            return
        durable = getattr(self.store, "durable", None)
        self._durability_checked = True
        if durable:
            return
        what = "does not keep" if durable is False else "may not keep"
        message = (
            f"{self.tool}: idempotency records on {self.store!r}, which {what} them across a "
            "restart: a write completed before one would run again after it. Use Redis with "
            "AOF (appendonly yes) or a durable store for exactly-once across crashes."
        )
        if self.require_durable:
            self._durability_checked = False
            raise StoreError(message + " (require_durable=True)")
        if _first_warning_for(self.store):
            logger.warning("retrysafe: %s", message)

    # --- keys -------------------------------------------------------------------------------

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        if self._skip is not None:
            arguments.pop(self._skip, None)
        given_key = arguments.pop(KEY_PARAM, None)
        return arguments, given_key

    def _scope(self) -> str:
        """The key space of a derived key: the caller's identity and this tool's scope."""
        return self._full_scope(self._inner(_CURRENT_SESSION.get()))

    def _inner(self, sess: Session | None) -> str | None:
        """The identity part of a derived key's scope (None: the process-wide scope=)."""
        if sess is None:
            if self._needs_session:
                raise SessionRequiredError(
                    f"{self.tool} was called outside any session: its record would be shared "
                    "by every caller, and a second conversation's identical call would get the "
                    "first one's result. Bind the conversation with `with session(id):` (or a "
                    "retrysafe.integrations module), or give idempotent an explicit scope=.",
                    tool=self.tool,
                )
            return None
        if sess.turn is not None and self.repeat != "replay":
            return sess.turn_scope  # a record per turn ("confirm": see _turns)
        return sess.scope

    def _full_scope(self, inner: str | None) -> str:
        # "s/" + an identity's encoding, or "g:" for the process-wide scope of scope= outside
        # any session; the tool's scope escaped after the first ":" (no identity holds one).
        if inner is None:
            return "g:" + self._base_escaped
        return f"s/{inner}:{self._base_escaped}"

    def _explicit_key_given(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """True when the caller passed a key (``None`` in the slot means: retrysafe fills it)."""
        if not self._passes_key:
            return False
        if len(args) > self._key_position:
            return args[self._key_position] is not None
        return kwargs.get(KEY_PARAM) is not None

    def _keyer(self, inner: str | None) -> CallKeyer | None:
        """The native binder of derived keys in one identity's key space."""
        try:
            return self._keyers[inner]
        except KeyError:
            if len(self._keyers) > 4096:  # one per session: keep the table bounded
                self._keyers.clear()
            raw = self._full_scope(inner).encode()
            head = _KEY_TAG + len(raw).to_bytes(8, "big") + raw
            keyer = self._keyers[inner] = make_keyer(self.fn, "idem:", head, 0, hidden=(KEY_PARAM,))
            return keyer

    def _fast(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        """The record key ("idem:" + 64 hex) of a derived key in one native call, or None
        (the slow path)."""
        if self._key_fn is not None or self._explicit_key_given(args, kwargs):
            return None
        keyer = self._keyer(self._inner(_CURRENT_SESSION.get()))
        if keyer is None:
            return None
        record_key = keyer.key(args, kwargs)
        return None if record_key is None else str(record_key)

    def _keys(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[IdempKey | None, str, str, str]:
        """(key or None when derived fast, its hex, record key, argument fingerprint)."""
        record_key = self._fast(args, kwargs)
        if record_key is not None:
            # A derived key hashes the arguments itself: it is their fingerprint too.
            return None, record_key[5:], record_key, record_key
        key, record_key, fp = self._resolve_key(args, kwargs)
        return key, key.hex, record_key, fp

    def key_for(self, *args: Any, **kwargs: Any) -> IdempKey:
        """The idempotency key this call would use."""
        return self._resolve_key(args, kwargs)[0]

    def _resolve_key(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[IdempKey, str, str]:
        arguments, given = self._bind(args, kwargs)
        digest = fingerprint(arguments)
        if given is not None:
            key = given if isinstance(given, IdempKey) else IdempKey.explicit(str(given))
        elif self._key_fn is not None:
            made = self._key_fn(*args, **kwargs)
            key = made if isinstance(made, IdempKey) else IdempKey.explicit(str(made))
        else:
            key = IdempKey.for_args(scope=self._scope(), args=arguments)
            return key, f"idem:{key.hex}", digest
        return key, self._explicit_record_key(key), digest

    def _explicit_record_key(self, key: IdempKey) -> str:
        """Where a caller-given key's record lives: inside the caller's principal and tenant
        (never its conversation: an order id names one intent across them) and this tool's
        scope, so "order-1" of another tenant, principal or tool never meets this one."""
        scope = f"e/{partition_of(_CURRENT_SESSION.get())}:{self._base_escaped}"
        return "idem:" + idempotency_digest(scope, key.hex)

    def _record_key(self, key: IdempKey) -> str:
        """The record key of ``key`` as this context would use it: a key this handle derived
        already hashes its identity; any other is placed in the current partition."""
        scope = key.scope
        if scope is not None and (scope.startswith("s/") or scope.startswith("g:")):
            return f"idem:{key.hex}"
        return self._explicit_record_key(key)

    # --- turns: a repeat in a later turn is a new intent only once confirmed ----------------

    def _turns_key(self, sess: Session, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The conversation-wide history of this call's turns (derived keys only)."""
        keyer = self._keyer(sess.scope)
        found = None if keyer is None else keyer.key(args, kwargs)
        if found is None:
            arguments = self._bind(args, kwargs)[0]
            return f"idem:{idempotency_digest(self._full_scope(sess.scope), arguments)}:turns"
        return f"{found!s}:turns"

    def _turns(
        self, key: IdempKey, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str, str] | None:
        """(turn history key, escaped turn) when this call's turn gates it (``repeat=
        "confirm"``, a derived key, a session that knows its turn), else None."""
        if self.repeat != "confirm" or key.scope is None:
            return None
        sess = _CURRENT_SESSION.get()
        if sess is None or sess.turn is None:
            return None
        return self._turns_key(sess, args, kwargs), escape(sess.turn)

    def _refuse_repeat(
        self, key: IdempKey, verdict: tuple[str, str | None, float | None, str | None]
    ) -> RepeatNeedsConfirmationError:
        return RepeatNeedsConfirmationError(
            f"{self.tool}: an identical call already ran in an earlier turn of this "
            f"conversation (key {key}); not run again until a later turn confirms it",
            key=key,
            tool=self.tool,
            earlier_at=verdict[2],
            turn=verdict[3],
        )

    # --- settling ---------------------------------------------------------------------------

    def resolve(
        self,
        key: IdempKey,
        *,
        applied: Any = _UNSET,
        not_applied: bool = False,
        record_key: str | None = None,
    ) -> str | None:
        """Settle an UNKNOWN (or any) record: ``applied=result`` stores the result to replay,
        ``not_applied=True`` removes the record so the call can run again. Returns the state
        the record had."""
        if (applied is _UNSET) == (not not_applied):
            raise ValueError("resolve() takes exactly one of applied=... or not_applied=True")
        before = self.store.resolve(
            record_key or self._record_key(key),
            None if not_applied else applied,
            not not_applied,
            self.ttl,
        )
        if before == HELD:
            raise IdempotencyInProgressError(
                f"{self.tool}: the call with key {key} is running (its owner's lease is live): "
                "it is not settled by hand; wait for it, or for its lease to run out",
                key=key,
            )
        if before == "unknown":
            _telemetry.note_unknown(self.tool, -1)
        return before

    def record(self, key: IdempKey) -> Any:
        """The stored record of ``key`` (state, fence, payload), or None."""
        return self.store.record(self._record_key(key))

    # --- outcomes ---------------------------------------------------------------------------

    def _unknown(
        self, key: IdempKey, record_key: str, cause: BaseException | None
    ) -> OutcomeUnknownError:
        if cause is not None:  # this call left the record UNKNOWN (not one found so)
            _telemetry.note_unknown(self.tool, +1)
        said = None if cause is None else server_said(cause)
        err = OutcomeUnknownError(
            f"{self.tool}: the outcome of the call with key {key} is unknown (it may have been "
            "applied); resolve it before trying again"
            + ("" if said is None else f" (the server {said})")
            + f"; {settle_command(record_key)}",
            key=key,
            tool=self.tool,
        )
        err.record_key = record_key  # type: ignore[attr-defined]
        err.handle = self  # type: ignore[attr-defined]
        err.__cause__ = cause
        return err

    def _unstored(
        self, key: IdempKey, record_key: str, value: Any, cause: StoreError
    ) -> OutcomeUnknownError:
        """The write ran but its result was not stored (the store failed, or cannot keep a
        value of this type): an UNKNOWN outcome whose error carries the result."""
        _telemetry.note_unknown(self.tool, +1)
        err = OutcomeUnknownError(
            f"{self.tool}: the call with key {key} ran, but its result was not stored "
            f"({type(cause).__name__}); the record is UNKNOWN. The result is on this error's "
            "`.result`: settle the record with resolve(error, applied=...) before trying again, "
            f"or {settle_command(record_key)}",
            key=key,
            tool=self.tool,
        )
        err.result = value
        err.record_key = record_key  # type: ignore[attr-defined]
        err.handle = self  # type: ignore[attr-defined]
        return err

    def _lease_lost(
        self, key: IdempKey, value: Any, *, before: bool | None = None
    ) -> LeaseLostError:
        """The call no longer holds its record: ``before`` it started (nothing ran), during
        it (stopped at its next checkpoint), or after (None: the result was not stored)."""
        if before is None:
            err = LeaseLostError(
                f"{self.tool}: the lease on key {key} was lost (taken over); the result was not "
                "stored (it is on this error's `.result`)",
                key=key,
            )
            err.result = value
            return err
        return LeaseLostError(
            f"{self.tool}: the lease on key {key} ran out or was taken over "
            + (
                "before the call started: it did not run"
                if before
                else "while it ran: it was stopped"
            ),
            key=key,
        )

    def _claim_outcome(self, claim: Claim, key: IdempKey, record_key: str) -> tuple[bool, Any]:
        """(True, payload) to replay; (False, None) to keep waiting; raises otherwise."""
        status = claim.status
        if status == "completed":
            self.coalesced += 1
            _telemetry.note("replayed")
            return True, claim.payload
        if status == "mismatch":
            raise IdempotencyKeyMismatchError(
                f"{self.tool}: key {key} was already used with different arguments", key=key
            )
        if status == "unknown":
            raise self._unknown(key, record_key, None)
        if status == "abandoned":  # only a claim given up before it arrived gets this
            raise StoreError(f"{self.tool}: the claim of key {key} arrived after it was given up")
        return False, None

    def _in_progress(self, key: IdempKey) -> IdempotencyInProgressError:
        return IdempotencyInProgressError(
            f"{self.tool}: the call with key {key} is still running elsewhere after {self.wait:g}s",
            key=key,
        )

    def _with_key(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], key: IdempKey
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The call's arguments with the key in the function's ``idempotency_key`` slot, where
        the caller left it empty: by keyword, or positionally (openai-agents passes every
        parameter positionally, ``None`` for the key)."""
        if not self._passes_key:
            return args, kwargs
        position = self._key_position
        if len(args) > position:
            if args[position] is None:
                return (*args[:position], str(key), *args[position + 1 :]), kwargs
            return args, kwargs
        if kwargs.get(KEY_PARAM) is None:
            return args, {**kwargs, KEY_PARAM: str(key)}
        return args, kwargs

    def _after_error(self, exc: BaseException, state: _CallState) -> str:
        """'release', 'suspend' or 'unknown' for a failed run."""
        if isinstance(exc, _Repeated):
            return "unknown"
        if _SUSPENSIONS and isinstance(exc, _SUSPENSIONS):
            return "suspend"
        if self.remote_idempotent:
            # Whatever happened, the next call resends the same key and the remote answers
            # it once: nothing is left to settle by hand. (A derived key is the same for the
            # same arguments; an explicit one is the caller's.)
            return "release"
        if isinstance(exc, _Stopped):  # a checkpoint stopped it before it acted
            return "release"
        if not isinstance(exc, Exception):  # cancellation, KeyboardInterrupt
            return "unknown" if self.effect.repeats_side_effect and state.started else "release"
        if not self.effect.repeats_side_effect or not state.started or _not_applied(exc):
            return "release"
        return "unknown"

    @staticmethod
    def _claimed_fence(claim: Claim) -> int:
        """The fence of a claim this caller won; a takeover of a vanished owner's record is
        a span event."""
        if claim.takeover:
            _telemetry.note_takeover(claim.fence)
        return claim.fence

    def _started(self, key: IdempKey) -> None:
        """The tool is about to run under its claim (the report's and the span's count)."""
        self.executions += 1
        _telemetry.note("executed")
        _telemetry.note_key(key)

    # --- not before: a released write the server asked to wait for ---------------------------

    def _not_before_after(self, exc: BaseException) -> tuple[float, float] | None:
        """(value, ttl) to store after a released failure whose server asked to wait
        (429 or 503 with Retry-After): the wall-clock time before which no repeat is sent."""
        if not isinstance(exc, Exception):
            return None
        hint = server_hint(exc)
        if hint is None or not hint.delay or hint.delay <= 0:
            return None
        return time.time() + hint.delay, hint.delay

    def _wait_before_sending(self, stored: Any, key: IdempKey) -> float:
        """Seconds to wait before the claimed call may go out (0: now); raises
        :class:`RetryLaterError` when the server's time is further off than a caller waits
        (``wait_seconds``, and half the lease, so the claim outlives the wait)."""
        if not isinstance(stored, (int, float)) or isinstance(stored, bool):
            return 0.0  # MISS, or nothing this module wrote
        left = stored - time.time()
        if left <= 0:
            return 0.0
        if left <= min(self.wait, self.lease / 2):
            return left
        raise RetryLaterError(
            f"{self.tool}: the server asked to wait before key {key} is sent again; "
            f"{left:.1f} s are left, more than this call waits",
            retry_after=left,
            key=key,
            tool=self.tool,
        )

    # --- claims: one the caller could not read is given up by it ----------------------------

    def _claim_args(self, record_key: str, digest: str, nonce: str | None) -> tuple[Any, ...]:
        """The arguments of ``Store.claim`` for this tool's claim of ``record_key``."""
        return (
            record_key,
            digest,
            self._owner_id,
            self.lease,
            self.ttl,
            self.takeover,
            nonce,
            self._marks,
            self._meta(),
        )

    def _meta(self) -> str:
        """What a record says of its claim, for operators (``retrysafe records``): this
        tool's name and the identity it runs under, never an argument value. One JSON text
        per session, made once."""
        sess = _CURRENT_SESSION.get()
        scope = None if sess is None else sess.scope  # the identity, injectively (a str)
        made = self._metas.get(scope)
        if made is None:
            fields: dict[str, str] = {"tool": self.tool}
            if sess is not None:
                for name in ("tenant", "principal"):
                    value = getattr(sess, name)
                    if value is not None:
                        fields[name] = value
                fields["conversation"] = sess.id
            import json  # (at the first claim: not a cost of `import retrysafe`)

            made = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
            if len(self._metas) >= 4096:
                self._metas.clear()
            self._metas[scope] = made
        return made

    async def _aclaim(self, record_key: str, digest: str) -> Claim:
        nonce = fence_nonce()
        try:
            return await self.store.aclaim(*self._claim_args(record_key, digest, nonce))
        except BaseException as exc:  # no reply (lost, timed out) or cancelled: it may have landed
            if not _unserializable(exc):
                self._abandon_later(record_key, nonce)
            raise

    def _claim(self, record_key: str, digest: str) -> Claim:
        nonce = fence_nonce()
        try:
            return self.store.claim(*self._claim_args(record_key, digest, nonce))
        except BaseException as exc:
            if not _unserializable(exc):
                self._abandon_later(record_key, nonce)
            raise

    def _abandon_later(self, record_key: str, nonce: str) -> None:
        """A claim whose reply this caller never read never ran: its record (if it landed, or
        lands later) is removed by its nonce, in the background, so it is not left for its
        lease to run out and turn UNKNOWN."""
        store = self.store
        settle_later(
            f"give up a claim of {self.tool} whose reply was lost",
            lambda: store.abandon(record_key, nonce),
        )

    async def _bounded(
        self,
        what: str,
        attempt: Callable[[], Any],
        later: Callable[[], object],
    ) -> bool:
        """Make a record transition the call owes, shielded from the caller's cancellation
        but not past its deadline (plus :data:`SETTLE_GRACE`); if the store fails or does not
        answer in time, hand it to the background. True if it was made inline; a value the
        store cannot take raises its :class:`StoreError`."""
        start = anyio.current_time()
        deadline = max(anyio.current_effective_deadline(), start) + SETTLE_GRACE
        with anyio.CancelScope(shield=True, deadline=deadline):
            try:
                await attempt()
                return True
            except StoreError as exc:
                if _unserializable(exc):  # the store answered: no later attempt can help
                    raise
        settle_later(f"{what} ({self.tool})", later)
        return False

    # --- async ------------------------------------------------------------------------------

    def replay(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """The in-process fast path: ``(True, payload)`` for a completed record, else the
        keys and claim for :meth:`acall`. Only for stores without I/O."""
        assert self._sync_claim is not None
        if not self._durability_checked:
            self._check_durable()
        record_key: Any = None
        sess = _CURRENT_SESSION.get()
        if (
            self._key_fn is None
            and (sess is not None or not self._needs_session)
            and not self._explicit_key_given(args, kwargs)
        ):
            keyer = self._keyers.get(self._inner(sess))
            if keyer is not None:
                record_key = keyer.key(args, kwargs)
        if record_key is None:
            keys = self._keys(args, kwargs)
        else:
            keys = (None, record_key[5:], record_key, record_key)
        # Inlined (the memory replay path): the arguments of _claim_args, without a nonce.
        claim = self._sync_claim(
            keys[2],
            keys[3],
            self._owner_id,
            self.lease,
            self.ttl,
            self.takeover,
            None,
            self._marks,
            self._meta(),
        )
        if claim.status == "completed":
            self.replays += 1
            return (True, claim.payload)
        return (False, keys, claim)

    async def acall(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        keys: tuple[IdempKey | None, str, str, str] | None = None,
        claim: Claim | None = None,
    ) -> Any:
        if not self._durability_checked:
            await anyio.to_thread.run_sync(self._check_durable, abandon_on_cancel=True)  # once
        key, digest_hex, record_key, digest = keys or self._keys(args, kwargs)
        if claim is None:
            claim = await self._aclaim(record_key, digest)
        if claim.status == "completed":
            self.replays += 1
            return claim.payload  # a replay: one store call
        if key is None:
            key = IdempKey("ik_" + digest_hex[:32], digest_hex, self._scope())
        if claim.status != "claimed":
            self._claim_outcome(claim, key, record_key)  # mismatch, unknown: raise
        # In progress: identical calls in this loop wait for one of them, so a burst never
        # holds a store connection per caller. A fresh claim is ours: we lead.
        first = claim if claim.status == "claimed" else None
        return await join_or_lead(
            (id(self), record_key),
            lambda: self._aclaim_and_run(key, record_key, digest, args, kwargs, first),
            wait_seconds=self.wait,
            on_timeout=lambda: self._in_progress(key),
            force_lead=first is not None,
        )

    async def _aclaim_and_run(
        self,
        key: IdempKey,
        record_key: str,
        digest: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        first: Claim | None,
    ) -> Any:
        if first is not None:
            return await self._arun(key, record_key, self._claimed_fence(first), args, kwargs)
        store = self.store
        give_up_at = time.monotonic() + self.wait
        delay = 0.01
        while True:
            claim = await self._aclaim(record_key, digest)
            if claim.status == "claimed":
                return await self._arun(key, record_key, self._claimed_fence(claim), args, kwargs)
            done, payload = self._claim_outcome(claim, key, record_key)
            if done:
                return payload
            if time.monotonic() >= give_up_at:
                raise self._in_progress(key)
            async with store.awatch(record_key) as watcher:
                again = await self._aclaim(record_key, digest)
                if again.status == "claimed":
                    return await self._arun(
                        key, record_key, self._claimed_fence(again), args, kwargs
                    )
                done, payload = self._claim_outcome(again, key, record_key)
                if done:
                    return payload
                left = give_up_at - time.monotonic()
                await watcher.wait(max(0.0, min(delay, left, again.lease_left or delay)))
            delay = min(delay * 2, 0.5)

    async def _arun(
        self,
        key: IdempKey,
        record_key: str,
        fence: int,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        store = self.store
        held = Held(self.lease * _LEASE_SHARE)
        turns = self._turns(key, args, kwargs)
        try:
            if turns is not None:
                history = await store.arecent(turns[0], None, _TURNS_KEPT, self.ttl)
                verdict = turn_verdict(history, turns[1], time.time())
                if verdict[1] is not None:
                    await store.arecent(turns[0], verdict[1], _TURNS_KEPT, self.ttl)
                if verdict[0] == "refuse":
                    raise self._refuse_repeat(key, verdict)
            # Only a key claimed before can have been released with a server's wait: the
            # first claim of a key reads nothing more (claim + complete stay two trips).
            resumed = False
            if claim_number(fence) > 1:
                pause = self._wait_before_sending(await store.aget(record_key + _NOT_BEFORE), key)
                if pause:
                    await anyio.sleep(pause)
                if self.checkpoint and _SUSPENSIONS:
                    resumed = await store.aget(record_key + _SUSPENDED) == "started"
            # Never start past the caller's deadline, nor on a lease that ran out meanwhile.
            await _not_past_deadline()
            if not held.valid():
                raise self._lease_lost(key, None, before=True)
        except BaseException:
            await self._bounded(
                "release a claim that did not run",
                lambda: store.arelease(record_key, fence),
                lambda: store.release(record_key, fence),
            )
            raise
        state = _CallState(
            key, not self.checkpoint, (record_key, fence, self.ttl), store, held, self._marks
        )
        state.resumed_started = resumed and self._noted_kind()
        self._started(key)
        token = _STATE.set(state)
        try:
            call_args, call_kwargs = self._with_key(args, kwargs, key)
            value = await run_with_heartbeat(
                lambda: self.fn(*call_args, **call_kwargs),
                lambda: store.aheartbeat(record_key, fence, self.lease),
                self.lease / 3,
                held,
                lambda: self._lease_lost(key, None, before=False),
            )
        except BaseException as exc:
            outcome = await self._asettle_failure(exc, state, record_key, fence, turns)
            if outcome == "unknown" and isinstance(exc, Exception) and not held.lost:
                raise self._unknown(key, record_key, exc) from exc
            raise
        finally:
            _STATE.reset(token)
        stored: bool | None = None

        async def complete() -> None:
            nonlocal stored
            stored = await store.acomplete(record_key, fence, value, self.ttl)

        try:
            # The side effect ran: its result is stored even if the caller was cancelled
            # meanwhile (within its deadline's grace; else in the background).
            done = await self._bounded(
                "store a result",
                complete,
                lambda: store.complete(record_key, fence, value, self.ttl),
            )
        except StoreError as exc:  # the value itself cannot be stored
            done, stored = False, None
            cause: StoreError | None = exc
        else:
            cause = None
        if not done:
            error = cause or StoreError(f"{self.tool}: the store did not take the result in time")
            if cause is not None or stored is None:
                await self._bounded(
                    "mark a record UNKNOWN",
                    lambda: store.amark_unknown(record_key, fence, self.unknown_ttl),
                    lambda: store.mark_unknown(record_key, fence, self.unknown_ttl),
                )
            raise self._unstored(key, record_key, value, error) from error
        if not stored:
            raise self._lease_lost(key, value)
        return value

    def _failure_steps(
        self,
        exc: BaseException,
        state: _CallState,
        record_key: str,
        fence: int,
        turns: tuple[str, str] | None,
    ) -> tuple[str, Callable[[], Any], Callable[[], object]]:
        """What a failed run owes its record: ``(outcome, async steps, the same steps sync)``."""
        store = self.store
        outcome = self._after_error(exc, state)
        if outcome == "unknown" and isinstance(exc, _Repeated):
            # The note has done its work: the record is UNKNOWN now, and once a person
            # settles it the next call runs as any other.
            note = record_key + _SUSPENDED

            async def unknown_steps() -> None:
                await store.amark_unknown(record_key, fence, self.unknown_ttl)
                await store.adelete(note)

            def sync_unknown_steps() -> None:
                store.mark_unknown(record_key, fence, self.unknown_ttl)
                store.delete(note)

            return outcome, unknown_steps, sync_unknown_steps
        if outcome == "unknown":
            return (
                outcome,
                lambda: store.amark_unknown(record_key, fence, self.unknown_ttl),
                lambda: store.mark_unknown(record_key, fence, self.unknown_ttl),
            )
        not_before = self._not_before_after(exc)
        # A suspension after the side effect started is noted for the resume; one before
        # it, like a release, never acted.
        noted = outcome == "suspend" and self._noted(state)
        entry = None if turns is None or noted else _released(turns)

        async def steps() -> None:
            await store.arelease(record_key, fence)
            if turns is not None and entry is not None:
                await store.arecent(turns[0], entry, _TURNS_KEPT, self.ttl)
            if not_before is not None:
                await store.aset(record_key + _NOT_BEFORE, *not_before)
            if noted:
                await store.aset(record_key + _SUSPENDED, "started", self.ttl)

        def sync_steps() -> None:
            store.release(record_key, fence)
            if turns is not None and entry is not None:
                store.recent(turns[0], entry, _TURNS_KEPT, self.ttl)
            if not_before is not None:
                store.set(record_key + _NOT_BEFORE, *not_before)
            if noted:
                store.set(record_key + _SUSPENDED, "started", self.ttl)

        return outcome, steps, sync_steps

    def _noted_kind(self) -> bool:
        """Whether a resumed call of this tool must not start its side effect again."""
        return self.effect.repeats_side_effect and not self.remote_idempotent

    def _noted(self, state: _CallState) -> bool:
        """Whether a suspension of this call leaves a note for its resume: its checkpoint
        had passed on a write whose remote does not deduplicate."""
        return self.checkpoint and state.started and self._noted_kind()

    async def _asettle_failure(
        self,
        exc: BaseException,
        state: _CallState,
        record_key: str,
        fence: int,
        turns: tuple[str, str] | None = None,
    ) -> str:
        outcome, steps, sync_steps = self._failure_steps(exc, state, record_key, fence, turns)
        await self._bounded(f"settle a failed call ({outcome})", steps, sync_steps)
        return outcome

    # --- sync -------------------------------------------------------------------------------

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not self._durability_checked:
            self._check_durable()
        key, digest_hex, record_key, digest = self._keys(args, kwargs)
        claim = self._claim(record_key, digest)
        if claim.status == "completed":
            self.replays += 1
            return claim.payload  # a replay: one store call
        if key is None:
            key = IdempKey("ik_" + digest_hex[:32], digest_hex, self._scope())
        if claim.status != "claimed":
            self._claim_outcome(claim, key, record_key)  # mismatch, unknown: raise
        first = claim if claim.status == "claimed" else None
        return self._threads.join_or_lead(
            record_key,
            lambda: self._claim_and_run(key, record_key, digest, args, kwargs, first),
            wait_seconds=self.wait,
            on_timeout=lambda: self._in_progress(key),
            force_lead=first is not None,
        )

    def _claim_and_run(
        self,
        key: IdempKey,
        record_key: str,
        digest: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        first: Claim | None,
    ) -> Any:
        if first is not None:
            return self._run(key, record_key, self._claimed_fence(first), args, kwargs)
        store = self.store
        give_up_at = time.monotonic() + self.wait
        delay = 0.01
        while True:
            claim = self._claim(record_key, digest)
            if claim.status == "claimed":
                return self._run(key, record_key, self._claimed_fence(claim), args, kwargs)
            done, payload = self._claim_outcome(claim, key, record_key)
            if done:
                return payload
            if time.monotonic() >= give_up_at:
                raise self._in_progress(key)
            with store.watch(record_key) as watcher:
                again = self._claim(record_key, digest)
                if again.status == "claimed":
                    return self._run(key, record_key, self._claimed_fence(again), args, kwargs)
                done, payload = self._claim_outcome(again, key, record_key)
                if done:
                    return payload
                left = give_up_at - time.monotonic()
                watcher.wait(max(0.0, min(delay, left, again.lease_left or delay)))
            delay = min(delay * 2, 0.5)

    def _run(
        self,
        key: IdempKey,
        record_key: str,
        fence: int,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        store = self.store
        held = Held(self.lease * _LEASE_SHARE)
        turns = self._turns(key, args, kwargs)
        try:
            if turns is not None:
                history = store.recent(turns[0], None, _TURNS_KEPT, self.ttl)
                verdict = turn_verdict(history, turns[1], time.time())
                if verdict[1] is not None:
                    store.recent(turns[0], verdict[1], _TURNS_KEPT, self.ttl)
                if verdict[0] == "refuse":
                    raise self._refuse_repeat(key, verdict)
            resumed = False
            if claim_number(fence) > 1:
                pause = self._wait_before_sending(store.get(record_key + _NOT_BEFORE), key)
                if pause:
                    time.sleep(pause)
                if self.checkpoint and _SUSPENSIONS:
                    resumed = store.get(record_key + _SUSPENDED) == "started"
            if not held.valid():
                raise self._lease_lost(key, None, before=True)
        except BaseException:
            self._settle_now_or_later(
                "release a claim that did not run", lambda: store.release(record_key, fence)
            )
            raise
        state = _CallState(
            key, not self.checkpoint, (record_key, fence, self.ttl), store, held, self._marks
        )
        state.resumed_started = resumed and self._noted_kind()
        self._started(key)
        token = _STATE.set(state)
        stop = start_heartbeat(
            lambda: store.heartbeat(record_key, fence, self.lease), self.lease / 3, held
        )
        try:
            call_args, call_kwargs = self._with_key(args, kwargs, key)
            value = self.fn(*call_args, **call_kwargs)
        except BaseException as exc:
            stop.set()
            outcome, _, steps = self._failure_steps(exc, state, record_key, fence, turns)
            self._settle_now_or_later(f"settle a failed call ({outcome})", steps)
            if outcome == "unknown" and isinstance(exc, Exception) and not held.lost:
                raise self._unknown(key, record_key, exc) from exc
            raise
        finally:
            stop.set()
            _STATE.reset(token)
        try:
            stored = store.complete(record_key, fence, value, self.ttl)
        except StoreError as exc:
            self._settle_now_or_later(
                "mark a record UNKNOWN",
                lambda: store.mark_unknown(record_key, fence, self.unknown_ttl),
            )
            if not _unserializable(exc):  # the store may take it when it is back
                settle_later(
                    f"store a result ({self.tool})",
                    lambda: store.complete(record_key, fence, value, self.ttl),
                )
            raise self._unstored(key, record_key, value, exc) from exc
        if not stored:
            raise self._lease_lost(key, value)
        return value

    def _settle_now_or_later(self, what: str, steps: Callable[[], object]) -> None:
        try:
            steps()
        except StoreError:
            settle_later(f"{what} ({self.tool})", steps)


class _IdempotentDecorator(Protocol):
    """``@idempotent(...)``: the decorated function keeps its signature."""

    def __call__(self, fn: Callable[P, T], /) -> IdempotentTool[P, T]: ...


@overload
def idempotent(fn: Callable[P, T], /) -> IdempotentTool[P, T]: ...


@overload
def idempotent(
    fn: None = None,
    /,
    *,
    scope: str | None = None,
    store: Any = None,
    ttl_seconds: float = 86400,
    lease_seconds: float = 30,
    wait_seconds: float = 30,
    key: Callable[..., Any] | None = None,
    effect: Effect | str | None = None,
    checkpoint: bool = False,
    unknown_ttl_seconds: float = 259200,
    require_session: bool | None = None,
    require_durable: bool = False,
    remote_idempotent: bool = False,
    repeat: str = "confirm",
) -> _IdempotentDecorator: ...


def idempotent(
    fn: Any = None,
    /,
    *,
    scope: str | None = None,
    store: Any = None,
    ttl_seconds: float = 86400,
    lease_seconds: float = 30,
    wait_seconds: float = 30,
    key: Callable[..., Any] | None = None,
    effect: Effect | str | None = None,
    checkpoint: bool = False,
    unknown_ttl_seconds: float = 259200,
    require_session: bool | None = None,
    require_durable: bool = False,
    remote_idempotent: bool = False,
    repeat: str = "confirm",
) -> Any:
    """Run a tool at most once per idempotency key; retries get the stored result.

    ``@idempotent`` or ``@idempotent(scope=..., store=..., ...)`` on async or sync functions.

    - The key: ``IdempKey.for_args`` over the current session, ``scope`` (default: the tool's
      name) and the bound arguments; or an explicit key from ``key=`` (a callable given the
      call's arguments) or from the caller's ``idempotency_key=`` argument.
    - The tool receives its key as ``idempotency_key=`` when it declares that parameter, and
      always through :func:`current_key`.
    - ``effect``: defaults to the tool's tag; untagged counts as DESTRUCTIVE. READ and
      IDEMPOTENT records whose owner vanished are taken over; WRITE/DESTRUCTIVE ones turn
      UNKNOWN (:class:`OutcomeUnknownError`), never silently re-run.
    - ``checkpoint=True``: the tool calls :func:`side_effect_started` before acting; failures
      before that point release the record.
    - ``ttl_seconds``: how long a result is replayed; ``lease_seconds``: the owner's lease
      (renewed while it runs); ``wait_seconds``: how long a concurrent caller waits for the
      owner before :class:`IdempotencyInProgressError`.
    - Sessions: a derived key is scoped by the current :func:`session`. Outside one, a call
      raises :class:`SessionRequiredError` unless ``scope=`` was given (then the scope alone
      is the key's scope, for every caller) or the caller passed an explicit key;
      ``require_session=True`` demands a session even with a scope.
    - The wrapper's ``inspect.signature`` leaves out ``idempotency_key``, so no framework
      offers it to a model; a call that does not bind raises TypeError before any claim.
    - ``remote_idempotent=True``: the tool sends its key to a remote that deduplicates by
      it, so a timeout, a lost connection or a cancellation releases the record instead of
      leaving it UNKNOWN: the next call (a retry, or the model's repeat) sends the same key.
    - A released write whose server asked to wait (429 or 503 with ``Retry-After``) keeps
      that time: a repeat waits for it (up to ``wait_seconds`` and half the lease) or raises
      :class:`RetryLaterError`, whose ``llm_hint`` says when to call again. An UNKNOWN
      outcome's error says what the server answered.
    - Durability: records on a store that may lose them across a restart (``store.durable``
      not True: MemoryStore, a Redis without AOF or snapshots) log one warning per store;
      ``require_durable=True`` raises :class:`StoreError` instead.
    - Identity: a derived key lives inside the session's principal, tenant and conversation;
      a caller-given key (``idempotency_key=``, ``key=``) inside its principal and tenant and
      this tool. No caller of another principal or tenant can replay, block or detect it.
    - ``repeat``: an identical call in a later *turn* of the conversation (where the session
      knows its turn). ``"confirm"`` (default): it is not run, and the caller gets
      :class:`RepeatNeedsConfirmationError`, whose hint tells the model when the earlier call
      ran and to ask the user; the identical call in the turn of the user's reply runs as a new
      intent. Calls within one turn (the model looping, a lost response, a crashed run
      re-executed) replay. ``"replay"``: every identical call of the conversation replays.
      ``"allow"``: each turn is a new intent.

    The store is an in-process ``MemoryStore`` by default; use Redis for a swarm. If the store
    fails, the call fails closed with :class:`StoreError`.
    """

    def decorate(func: Any) -> Any:
        check_decoratable(func, "@idempotent")
        for name, value in (
            ("ttl_seconds", ttl_seconds),
            ("lease_seconds", lease_seconds),
            ("wait_seconds", wait_seconds),
            ("unknown_ttl_seconds", unknown_ttl_seconds),
        ):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"idempotent: {name} must be a positive number, got {value!r}")
        kind = (
            Effect.parse(effect) if effect is not None else (get_effect(func) or Effect.DESTRUCTIVE)
        )
        handle = IdempotencyHandle(
            func,
            kind=kind,
            scope=scope,
            store=resolve_store(store),
            ttl_seconds=ttl_seconds,
            unknown_ttl_seconds=unknown_ttl_seconds,
            lease_seconds=lease_seconds,
            wait_seconds=wait_seconds,
            key=key,
            checkpoint=checkpoint,
            require_session=require_session,
            require_durable=require_durable,
            remote_idempotent=remote_idempotent,
            repeat=repeat,
        )
        if is_async(func) and handle._sync_claim is not None:
            replay = handle.replay

            async def memory_wrapper(*args: Any, **kwargs: Any) -> Any:
                found = replay(args, kwargs)
                if found[0]:
                    return found[1]
                return await handle.acall(args, kwargs, found[1], found[2])

            wrapper: Any = functools.wraps(func)(memory_wrapper)
        elif is_async(func):

            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await handle.acall(args, kwargs)

            wrapper = functools.wraps(func)(async_wrapper)
        else:

            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                return handle.call(args, kwargs)

            wrapper = functools.wraps(func)(sync_wrapper)
        hide_parameters(wrapper, func, (KEY_PARAM,))
        wrapper.idempotency = handle
        return wrapper

    if fn is not None:
        return decorate(fn)
    return decorate


def resolve(
    error: OutcomeUnknownError, *, applied: Any = _UNSET, not_applied: bool = False
) -> str | None:
    """Settle the UNKNOWN outcome an :class:`OutcomeUnknownError` reported.

    ``resolve(err, applied=result)``: it happened; retries now replay ``result``.
    ``resolve(err, not_applied=True)``: it did not; the next call runs the tool.
    """
    handle = getattr(error, "handle", None)
    if not isinstance(handle, IdempotencyHandle) or not isinstance(error.key, IdempKey):
        raise TypeError(
            "resolve() takes an OutcomeUnknownError raised by an @idempotent tool in this "
            "process; for one from another process (unpickled), use the tool's "
            "fn.idempotency.resolve(error.key, ..., record_key=error.record_key)"
        )
    return handle.resolve(
        error.key,
        applied=applied,
        not_applied=not_applied,
        record_key=getattr(error, "record_key", None),
    )


_Args = ParamSpec("_Args")
_Result = TypeVar("_Result", covariant=True)


class IdempotentTool(Protocol[_Args, _Result]):
    """A function decorated by ``@idempotent``, ``@tool.write``, ``@tool.destructive`` or
    ``@tool.idempotent``: called as the function itself, with ``fn.idempotency``."""

    __name__: str
    __qualname__: str
    __module__: str
    __wrapped__: Any

    @property
    def idempotency(self) -> IdempotencyHandle:
        """Its records: ``key_for(...)``, ``record(key)``, ``resolve(key, ...)``."""
        ...

    def __call__(self, *args: _Args.args, **kwargs: _Args.kwargs) -> _Result: ...
