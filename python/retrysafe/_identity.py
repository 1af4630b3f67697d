"""Who is calling, in which conversation and turn: the one home of a call's identity.

A call's identity has parts of different trust (see DESIGN.md, "Sessions and frameworks"):

- ``principal``: who is calling. Set only by server-side code (an auth layer, an
  integration reading the authenticated token), never from a request's payload or ``_meta``.
- ``tenant``: the organisation the principal acts for (server-side too).
- ``id``: the conversation. A client may name it, but it is only ever a conversation *within*
  the principal and tenant: two principals naming the same conversation never meet.
- ``turn``: the user turn within the conversation, where a framework knows it.

Every key retrysafe derives lives inside its identity, through one injective encoding
(:func:`escape` of each part, fixed tags, fixed order): distinct identities never share a
record, a cache entry, a guard budget or a key namespace, whatever characters the parts hold.
Each layer's keys start with their own tag (``idem:``, ``cache:``, ``guard/``, ``budget:``), so
key spaces are disjoint by construction and deleting one never reaches another.

This module imports nothing of retrysafe's: every layer (records, caches, guards, stores,
integrations) builds on it.
"""

from __future__ import annotations

import functools
import inspect
import re
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

__all__ = [
    "ANONYMOUS",
    "CallState",
    "Session",
    "current_call",
    "current_session",
    "escape",
    "is_async",
    "name_of",
    "partition_of",
    "session",
]

#: The partition of calls that bind no principal and no tenant (and of calls outside any
#: session): distinct from every encoded identity, which holds ``=``.
ANONYMOUS = "-"

# Characters a part may not hold raw: the encoding's own delimiters (% / : =), the glob and
# LIKE metacharacters of the stores' prefix scans (* ? [ ] \ and, for LIKE, % and _ are
# escaped by the SQL stores themselves), Redis Cluster's hash-tag braces, and controls and
# space (PostgreSQL text holds no NUL; keys stay printable in logs and tools).
_UNSAFE = re.compile(r"[%/:=*?\[\]\\{}\x00-\x20\x7f]")


def _percent(match: re.Match[str]) -> str:
    return f"%{ord(match.group()):02X}"


def escape(part: str, what: str = "an identity part") -> str:
    """``part`` with every delimiter, metacharacter and control character as ``%XX``:
    injective (``%`` itself is escaped), and free of ``/ : = * ? [ ] { }``.

    Raises ValueError naming ``what`` for a value that is not a str or holds a lone
    surrogate (it has no UTF-8 form, so no store could keep it)."""
    if type(part) is str and part.isascii():
        # The usual part (an id, a name): one scan, and nothing built when nothing is
        # escaped (`sub` with a function costs half again as much on a clean string).
        return part if _UNSAFE.search(part) is None else _UNSAFE.sub(_percent, part)
    if not isinstance(part, str):
        raise ValueError(f"{what} must be a str, got {type(part).__name__}")
    if not part.isascii():
        try:
            part.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"{what} holds a lone surrogate at index {exc.start}, which has no UTF-8 form"
            ) from None
    return _UNSAFE.sub(_percent, part)


@dataclass(frozen=True, slots=True)
class Session:
    """A call's identity: the conversation ``id``, and the ``tenant``, ``principal`` and
    ``turn`` where known (see :func:`session`)."""

    id: str
    tenant: str | None = None
    principal: str | None = None
    turn: str | None = None
    #: The conversation's key space: principal, tenant and conversation, encoded injectively
    #: (``p=alice/t=acme/c=chat-9``). Records and loop-guard budgets live inside it.
    scope: str = field(init=False, repr=False, compare=False)
    #: The principal's and tenant's key space (``p=alice/t=acme``, or ``-`` for neither):
    #: caches and explicit idempotency keys live inside it, shared by its conversations.
    partition: str = field(init=False, repr=False, compare=False)
    #: ``scope`` with the turn (``.../n=3``): the key space of one user turn (``scope``
    #: itself without a turn). Computed once: the replay path reads it on every call.
    turn_scope: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.principal is None and self.tenant is None:
            # An engine's unit, or a conversation of no one in particular.
            partition = ANONYMOUS
            scope = "c=" + escape(self.id, "a session id")
        else:
            parts = []
            if self.principal is not None:
                parts.append("p=" + escape(self.principal, "a principal"))
            if self.tenant is not None:
                parts.append("t=" + escape(self.tenant, "a tenant"))
            partition = "/".join(parts)
            scope = f"{partition}/c={escape(self.id, 'a session id')}"
        put = object.__setattr__
        put(self, "partition", partition)
        put(self, "scope", scope)
        turn = self.turn
        put(self, "turn_scope", scope if turn is None else f"{scope}/n={escape(turn, 'a turn')}")


_CURRENT: ContextVar[Session | None] = ContextVar("retrysafe_session", default=None)
#: The model's id of the tool call running now (``gen_ai.tool.call.id``), where the framework
#: gives one: reported in spans and logs, never part of a key (a model's repeat of a call
#: carries a new id, and must still replay).
TOOL_CALL_ID: ContextVar[str | None] = ContextVar("retrysafe_tool_call_id", default=None)

