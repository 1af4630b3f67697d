"""The loop guard's check on the hot path, in memory (issue 15: <= 1 us per guarded call).

`retrysafe`: ``guard.record(tool, arguments)`` in a bound session, the call every guarded
tool makes. `previous-guard`: the method of the guard before issue 15, rebuilt here for the
same-run comparison: three counters in a MemoryStore (total, per tool, identical) keyed by
the arguments' SHA-256 fingerprint. Both count the same call in the same session; neither
reaches a limit.
"""

from __future__ import annotations

from typing import Any

import pytest

from retrysafe import LoopGuard, MemoryStore, fingerprint, session

from .conftest import measure, paired_ratio

ARGS = {"query": "flights from Paris to Rome", "max_results": 5, "cabin": "economy"}
NEVER = 10**12


def _previous_guard() -> Any:
    store = MemoryStore()

    def record(tool: str, args: Any) -> bool:
        digest = fingerprint(args)
        base = "guard:bench"
        counts = [
            store.incr(key, 1, 86400)
            for key in (f"{base}:all", f"{base}:tool:{tool}", f"{base}:same:{tool}:{digest}")
        ]
        return all(c < NEVER for c in counts)

    return record


def _contenders() -> dict[str, Any]:
    guard = LoopGuard(max_calls=NEVER, max_calls_per_tool=NEVER, max_identical=NEVER)
    window = LoopGuard(
        max_calls=NEVER, max_calls_per_tool=NEVER - 1, max_identical=NEVER - 1, window_calls=NEVER
    )
    previous = _previous_guard()
    return {
        "retrysafe": lambda: guard.record("search_flights", ARGS),
        "retrysafe-count-window": lambda: window.record("search_flights", ARGS),
        "previous-guard": lambda: previous("search_flights", ARGS),
    }


@pytest.mark.parametrize("name", ["retrysafe", "retrysafe-count-window", "previous-guard"])
def test_guard_check(benchmark: Any, name: str) -> None:
    benchmark.group = "loop guard check per call (memory)"
    fn = _contenders()[name]
    with session("bench"):
        measure(benchmark, fn)


def test_guard_check_paired(benchmark: Any) -> None:
    """retrysafe / the previous guard, alternating pairs."""
    benchmark.group = "loop guard / previous guard"
    contenders = _contenders()
    with session("bench"):
        paired_ratio(benchmark, contenders["retrysafe"], contenders["previous-guard"])
