"""The whole error hierarchy of retrysafe, in one place.

Every error derives from :class:`RetrysafeError` and carries ``llm_hint``: one sentence fit
to hand back to the model as the tool's result, so an agent can recover instead of looping.
"""

from __future__ import annotations

import math
import time
from typing import Any

__all__ = [
    "FingerprintError",
    "FingerprintTypeError",
    "FingerprintValueError",
    "IdempotencyInProgressError",
    "IdempotencyKeyMismatchError",
    "LeaseLostError",
    "OutcomeUnknownError",
    "RepeatNeedsConfirmationError",
    "RetryExhausted",
    "RetryLaterError",
    "RetryRefusedError",
    "RetrysafeError",
    "SessionRequiredError",
    "StoreError",
    "ToolLoopError",
]


class RetrysafeError(Exception):
    """Base class of every error raised by retrysafe."""

    llm_hint: str = "The tool call failed inside retrysafe; do not repeat it unchanged."

    def __init__(self, message: str, *, llm_hint: str | None = None) -> None:
        super().__init__(message)
        if llm_hint is not None:
            self.llm_hint = llm_hint

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled with its message and its attributes (key, tool, hint, result...), never a
        live one: execution engines pickle a unit's failure (DBOS stores it; Ray and Celery
        send it back). ``handle`` (the decorated function's) stays behind, and so does an
        attribute that cannot be pickled."""
        import pickle

        state = {}
        for name, value in vars(self).items():
            if name in _LIVE:
                continue
            try:
                pickle.dumps(value)
            except Exception:
                continue
            state[name] = value
        return (_rebuilt, (type(self), self.args), state)


#: Attributes that hold live objects of this process.
_LIVE = frozenset({"handle"})


def _rebuilt(cls: type[RetrysafeError], args: tuple[Any, ...]) -> RetrysafeError:
    """An exception of ``cls`` with ``args``, its attributes set by pickle afterwards
    (``__init__`` is not run: its keyword arguments differ per class)."""
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    return error


class FingerprintError(RetrysafeError):
    """The arguments have no canonical form; ``path`` names the bad value (``args['a'][3]``).

    Raised as :class:`FingerprintTypeError` (an unsupported type, also a ``TypeError``) or
    :class:`FingerprintValueError` (NaN, a lone surrogate, a cycle..., also a ``ValueError``).
    """

    llm_hint = (
        "The tool arguments contain a value that cannot be serialized; send plain JSON values."
    )

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class FingerprintTypeError(FingerprintError, TypeError):
    """A value of a type that has no canonical form."""


class FingerprintValueError(FingerprintError, ValueError):
    """A value of a supported type that still has no canonical form (NaN, a cycle...)."""


class StoreError(RetrysafeError):
    """The store (memory or Redis) failed or holds data retrysafe did not write."""

    llm_hint = "A storage backend is unavailable; the tool was not run. Try again later."


class CodecError(StoreError):
    """The store answered, but a value could not be written or read (its serializer failed,
    or the data is not retrysafe's): trying again cannot help, and a claim that got this
    answer was read. (Internal: callers see a :class:`StoreError`.)"""


class IdempotencyKeyMismatchError(RetrysafeError):
    """The key was used before with different arguments (IETF draft: 422)."""

    llm_hint = (
        "This idempotency key was already used with different arguments; "
        "use a new key for a new operation."
    )

    def __init__(self, message: str, *, key: Any = None) -> None:
        super().__init__(message)
        self.key = key


class IdempotencyInProgressError(RetrysafeError):
    """Another caller holds the record and did not finish in time (IETF draft: 409)."""

    llm_hint = (
        "The same operation is still running; wait and check its result instead of repeating it."
    )

    def __init__(self, message: str, *, key: Any = None) -> None:
        super().__init__(message)
        self.key = key


class OutcomeUnknownError(RetrysafeError):
    """A write was cut off after it may have acted; ``resolve()`` settles the record.

    Also raised when the write ran but its result could not be stored (the store failed on
    the completion, or cannot keep a value of that type): then ``result`` holds the value
    the tool returned, so nothing is lost; else it is None."""

    llm_hint = (
        "The operation may or may not have happened. Do not repeat it; check its status first."
    )
    #: The tool's return value when it ran but could not be stored, else None.
    result: Any = None

    def __init__(self, message: str, *, key: Any = None, tool: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.tool = tool


class LeaseLostError(RetrysafeError):
    """A record owner finished after another caller took its record over (fenced out);
    ``result`` holds what it returned (not stored)."""

    #: The fenced-out owner's return value, when it got that far.
    result: Any = None

    def __init__(self, message: str, *, key: Any = None) -> None:
        super().__init__(message)
        self.key = key


class RetryRefusedError(RetrysafeError):
    """Automatic retry of a WRITE or DESTRUCTIVE tool whose remote does not honour a key."""

    llm_hint = (
        "This tool has side effects and is not retried automatically; check before calling again."
    )

    def __init__(self, message: str, *, tool: str | None = None) -> None:
        super().__init__(message)
        self.tool = tool


class RetryExhausted(RetrysafeError):
    """Every attempt failed or the deadline passed; ``last_error`` is the final failure."""

    llm_hint = "The tool kept failing after several attempts; try a different approach or later."

    def __init__(self, message: str, *, last_error: BaseException | None, attempts: int) -> None:
        super().__init__(message)
        self.last_error = last_error
        self.attempts = attempts


class RetryLaterError(RetrysafeError):
    """A write's remote asked to wait (429 or 503 with Retry-After), and the repeat came
    before that time: nothing was sent. ``retry_after`` is how many seconds are left;
    ``llm_hint`` tells the model when to call again."""

    def __init__(
        self, message: str, *, retry_after: float, key: Any = None, tool: str | None = None
    ) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(
            message,
            llm_hint=(
                f"The service asked to wait before this operation is tried again; it was not "
                f"sent. Call it again in {seconds} s or later, not sooner."
            ),
        )
        self.retry_after = retry_after
        self.key = key
        self.tool = tool


class SessionRequiredError(RetrysafeError):
    """A write was called outside any session and without an explicit ``scope=``.

    Its record would be scoped by the tool alone, for every caller: a second conversation's
    identical order would get the first one's stored result instead of being placed. Bind the
    conversation with ``with session(conversation_id):`` (the ``retrysafe.integrations``
    modules do it for each framework), or pass ``scope=`` to ``idempotent`` on purpose.
    """

    llm_hint = (
        "This tool can only run inside a conversation session; the application must bind one."
    )

    def __init__(self, message: str, *, tool: str | None = None) -> None:
        super().__init__(message)
        self.tool = tool


class RepeatNeedsConfirmationError(RetrysafeError):
    """An identical write already ran in an earlier turn of this conversation, and this turn
    has not confirmed a new one: it was not run again (``repeat="confirm"``, the default
    where the turn is known).

    ``earlier_at`` is when the earlier call started (a UNIX time); ``turn`` the turn it ran
    in. The ``llm_hint`` tells the model what happened and the one way to do it again: ask
    the user, and call again in the turn of the user's confirming reply."""

    def __init__(
        self,
        message: str,
        *,
        key: Any = None,
        tool: str | None = None,
        earlier_at: float | None = None,
        turn: str | None = None,
    ) -> None:
        super().__init__(message)
        self.key = key
        self.tool = tool
        self.earlier_at = earlier_at
        self.turn = turn
        when = (
            "earlier"
            if earlier_at is None
            else time.strftime("at %H:%M:%S UTC", time.gmtime(earlier_at))
        )
        self.llm_hint = (
            f"An identical call of this tool was already made {when}, in an earlier turn of "
            "this conversation; it was NOT performed again now. If the user wants it done a "
            "second time, ask them to confirm; after they confirm, call it again with the same "
            "arguments."
        )


class ToolLoopError(RetrysafeError):
    """The loop guard stopped a call: too many calls, or the same call again and again.

    ``tool`` and ``arguments`` are the call stopped; ``reason`` the limit passed
    (``"identical"``, ``"per_tool"``, ``"total"``); ``count`` the calls counted, this one
    included; ``limit`` (also ``threshold``) the limit; ``window`` what was counted over
    (``"session"``, ``"last 10 calls"``, ``"60s"``)."""

    def __init__(
        self,
        message: str,
        *,
        tool: str | None = None,
        llm_hint: str | None = None,
        arguments: Any = None,
        count: int = 0,
        limit: int = 0,
        window: str = "session",
        reason: str | None = None,
    ) -> None:
        super().__init__(message, llm_hint=llm_hint)
        self.tool = tool
        self.arguments = arguments
        self.count = count
        self.limit = limit
        self.window = window
        self.reason = reason

    @property
    def threshold(self) -> int:
        """``limit``, by tool-loop-guard's name."""
        return self.limit