#: Sessions made recently, by their parts: integrations enter one per tool call, and a frozen
#: dataclass costs a microsecond to build. Sessions are immutable, so sharing is safe.
_MADE: dict[tuple[object, ...], Session] = {}


def _check_part(value: Any, what: str, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        got = "an empty str" if value == "" else type(value).__name__
        raise ValueError(
            f"{what} must be a non-empty str{' or None' if optional else ''}, got {got}"
        )


class session:
    """Bind a call identity for the calls made inside it, in sync and async code.

    >>> with session("chat-42", tenant="acme"):
    ...     charge(...)            # keys and guards live inside acme's chat-42
    >>> async with session(conversation_id, principal=user_id, turn=str(turn_index)):
    ...     await charge(...)

    - ``id``: the conversation. Records of writes and loop-guard budgets are per conversation.
    - ``tenant``, ``principal``: who is calling. Set them from server-side code only (the
      authenticated user, never a value a client or a model sends). Caches and explicit
      idempotency keys are shared by a principal's and tenant's conversations, never across.
    - ``turn``: the user turn, where known: a write repeated in a later turn is not replayed
      silently (see ``repeat=`` of :func:`~retrysafe.idempotent`).
    - ``tool_call_id``: the model's id of the call (reported in spans; never part of a key).

    A nested ``session`` inherits the enclosing principal and tenant, and may not change
    them: server-side code binds who is calling once, and tool code cannot step outside it.
    Context-local: concurrent tasks each see their own session.
    """

    __slots__ = ("_call_token", "_token", "tool_call_id", "value")

    def __init__(
        self,
        id: str,
        *,
        tenant: str | None = None,
        principal: str | None = None,
        turn: str | None = None,
        tool_call_id: str | None = None,
    ) -> None:
        outer = _CURRENT.get()
        if outer is not None:
            principal = _inherit(outer.principal, principal, "principal")
            tenant = _inherit(outer.tenant, tenant, "tenant")
        try:
            made = _MADE.get((id, tenant, principal, turn))
        except TypeError:  # an unhashable part: the checks below name it
            made = None
        if made is None:
            _check_part(id, "a session id", optional=False)
            _check_part(tenant, "a tenant", optional=True)
            _check_part(principal, "a principal", optional=True)
            _check_part(turn, "a turn", optional=True)
            if len(_MADE) >= 4096:
                _MADE.clear()
            made = _MADE[(id, tenant, principal, turn)] = Session(id, tenant, principal, turn)
        self.value = made
        self.tool_call_id = tool_call_id
        self._token: Token[Session | None] | None = None
        self._call_token: Token[str | None] | None = None

    def __enter__(self) -> Session:
        self._token = _CURRENT.set(self.value)
        if self.tool_call_id is not None:
            self._call_token = TOOL_CALL_ID.set(self.tool_call_id)
        return self.value

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._call_token is not None:
            TOOL_CALL_ID.reset(self._call_token)
            self._call_token = None
        if self._token is not None:
            _CURRENT.reset(self._token)
            self._token = None

    async def __aenter__(self) -> Session:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def _inherit(outer: str | None, inner: str | None, what: str) -> str | None:
    if inner is None or outer is None:
        return outer if inner is None else inner
    if inner != outer:
        raise ValueError(
            f"a nested session cannot change the {what} bound by the enclosing one "
            "(server-side code binds who is calling; tool code runs inside it)"
        )
    return outer


def current_session() -> Session | None:
    """The identity bound by the innermost ``session(...)``, or None."""
    return _CURRENT.get()


def partition_of(sess: Session | None) -> str:
    """The principal's and tenant's key space of ``sess`` (``-`` outside any session)."""
    return ANONYMOUS if sess is None else sess.partition


# --- the call running now -------------------------------------------------------------------


class CallState:
    """The ``@idempotent`` call running in this context: its key, whether its side effect
    may have started, and its record (record key, fence, ttl) in ``store``, which a store's
    own transaction can complete (``PostgresStore.transaction``)."""

    __slots__ = ("held", "key", "marks", "record", "resumed_started", "started", "store")

    def __init__(
        self,
        key: Any,
        started: bool,
        record: tuple[str, int, float] | None = None,
        store: Any = None,
        held: Any = None,
        marks: bool = False,
    ) -> None:
        self.key = key
        self.started = started
        self.record = record
        self.store = store
        #: What the call knows of its lease (``_lease.Held``): its checkpoints read it.
        self.held = held
        #: Its claim was made with a checkpoint: the checkpoint records the start in the
        #: store (until then a crashed owner's record is taken over, not left UNKNOWN).
        self.marks = marks
        #: The call resumes one suspended (an agent framework's interrupt) after its side
        #: effect had started: its checkpoint refuses to start it again.
        self.resumed_started = False


CURRENT_CALL: ContextVar[CallState | None] = ContextVar("retrysafe_idempotent_call", default=None)


def current_call() -> CallState | None:
    """The recorded call running in this context, or None (for stores and integrations)."""
    return CURRENT_CALL.get()


# --- what every decorator asks of a function ------------------------------------------------


def is_async(fn: Any) -> bool:
    """True for a coroutine function, a partial of one, or an object with an async
    ``__call__``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - an object with an async __call__
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def name_of(fn: Any) -> str:
    """The name a tool is reported by: its qualified name, else its name, else its repr."""
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn))
