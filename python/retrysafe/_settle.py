"""Finishing, in the background, the record transitions a caller could not wait for.

A caller that is cancelled, or past its deadline, or cut off from its store, must not be
held until the store answers; but the transition it owed (release a claim that never ran,
turn a record UNKNOWN, store a result that came back) must still be made, or the record is
left for a person to settle. Each such transition is handed to one daemon thread per
process, which makes it through the store's sync API, retrying with backoff while the
store fails, for up to :data:`HORIZON` seconds. Every transition is fenced (by the claim's
fence or nonce), so a late one never touches a newer claim, and making one twice is
harmless.
"""

from __future__ import annotations

import atexit
import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable

from ._exceptions import StoreError
from ._log import logger

__all__ = ["HORIZON", "pending", "settle_later", "wait_settled"]


#: Seconds a transition is retried before it is given up (its record then follows the
#: expired-lease rule: a write's turns UNKNOWN, for a person or ``retrysafe records``).
HORIZON = 600.0
_FIRST_DELAY = 0.05
_MAX_DELAY = 5.0


class _Settler:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        #: (due, sequence, what, operation, give up at, delay)
        self._queue: list[tuple[float, int, str, Callable[[], object], float, float]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._busy = 0

    def add(self, what: str, operation: Callable[[], object]) -> None:
        now = time.monotonic()
        with self._lock:
            heapq.heappush(
                self._queue,
                (now, next(self._order), what, operation, now + HORIZON, _FIRST_DELAY),
            )
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="retrysafe-settle", daemon=True
                )
                self._thread.start()
            self._lock.notify()

    def pending(self) -> int:
        with self._lock:
            return len(self._queue) + self._busy

    def wait(self, seconds: float) -> bool:
        """Block until nothing is pending or ``seconds`` pass; True if nothing is."""
        give_up = time.monotonic() + seconds
        with self._lock:
            while self._queue or self._busy:
                left = give_up - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.05))
        return True

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue or self._queue[0][0] > time.monotonic():
                    wait = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._lock.wait(wait)
                _due, order, what, operation, give_up, delay = heapq.heappop(self._queue)
                self._busy += 1
            try:
                operation()
            except StoreError:
                now = time.monotonic()
                if now + delay < give_up:
                    with self._lock:
                        heapq.heappush(
                            self._queue,
                            (
                                now + delay,
                                order,
                                what,
                                operation,
                                give_up,
                                min(delay * 2, _MAX_DELAY),
                            ),
                        )
                else:
                    logger.warning(
                        "retrysafe: gave up after %.0f s trying to %s: the store kept failing",
                        HORIZON,
                        what,
                    )
            except Exception as exc:  # a bug, not the store: never kill the thread
                logger.error("retrysafe: could not %s (%s)", what, type(exc).__name__)
            finally:
                with self._lock:
                    self._busy -= 1
                    self._lock.notify_all()


_SETTLER = _Settler()


def _forget_in_child() -> None:
    # The parent's thread does not exist in a forked child, and the parent makes its own
    # transitions: the child starts empty.
    global _SETTLER
    _SETTLER = _Settler()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def settle_later(what: str, operation: Callable[[], object]) -> None:
    """Make ``operation`` (a fenced store transition, sync) in the background, retried while
    the store fails; ``what`` names it for the log (a tool's name and the transition, never
    an argument value)."""
    _SETTLER.add(what, operation)


def pending() -> int:
    """How many transitions are waiting or being made."""
    return _SETTLER.pending()


def wait_settled(seconds: float) -> bool:
    """Block until every handed-over transition is made (or given up) or ``seconds`` pass;
    True if none is left."""
    return _SETTLER.wait(seconds)


def _drain_at_exit() -> None:
    # A short wait at interpreter exit for transitions still owed (a release after a
    # cancelled call, a result that came back while the store failed).
    if _SETTLER.pending():
        _SETTLER.wait(_EXIT_WAIT)


_EXIT_WAIT = 5.0
atexit.register(_drain_at_exit)
