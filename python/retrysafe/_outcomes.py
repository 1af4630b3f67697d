"""Outcomes over time, in the shared store: what each process's ``report()`` counts
(executed, served from cache, coalesced, replayed, left unknown, refused), added up per hour
across the swarm, for the console's plot and for scripts.

Opt in per process with :func:`publish_outcomes`: a daemon thread adds this process's new
counts to the store every ``every`` seconds (one ``incr`` per outcome that moved, never per
call), and once more when the process exits. Nothing is sent on the calls' own paths.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections import Counter
from typing import Any

from ._log import logger

__all__ = ["OUTCOMES", "OutcomePublisher", "outcomes_by_hour", "publish_outcomes"]

#: The outcomes counted, in the order the console stacks them.
OUTCOMES = ("executed", "cached", "coalesced", "replayed", "unknown", "refused")
#: How long an hour's counts are kept (seconds).
KEEP = 8 * 86400.0


def _key(hour: int, outcome: str) -> str:
    # Its own key space: "outcomes/" is no prefix of the caches' ("cache:"), the guard's
    # ("guard/", "guard-stops/") or the records' ("idem:").
    return f"outcomes/{hour}/{outcome}"


def totals() -> Counter[str]:
    """This process's counts so far, summed over its tools, as :data:`OUTCOMES`."""
    from ._telemetry import report_counts

    found: Counter[str] = Counter()
    for row in report_counts().values():
        found["executed"] += row.get("executed", 0)
        found["cached"] += row.get("cache_hit", 0)
        found["coalesced"] += row.get("coalesced", 0)
        found["replayed"] += row.get("replayed", 0)
        found["unknown"] += row.get("unknown", 0)
        found["refused"] += row.get("refused", 0) + row.get("loop_stopped", 0)
    return found


class OutcomePublisher:
    """Adds this process's new outcome counts to ``store`` every ``every`` seconds (see
    :func:`publish_outcomes`); :meth:`flush` does it now, :meth:`stop` for good."""

    def __init__(self, store: Any, every: float) -> None:
        if not (isinstance(every, (int, float)) and every > 0):
            raise ValueError(f"every must be a positive number of seconds, got {every!r}")
        self.store = store
        self.every = float(every)
        self._sent: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retrysafe-outcomes", daemon=True)
        self._thread.start()
        atexit.register(self.stop)

    def flush(self) -> dict[str, int]:
        """Add the counts that moved since the last flush to the current hour; returns them.
        A store that fails keeps them for the next flush."""
        with self._lock:
            now = totals()
            moved = {k: now[k] - self._sent[k] for k in OUTCOMES if now[k] > self._sent[k]}
            hour = int(time.time() // 3600)
            for outcome, n in moved.items():
                self.store.incr(_key(hour, outcome), n, KEEP)
                self._sent[outcome] += n
            return moved

    def _run(self) -> None:
        while not self._stopped.wait(self.every):
            try:
                self.flush()
            except Exception as exc:  # a StoreError, or a store's bug: tried again next time
                logger.debug("retrysafe: outcomes not published: %s", type(exc).__name__)

    def stop(self) -> None:
        """Flush once more and stop the thread."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        try:
            self.flush()
        except Exception as exc:
            logger.debug("retrysafe: outcomes not published: %s", type(exc).__name__)


def publish_outcomes(store: Any, every: float = 30.0) -> OutcomePublisher:
    """Publish this process's outcome counts to the shared ``store`` (a ``Store`` or a URL)
    every ``every`` seconds, for ``retrysafe console`` and :func:`outcomes_by_hour`."""
    from .stores import resolve_store

    return OutcomePublisher(resolve_store(store), every)


def outcomes_by_hour(store: Any, hours: int = 24) -> dict[int, dict[str, int]]:
    """The swarm's outcomes over the last ``hours`` hours, by hour (epoch hour), oldest
    first: ``{hour: {outcome: n}}``, hours with nothing left out. (Counters are read as
    every store reads them, by adding zero: an hour nobody published to is kept as zeros
    for :data:`KEEP` seconds.)"""
    current = int(time.time() // 3600)
    found: dict[int, dict[str, int]] = {}
    for hour in range(current - hours + 1, current + 1):
        row = {}
        for outcome in OUTCOMES:
            value = store.incr(_key(hour, outcome), 0, KEEP)
            if value > 0:
                row[outcome] = int(value)
        if row:
            found[hour] = row
    return found
