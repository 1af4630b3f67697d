"""Keeping a lease alive while its holder works: the cache and the records both need it."""

from __future__ import annotations

import threading
from collections.abc import Awaitable
from typing import Callable

import anyio

from ._exceptions import StoreError

__all__ = ["heartbeat", "start_heartbeat"]


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
