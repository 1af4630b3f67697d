"""Keeping a lease alive while its holder works: the cache and the records both need it."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from ._exceptions import StoreError

T = TypeVar("T")

__all__ = ["heartbeat", "run_with_heartbeat", "start_heartbeat"]


def start_heartbeat(renew: Callable[[], bool], every: float) -> threading.Event:
    """Call ``renew`` every ``every`` seconds from a daemon thread until the returned event is
    set, ``renew`` returns False (the lease was lost) or the store fails (the lease then runs
    out on its own, and its rules apply)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            try:
                if not renew():
                    return
            except StoreError:
                return

    threading.Thread(target=beat, name="retrysafe-lease", daemon=True).start()
    return stop


async def heartbeat(renew: Callable[[], Awaitable[bool]], every: float) -> None:
    """The async form: run it in a task group and cancel it when the work is done."""
    while True:
        await anyio.sleep(every)
        try:
            if not await renew():
                return
        except StoreError:
            return


async def run_with_heartbeat(
    work: Callable[[], Awaitable[T]], renew: Callable[[], Awaitable[bool]], every: float
) -> T:
    """Await ``work()`` while a heartbeat renews the lease. The work's exception is re-raised
    as itself, outside the task group (trio would wrap it in an ExceptionGroup); cancellation
    propagates as usual."""
    value: T | None = None
    error: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat, renew, every)
        try:
            value = await work()
        except Exception as exc:
            error = exc
        finally:
            tg.cancel_scope.cancel()
    if error is not None:
        raise error
    return value  # type: ignore[return-value]
