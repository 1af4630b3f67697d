"""LoopGuard: per-session budgets on both stores; a swarm shares one budget."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import pytest

from retrysafe import LoopGuard, LoopStop, ToolLoopError, session
from retrysafe.stores import Store


def test_identical_calls_are_stopped(store: Store) -> None:
    """The 4th identical call raises ToolLoopError with a hint for the model."""
    guard = LoopGuard(max_identical=3, store=store)
    calls = {"n": 0}

    @guard
    def search(q: str, page: int = 1) -> int:
        calls["n"] += 1
        return calls["n"]

    with session("s"):
        for _ in range(3):
            search("cats")
        with pytest.raises(ToolLoopError) as info:
            search(q="cats", page=1)
        assert "same arguments" in info.value.llm_hint or "exact arguments" in info.value.llm_hint
        assert 4 == search("dogs")  # other arguments are fine
    assert 4 == calls["n"]


def test_message_mode_returns_a_stop_instead_of_calling(store: Store) -> None:
    """mode="message": the tool is not called; a LoopStop with the hint comes back."""
    guard = LoopGuard(max_calls=2, max_identical=None, mode="message", store=store)
    called: list[int] = []

    @guard
    def step(i: int) -> int:
        called.append(i)
        return i

    with session("m"):
        assert [0, 1] == [step(0), step(1)]
        stop = step(2)
    assert isinstance(stop, LoopStop)
    assert "total" == stop.reason
    assert {
        "error": "tool_loop",
        "tool": stop.tool,
        "reason": "total",
        "message": str(stop),
    } == stop.to_dict()
    assert [0, 1] == called


def test_per_tool_limit_and_sessions_are_separate(store: Store) -> None:
    """max_calls_per_tool counts per tool and per session."""
    guard = LoopGuard(max_calls=None, max_calls_per_tool=2, max_identical=None, store=store)
    with session("a"):
        guard.check("fetch", {"i": 1})
        guard.check("fetch", {"i": 2})
        guard.check("other", {})
        with pytest.raises(ToolLoopError, match="per_tool"):
            guard.check("fetch", {"i": 3})
    with session("b"):
        assert guard.check("fetch", {"i": 1}) is None


def test_window_resets_the_count(store: Store) -> None:
    """With window_seconds the budget applies per window."""
    guard = LoopGuard(max_calls=1, max_identical=None, window_seconds=0.3, store=store)
    while time.time() % 0.3 > 0.15:  # start early in a window
        time.sleep(0.01)
    guard.check("t", 1, session_id="w")
    with pytest.raises(ToolLoopError):
        guard.check("t", 2, session_id="w")
    time.sleep(0.35)
    assert guard.check("t", 3, session_id="w") is None


def test_a_swarm_shares_one_budget(store: Store) -> None:
    """Two guards (two processes) on one store and session draw from one budget."""
    a = LoopGuard(max_calls=3, max_identical=None, store=store)
    b = LoopGuard(max_calls=3, max_identical=None, store=store)
    with session("swarm"):
        a.check("t", 1)
        b.check("t", 2)
        a.check("t", 3)
        with pytest.raises(ToolLoopError):
            b.check("t", 4)


@pytest.mark.anyio
async def test_async_tools_and_bound_guard(astore: Store) -> None:
    """Async tools are guarded; `async with guard` binds it for @tool to find."""
    from retrysafe import current_guard

    guard = LoopGuard(max_identical=1, store=astore)

    @guard
    async def ping(x: int) -> int:
        return x

    async with session("async"):
        assert 1 == await ping(1)
        with pytest.raises(ToolLoopError):
            await ping(1)
    async with guard:
        assert guard is current_guard()
    assert current_guard() is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_calls": 0}, "max_calls"),
        ({"mode": "warn"}, "mode"),
        ({"window_seconds": -1}, "window"),
    ],
)
def test_validation(kwargs: dict[str, Any], match: str) -> None:
    """Bad limits are refused when the guard is built."""
    with pytest.raises(ValueError, match=match):
        LoopGuard(**kwargs)


@pytest.mark.parametrize(("policy", "allowed"), [("local", 2), ("open", 5), ("closed", 0)])
def test_store_failure_follows_on_store_error_and_logs_once(
    policy: str, allowed: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis down: "local" still stops the third identical call, "open" lets all through,
    "closed" stops all; one log line for the outage."""
    from retrysafe.stores import RedisStore

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    guard = LoopGuard(
        max_identical=2,
        mode="message",
        store=RedisStore(f"redis://127.0.0.1:{dead}/0"),
        on_store_error=policy,  # type: ignore[arg-type]
    )
    with caplog.at_level(logging.WARNING, logger="retrysafe"):
        results = [guard.check("charge", {"amount": 5}, session_id="s") for _ in range(5)]
    assert allowed == sum(r is None for r in results)
    outage = [r for r in caplog.records if "loop guard store failed" in r.getMessage()]
    assert 1 == len(outage)
