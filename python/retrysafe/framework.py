"""What an integration with an agent framework builds on: public, stable, small.

``retrysafe.integrations`` uses only these names (and the package's top-level ones); a
framework integration of your own should too::

    from retrysafe.framework import bind_call, failure_hint, is_async

- :func:`bind_call` (``retrysafe.session``): bind the call's identity: the principal your
  server authenticated, the tenant, the conversation, the turn, the model's tool-call id.
- :func:`failure_hint`: the text a model should read for a tool's failure (None: a bug, let
  it propagate).
- :func:`is_async`: whether a tool is a coroutine function (partials and async
  ``__call__`` included).
- :func:`escape`: a part of an identity made of several values (``client/issuer/subject``)
  with its delimiters escaped, so that distinct values never join into the same string.
- :func:`unit_id`: the conversation id of an engine's unit of work, from its ids (injective,
  and free of what the session would escape again).
- :func:`bound_by`: a function (sync or async) run inside the identity a callable gives
  for each call (an engine's unit id, read when the call starts).
- :data:`KEY_PARAM`: the name of the parameter a tool takes its idempotency key by
  (``idempotency_key``): never in a schema a model sees.
- :func:`suspends`: the exceptions a framework raises to pause a call until a person
  answers (LangGraph's ``GraphInterrupt``): the record waits for the resume instead of
  becoming UNKNOWN.
- :data:`NON_RETRYABLE`: the errors an execution engine must not retry (each needs a person
  or a code change; retrying only burns attempts): map them to the engine's non-retryable
  failure.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from ._dispatch import failure_hint
from ._exceptions import IdempotencyKeyMismatchError, OutcomeUnknownError, SessionRequiredError
from ._idempotent import KEY_PARAM, suspends
from ._identity import Session, current_session, escape, is_async, name_of
from ._identity import session as bind_call

__all__ = [
    "KEY_PARAM",
    "NON_RETRYABLE",
    "Session",
    "bound_by",
    "unit_id",
    "bind_call",
    "current_session",
    "escape",
    "failure_hint",
    "is_async",
    "name_of",
    "suspends",
]

#: Errors an engine's retry cannot fix: an UNKNOWN outcome (a person settles it, by key:
#: ``fn.idempotency.resolve``), the same key sent with other arguments, a write called
#: outside any identity. Temporal, Celery, Ray and DBOS integrations fail the unit with them
#: at once instead of spending every attempt on the same answer.
NON_RETRYABLE: tuple[type[Exception], ...] = (
    OutcomeUnknownError,
    IdempotencyKeyMismatchError,
    SessionRequiredError,
)


F = TypeVar("F", bound=Callable[..., Any])


def unit_id(engine: str, *parts: str) -> str:
    """``engine|part|part...``: each part escaped (:func:`escape`, and ``|`` as ``%7C``), so
    distinct parts never join into the same id, and the id holds nothing the session's own
    encoding escapes again (an engine's unit ids are hex, UUIDs and dotted names: binding
    one costs no escaping)."""
    try:
        text = "|".join(parts)
    except TypeError:  # a part that is not a str: escape names it
        text = ""
    # Escaping maps each character alone and leaves "|" as it is: where no part holds one,
    # the joined parts escape at once to what escaping each gives (ASCII only, so that a
    # lone surrogate's error still names its index in its own part).
    if parts and text.isascii() and text.count("|") == len(parts) - 1:
        return f"{engine}|{escape(text, 'a unit id')}"
    return "|".join([engine, *(escape(part, "a unit id").replace("|", "%7C") for part in parts)])


def bound_by(binding: Callable[[], bind_call | None]) -> Callable[[F], F]:
    """A decorator running ``fn`` (sync or async) inside ``binding()`` on each call: the
    identity of the unit of work running it (``bind_call(...)``), or None to run it as is
    (called outside any unit). The engines' integrations build on it."""

    def decorate(fn: F) -> F:
        if is_async(fn):

            @functools.wraps(fn)
            async def async_bound(*args: Any, **kwargs: Any) -> Any:
                made = binding()
                if made is None:
                    return await fn(*args, **kwargs)
                with made:
                    return await fn(*args, **kwargs)

            return async_bound  # type: ignore[return-value]

        @functools.wraps(fn)
        def sync_bound(*args: Any, **kwargs: Any) -> Any:
            made = binding()
            if made is None:
                return fn(*args, **kwargs)
            with made:
                return fn(*args, **kwargs)

        return sync_bound  # type: ignore[return-value]

    return decorate
