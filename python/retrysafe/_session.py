"""The current agent session: scopes keys, records and loop guards without threading a
``session_id`` through every tool."""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import TracebackType

__all__ = ["Session", "current_session", "session"]


@dataclass(frozen=True)
class Session:
    """An agent session: ``id``, and optionally the ``tenant`` it belongs to."""

    id: str
    tenant: str | None = None
    #: ``tenant/id`` (or ``id``): the prefix of every key scoped to this session.
    scope: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scope", f"{self.tenant}/{self.id}" if self.tenant else self.id)


_CURRENT: ContextVar[Session | None] = ContextVar("retrysafe_session", default=None)

#: Sessions made recently, by (id, tenant): integrations enter one per tool call, and a
#: frozen dataclass costs a microsecond to build. Sessions are immutable, so sharing is safe.
_MADE: dict[tuple[object, object], Session] = {}


class session:
    """Make ``id`` (and ``tenant``) the current session, in sync and async code.

    >>> with session("chat-42", tenant="acme"):
    ...     charge(...)            # keys and guards are scoped to acme/chat-42
    >>> async with session("chat-42"):
    ...     await charge(...)

    Context-local: concurrent tasks each see their own session.
    """

    __slots__ = ("_token", "value")

    def __init__(self, id: str, *, tenant: str | None = None) -> None:
        if not isinstance(id, str) or not id:
            raise ValueError(f"a session id must be a non-empty str, got {id!r}")
        if tenant is not None and (not isinstance(tenant, str) or not tenant):
            raise ValueError(f"a tenant must be a non-empty str or None, got {tenant!r}")
        made = _MADE.get((id, tenant))
        if made is None:
            if len(_MADE) >= 4096:
                _MADE.clear()
            made = _MADE[(id, tenant)] = Session(id, tenant)
        self.value = made
        self._token: Token[Session | None] | None = None

    def __enter__(self) -> Session:
        self._token = _CURRENT.set(self.value)
        return self.value

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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


def current_session() -> Session | None:
    """The session set by the innermost ``session(...)``, or None."""
    return _CURRENT.get()
