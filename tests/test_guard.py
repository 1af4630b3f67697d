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
        guard.record("fetch", {"i": 1})
        guard.record("fetch", {"i": 2})
        guard.record("other", {})
        with pytest.raises(ToolLoopError, match="per_tool"):
            guard.record("fetch", {"i": 3})
    with session("b"):
        assert guard.record("fetch", {"i": 1}) is None


def test_window_resets_the_count(store: Store) -> None:
    """With window_seconds the budget applies per window."""
    guard = LoopGuard(max_calls=1, max_identical=None, window_seconds=0.3, store=store)
    while time.time() % 0.3 > 0.15:  # start early in a window
        time.sleep(0.01)
    guard.record("t", 1, session_id="w")
    with pytest.raises(ToolLoopError):
        guard.record("t", 2, session_id="w")
    time.sleep(0.35)
    assert guard.record("t", 3, session_id="w") is None


def test_a_swarm_shares_one_budget(store: Store) -> None:
    """Two guards (two processes) on one store and session draw from one budget."""
    a = LoopGuard(max_calls=3, max_identical=None, store=store)
    b = LoopGuard(max_calls=3, max_identical=None, store=store)
    with session("swarm"):
        a.record("t", 1)
        b.record("t", 2)
        a.record("t", 3)
        with pytest.raises(ToolLoopError):
            b.record("t", 4)


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
        results = [guard.record("charge", {"amount": 5}, session_id="s") for _ in range(5)]
    assert allowed == sum(r is None for r in results)
    outage = [r for r in caplog.records if "loop guard store failed" in r.getMessage()]
    assert 1 == len(outage)


# --- windows, keys, previews, reset and history (tool-loop-guard's model) --------------------


def test_a_count_window_counts_the_last_calls_only(store: Store) -> None:
    """window_calls=3, max_calls_per_tool=1: a tool may come back once two other calls
    pushed its last call out of the window, not sooner."""
    guard = LoopGuard(
        max_calls=None, max_calls_per_tool=1, max_identical=None, window_calls=3, store=store
    )
    for tool in ("search", "fetch", "list", "search", "fetch", "list"):
        assert guard.record(tool, {"q": 1}, session_id="w") is None
    with pytest.raises(ToolLoopError) as raised:
        guard.record("fetch", {"q": 2}, session_id="w")  # the window: fetch, list, fetch
    error = raised.value
    assert ("fetch", "per_tool", 2, 1, "last 3 calls") == (
        error.tool,
        error.reason,
        error.count,
        error.limit,
        error.window,
    )
    assert error.threshold == error.limit
    assert {"q": 2} == error.arguments
    assert "in the last 3 calls" in error.llm_hint


def test_identical_calls_in_a_count_window(store: Store) -> None:
    guard = LoopGuard(max_calls=None, max_identical=2, window_calls=4, store=store)
    same = {"city": "Paris"}
    guard.record("weather", same, session_id="i")
    guard.record("weather", same, session_id="i")
    assert guard.record("weather", {"city": "Rome"}, session_id="i") is None
    with pytest.raises(ToolLoopError, match="identical"):
        guard.record("weather", same, session_id="i")
    for n in range(3):
        guard.record("other", {"n": n}, session_id="i")
    assert guard.record("weather", same, session_id="i") is None  # the others pushed it out


def test_a_key_function_decides_what_is_identical(store: Store) -> None:
    """A fresh request_id in every call does not defeat max_identical when key= drops it."""
    seen: list[tuple[str, dict[str, Any]]] = []

    def key(tool: str, arguments: dict[str, Any]) -> Any:
        seen.append((tool, arguments))
        return {k: v for k, v in arguments.items() if k != "request_id"}

    guard = LoopGuard(max_identical=2, key=key, store=store)

    @guard
    def charge(amount: int, request_id: str) -> int:
        return amount

    with session("k"):
        assert 5 == charge(5, "r1")
        assert 5 == charge(5, request_id="r2")
        with pytest.raises(ToolLoopError) as raised:
            charge(5, "r3")
    assert {"amount": 5, "request_id": "r3"} == raised.value.arguments
    assert ("charge", {"amount": 5, "request_id": "r1"}) == (
        seen[0][0].rsplit(".", 1)[-1],
        seen[0][1],
    )


def test_check_previews_without_counting(store: Store) -> None:
    guard = LoopGuard(max_calls=None, max_identical=1, store=store)  # mode="raise"
    assert guard.check("t", {"a": 1}, session_id="p") is None
    assert guard.check("t", {"a": 1}, session_id="p") is None  # nothing was counted
    guard.record("t", {"a": 1}, session_id="p")
    preview = guard.check("t", {"a": 1}, session_id="p")
    assert preview is not None and ("identical", 2, 1) == (
        preview.reason,
        preview.count,
        preview.limit,
    )
    assert guard.check("t", {"a": 2}, session_id="p") is None
    with pytest.raises(ToolLoopError):
        guard.record("t", {"a": 1}, session_id="p")


