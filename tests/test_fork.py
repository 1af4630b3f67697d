"""Stores across fork: Celery's prefork pool, gunicorn and multiprocessing fork a parent
that built (and used) a store at import. A child must never use its parent's connections:
with a shared psycopg pool, rows went to the wrong caller (`expected 6, got 2`). Each child
here checks every answer it gets while the parent keeps using the store."""

from __future__ import annotations

import multiprocessing
import uuid
from typing import Any

import pytest

from retrysafe import idempotent, session

from .conftest import _make_store


def _child(store: Any, scope: str, n: int, out: Any) -> None:
    @idempotent(store=store, effect="write", scope=scope)
    def double(x: int) -> int:
        return 2 * x

    wrong = 0
    try:
        with session(f"child-{n}"):
            for i in range(60):
                x = n * 1000 + i
                if double(x) != 2 * x or double(x) != 2 * x:  # a fresh call, then a replay
                    wrong += 1
        out.put(("ok", n, wrong))
    except Exception as exc:
        out.put(("error", n, f"{type(exc).__name__}: {exc}"))


@pytest.mark.parametrize("kind", ["redis", "cluster", "postgres", "sqlite", "memory"])
def test_forked_children_never_share_their_parents_connections(
    kind: str, request: pytest.FixtureRequest
) -> None:
    store: Any = _make_store(kind, request)
    scope = f"fork-{uuid.uuid4().hex[:6]}"

    @idempotent(store=store, effect="write", scope=scope)
    def double(x: int) -> int:
        return 2 * x

    with session("parent"):
        assert 2 == double(1)  # the parent's connections are open and pooled
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    children = [context.Process(target=_child, args=(store, scope, n, out)) for n in range(4)]
    for child in children:
        child.start()
    with session("parent"):
        for i in range(60):  # the parent keeps using its connections meanwhile
            assert 2 * (i + 7) == double(i + 7)
    reports = sorted(out.get(timeout=60) for _ in children)
    for child in children:
        child.join(30)
    assert [("ok", n, 0) for n in range(4)] == reports
    assert [0, 0, 0, 0] == [child.exitcode for child in children]
    close = getattr(store, "close", None)
    if close is not None:
        close()
