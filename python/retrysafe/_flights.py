"""In-process single-flight: identical concurrent calls run once and share the outcome.

Used by the cache (concurrent misses) and by idempotency records (concurrent duplicates wait
in-process, so a burst never holds a store connection per caller). Per event loop for async
code (one decorated function may serve many loops), per process for threads.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

import anyio

__all__ = ["ThreadFlights", "join_or_lead"]

T = TypeVar("T")


class _Flight:
    """One execution in progress; its waiters share the outcome."""

    __slots__ = ("done", "error", "event", "value")

    def __init__(self, event: Any) -> None:
        self.event = event
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None


# Executions in flight, per event loop, keyed by the loop's identity (anyio's RunVar costs
# ~1.5 us per read, on every miss); a weakref finalizer drops a loop's entry with the loop.
_LOOPS: dict[int, dict[Hashable, _Flight]] = {}
_LOOPS_LOCK = threading.Lock()


def _current_loop() -> object:
    # asyncio is not imported here (25 ms): where no one imported it, no asyncio loop runs.
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            pass
    import trio  # the only other backend anyio runs on

    return trio.lowlevel.current_trio_token()


def _loop_flights() -> dict[Hashable, _Flight]:
    loop = _current_loop()
    flights = _LOOPS.get(id(loop))
    if flights is None:
        with _LOOPS_LOCK:
            flights = _LOOPS.get(id(loop))
            if flights is None:
                flights = _LOOPS[id(loop)] = {}
                weakref.finalize(loop, _LOOPS.pop, id(loop), None)
    return flights


async def join_or_lead(
    key: Hashable,
    lead: Callable[[], Awaitable[T]],
    *,
    wait_seconds: float | None = None,
    on_join: Callable[[], None] | None = None,
    on_timeout: Callable[[], BaseException] | None = None,
    force_lead: bool = False,
) -> T:
    """Await ``lead()`` unless an identical call (same ``key``) is in flight in this event
    loop; then wait for it and share its result or exception.

    Cancelling a waiter cancels only that waiter. If the leader is cancelled, the waiters do
    not inherit the cancellation: the first to wake leads again. ``wait_seconds`` bounds the
    wait (then ``on_timeout()`` is raised); ``force_lead`` runs ``lead`` regardless (the
    caller already owns the work, e.g. it holds a fresh claim).
    """
    flights = _loop_flights()
    give_up_at = None if wait_seconds is None else time.monotonic() + wait_seconds
    while not force_lead and (flight := flights.get(key)) is not None:
        if on_join is not None:
            on_join()
        if give_up_at is None:
            await flight.event.wait()
        else:
            with anyio.move_on_after(max(0.0, give_up_at - time.monotonic())):
                await flight.event.wait()
            if not flight.event.is_set():
                raise on_timeout() if on_timeout is not None else TimeoutError()
        if flight.done:
            return flight.value  # type: ignore[no-any-return]
        if isinstance(flight.error, Exception):
            raise flight.error
        # The leader was cancelled: loop, and lead if nobody else does.
    flight = _Flight(anyio.Event())
    flights[key] = flight
    try:
        value = await lead()
    except BaseException as exc:
        flight.error = exc
        raise
    else:
        flight.value = value
        flight.done = True
        return value
    finally:
        if flights.get(key) is flight:
            del flights[key]
        flight.event.set()


class ThreadFlights:
    """The same for threads: one execution per key at a time across a process's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}

    def join_or_lead(
        self,
        key: Hashable,
        lead: Callable[[], T],
        *,
        wait_seconds: float | None = None,
        on_join: Callable[[], None] | None = None,
        on_timeout: Callable[[], BaseException] | None = None,
        force_lead: bool = False,
    ) -> T:
        """Call ``lead()`` unless another thread runs the same key; then share its outcome."""
        give_up_at = None if wait_seconds is None else time.monotonic() + wait_seconds
        while True:
            with self._lock:
                flight = self._flights.get(key)
                leading = flight is None or force_lead
                if leading:
                    flight = self._flights[key] = _Flight(threading.Event())
            assert flight is not None
            if leading:
                break
            if on_join is not None:
                on_join()
            left = None if give_up_at is None else max(0.0, give_up_at - time.monotonic())
            if not flight.event.wait(left):
                raise on_timeout() if on_timeout is not None else TimeoutError()
            if flight.done:
                return flight.value  # type: ignore[no-any-return]
            if isinstance(flight.error, Exception):
                raise flight.error
            # The leading thread was interrupted (KeyboardInterrupt...): lead again.
        try:
            value = lead()
        except BaseException as exc:
            flight.error = exc
            raise
        else:
            flight.value = value
            flight.done = True
            return value
        finally:
            with self._lock:
                if self._flights.get(key) is flight:
                    del self._flights[key]
            flight.event.set()