def test_reset_and_history_per_session(store: Store) -> None:
    guard = LoopGuard(max_calls=3, max_identical=None, history_size=2, store=store)
    for tool in ("a", "b", "c"):
        guard.record(tool, {}, session_id="h")
    guard.record("x", {}, session_id="other")
    assert ["b", "c"] == guard.history("h")
    assert ["x"] == guard.history("other")
    with pytest.raises(ToolLoopError, match="total"):
        guard.record("d", {}, session_id="h")
    guard.reset("h")
    assert [] == guard.history("h")
    assert guard.record("d", {}, session_id="h") is None
    assert ["x"] == guard.history("other")  # another session is untouched
    with session("bound"):
        guard.record("e", {})
        assert ["e"] == guard.history()


@pytest.mark.anyio
async def test_async_record_check_reset(astore: Store) -> None:
    guard = LoopGuard(
        max_calls=None, max_identical=None, max_calls_per_tool=1, window_calls=2, store=astore
    )
    assert await guard.arecord("a", {}, session_id="s") is None
    preview = await guard.acheck("a", {}, session_id="s")
    assert preview is not None and "per_tool" == preview.reason
    assert await guard.arecord("b", {}, session_id="s") is None
    assert await guard.arecord("a", {}, session_id="s") is None
    with pytest.raises(ToolLoopError):
        await guard.arecord("a", {}, session_id="s")
    await guard.areset("s")
    assert await guard.arecord("a", {}, session_id="s") is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window_calls": 3, "max_calls_per_tool": 3},
        {"window_calls": 2, "max_identical": 5},
        {"window_calls": 0},
    ],
)
def test_a_limit_must_fit_its_window(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="window"):
        LoopGuard(**kwargs)


def test_a_swarm_shares_one_count_window(shared_url: str) -> None:
    """Processes of one session on Redis see one window: two calls here and one in another
    process pass max_identical=2; calls in a third process push them out of the window."""
    import subprocess
    import sys
    import uuid

    from retrysafe.stores import RedisStore

    namespace = f"swarm-{uuid.uuid4().hex[:8]}"
    setup = (
        "import sys; from retrysafe import LoopGuard; from retrysafe.stores import RedisStore; "
        f"g = LoopGuard(max_calls=None, max_identical=2, window_calls=5, mode='message', "
        f"store=RedisStore(sys.argv[1]), namespace={namespace!r}); "
    )

    def other_process(code: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", setup + code, shared_url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert 0 == done.returncode, done.stderr
        return done.stdout.strip()

    store = RedisStore(shared_url)
    guard = LoopGuard(
        max_calls=None, max_identical=2, window_calls=5, store=store, namespace=namespace
    )
    try:
        guard.record("search", {"q": "x"}, session_id="s")
        guard.record("search", {"q": "x"}, session_id="s")
        assert "identical" == other_process(
            "print(g.record('search', {'q': 'x'}, session_id='s').reason)"
        )
        other_process("[g.record(t, {}, session_id='s') for t in 'abcd']")
        assert ["a", "b", "c", "d"] == guard.history("s")[-4:]
        assert guard.record("search", {"q": "x"}, session_id="s") is None
    finally:
        guard.reset("s")
        store.close()


def test_a_shared_guard_logs_its_stops_for_operators(store: Store) -> None:
    """On a shared store every stop is noted (tool, limit, session; never the arguments),
    newest first, for ``retrysafe.records.guard_stops`` and the console; a namespace reads
    only its own. In process, the stop is only the caller's result."""
    from retrysafe import records

    guard = LoopGuard(max_identical=1, max_calls=None, mode="message", store=store, namespace="ops")
    other = LoopGuard(max_identical=1, max_calls=None, mode="message", store=store, namespace="x")

    @guard
    def transfer(account: str) -> str:
        return "done"

    with session("chat-7", tenant="acme"):
        assert "done" == transfer("ACCT-SECRET-1")
        assert isinstance(transfer("ACCT-SECRET-1"), LoopStop)
        assert isinstance(transfer("ACCT-SECRET-1"), LoopStop)
    if not store.shared:
        assert [] == guard.stops()
        return
    stops = guard.stops()
    assert 2 == len(stops) == len(records.guard_stops(store, "ops"))
    assert stops[0]["at"] >= stops[1]["at"]
    assert {"transfer"} == {s["tool"].rsplit(".", 1)[-1] for s in stops}
    assert {"identical"} == {s["reason"] for s in stops} and 3 == stops[0]["count"]
    assert all("t=acme" in s["session"] and "c=chat-7" in s["session"] for s in stops)
    assert "SECRET" not in repr(stops)
    assert [] == other.stops() == records.guard_stops(store, "guard")


@pytest.mark.anyio
async def test_an_async_shared_guard_logs_its_stops(astore: Store) -> None:
    guard = LoopGuard(max_calls=1, max_identical=None, mode="message", store=astore, namespace="a")

    @guard
    async def search(q: str) -> str:
        return q

    async with session("s"):
        assert "x" == await search("x")
        assert isinstance(await search("y"), LoopStop)
    if astore.shared:
        assert ["total"] == [s["reason"] for s in guard.stops()]
