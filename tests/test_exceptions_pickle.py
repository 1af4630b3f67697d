"""Every public retrysafe exception crosses a process boundary: execution engines pickle a
unit's failure (DBOS stores it, Ray and Celery send it back, Temporal serialises its
message). Each one round-trips through pickle with its type, message, hint and key, and
never carries a live handle (the decorated function, a store) along."""

from __future__ import annotations

import inspect
import pickle
import uuid
from typing import Any

import pytest

import retrysafe
from retrysafe import IdempKey, OutcomeUnknownError, RetrysafeError, idempotent, resolve, session
from retrysafe.stores import MemoryStore

PUBLIC = sorted(
    (
        value
        for value in (getattr(retrysafe, name) for name in retrysafe.__all__)
        if inspect.isclass(value) and issubclass(value, RetrysafeError)
    ),
    key=lambda cls: cls.__name__,
)
KEY = IdempKey.for_args(scope="pickle", args={"order": 1})


def _made(cls: type[RetrysafeError]) -> RetrysafeError:
    """An instance with every keyword its constructor takes set to something."""
    values: dict[str, Any] = {
        "key": KEY,
        "tool": "charge",
        "path": "args['a']",
        "last_error": ValueError("boom"),
        "attempts": 3,
        "retry_after": 2.5,
        "earlier_at": 1_700_000_000.0,
        "turn": "3",
        "arguments": {"order": 1},
        "count": 4,
        "limit": 3,
        "window": "session",
        "reason": "identical",
        "llm_hint": None,
    }
    parameters = inspect.signature(cls.__init__).parameters
    kwargs = {name: values[name] for name in parameters if name in values}
    return cls(f"{cls.__name__} happened", **kwargs)


def test_every_public_exception_is_listed() -> None:
    assert len(PUBLIC) >= 14, [cls.__name__ for cls in PUBLIC]


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda cls: cls.__name__)
def test_a_public_exception_round_trips_through_pickle(cls: type[RetrysafeError]) -> None:
    error = _made(cls)
    error.handle = object()  # type: ignore[attr-defined]  # a live object: never pickled
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is cls
    assert str(back) == str(error)
    assert back.llm_hint == error.llm_hint
    assert getattr(back, "key", None) == getattr(error, "key", None)
    assert not hasattr(back, "handle")
    for name, value in vars(error).items():
        if name != "handle" and not isinstance(value, BaseException):
            assert getattr(back, name) == value, name


def test_an_unknown_outcome_pickles_without_its_function_and_keeps_its_result() -> None:
    """The DBOS failure: `.handle` held the decorated function, so pickling failed and the
    engine stored an AttributeError instead. The record's key and the unstored result
    survive; the unpickled error says how to settle it without the handle."""
    store = MemoryStore()

    @idempotent(store=store, effect="write", scope=f"p-{uuid.uuid4().hex[:6]}")
    def charge(order: int) -> set[int]:
        return {order}  # a set: the store cannot keep it, so the outcome is UNKNOWN

    with session("c"), pytest.raises(OutcomeUnknownError) as caught:
        charge(1)
    error = caught.value
    back = pickle.loads(pickle.dumps(error))
    assert back.result == {1}
    assert back.key == error.key
    assert back.record_key == error.record_key  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="in this process; for one from another process"):
        resolve(back, not_applied=True)
    record_key = back.record_key  # type: ignore[attr-defined]
    assert "unknown" == charge.idempotency.resolve(
        back.key, not_applied=True, record_key=record_key
    )
    assert charge.idempotency.record(back.key) is None
