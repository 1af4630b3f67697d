"""Keeping a lease alive while its holder works: the cache and the records both need it.

A heartbeat renews the lease every third of its length. What it learns is kept on a
:class:`Held` that the holder's checkpoints read without I/O: ``lost`` once the store said
the lease is someone else's, and ``until``, the monotonic time the last renewal the store
confirmed is good for (measured from before it was sent, so never later than the store's
own deadline). A holder paused past ``until`` (SIGSTOP, a long GC, a blocked loop) knows at
its next checkpoint that it may have been cut off, before it acts.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import anyio

from ._exceptions import StoreError

T = TypeVar("T")

__all__ = ["Held", "heartbeat", "run_with_heartbeat", "start_heartbeat"]


class Held:
    """What the holder knows of its lease: ``lost`` (the store fenced it out) and ``until``
    (monotonic seconds it is good for; ``inf`` for a lease that is not tracked)."""

    __slots__ = ("lease", "lost", "until")

    def __init__(self, lease: float = math.inf, since: float | None = None) -> None:
        self.lease = lease
        self.lost = False
        self.until = (time.monotonic() if since is None else since) + lease

    def valid(self) -> bool:
        return not self.lost and time.monotonic() < self.until


def start_heartbeat(
    renew: Callable[[], bool], every: float, held: Held | None = None
) -> threading.Event:
    """Call ``renew`` every ``every`` seconds from a daemon thread until the returned event is
    set or ``renew`` returns False (the lease was lost: ``held.lost``). A store failure does
    not stop it (the store may come back); ``held.until`` runs out meanwhile."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            began = time.monotonic()
            try:
                kept = renew()
            except StoreError:
                continue
            if not kept:
                if held is not None:
                    held.lost = True
                return
            if held is not None:
                held.until = began + held.lease

    threading.Thread(target=beat, name="retrysafe-lease", daemon=True).start()
    return stop


async def heartbeat(
    renew: Callable[[], Awaitable[bool]],
    every: float,
    held: Held | None = None,
    *,
    first: float | None = None,
) -> bool:
    """The async form: run it in a task group and cancel it when the work is done. Returns
    False when the lease was lost (``held.lost``). ``first``: seconds before the first
    renewal (``every`` by default)."""
    wait = every if first is None else first
    while True:
        await anyio.sleep(wait)
        wait = every
        began = time.monotonic()
        try:
            kept = await renew()
        except StoreError:
            continue
        if not kept:
            if held is not None:
                held.lost = True
            return False
        if held is not None:
            held.until = began + held.lease


async def run_with_heartbeat(
    work: Callable[[], Awaitable[T]],
    renew: Callable[[], Awaitable[bool]],
    every: float,
    held: Held | None = None,
    lost: Callable[[], BaseException] | None = None,
) -> T:
    """Await ``work()`` while a heartbeat renews the lease. The work's exception is re-raised
    as itself (trio would wrap it in an ExceptionGroup); cancellation propagates as usual.
    With ``lost``: once the store says the lease is lost, the work is cancelled at its next
    checkpoint and ``lost()`` is raised instead (a fenced-out holder stops, rather than
    acting for a record that is no longer its own).

    On asyncio the heartbeat is a timer until its first renewal is due (``every``: a third
    of the lease), and a task only from then on: most work ends long before, and a timer
    costs a fraction of a task group's task and its cancellation. Under trio (and any
    other backend) a task group runs it."""
    # (asyncio is not imported for this: ``import retrysafe`` does not load it, and a loop
    # can only be running once something else has.)
    asyncio = sys.modules.get("asyncio")
    try:
        loop = asyncio.get_running_loop()  # type: ignore[union-attr]
    except (AttributeError, RuntimeError):  # trio: no asyncio loop runs this task
        return await _with_task_group(work, renew, every, held, lost)
    scope = anyio.CancelScope()
    beating: list[Any] = []  # the heartbeat's task, once started
    failed: list[Exception] = []
    beat = _beat(renew, every, held, lost, failed, scope.cancel, first=0)

    def start() -> None:
        beating.append(loop.create_task(beat()))

    due = loop.call_later(every, start)
    try:
        with scope:
            return await work()
    finally:
        due.cancel()
        for task in beating:
            task.cancel()
    # Here only when the scope caught its own cancellation, which only the heartbeat asks for:
    # it failed, or the lease was lost (and only given ``lost``).
    if failed:
        raise failed[0]
    assert lost is not None
    raise lost()


def _beat(
    renew: Callable[[], Awaitable[bool]],
    every: float,
    held: Held | None,
    lost: Callable[[], BaseException] | None,
    failed: list[Exception],
    cancel: Callable[[], object],
    first: float | None = None,
) -> Callable[[], Coroutine[Any, Any, None]]:
    """The heartbeat of a holder, calling ``cancel`` (its work's scope) when the lease is
    lost (given ``lost``) or the renewal fails with anything but the store's error, which it
    leaves in ``failed``: raised to the caller as itself (trio's task group would wrap it in
    an ExceptionGroup; on asyncio no task group would hear it at all)."""

    async def beat() -> None:
        try:
            kept = await heartbeat(renew, every, held, first=first)
        except Exception as exc:  # not the store's failure (the heartbeat rides those out)
            failed.append(exc)
            cancel()
            return
        if not kept and lost is not None:
            cancel()

    return beat


async def _with_task_group(
    work: Callable[[], Awaitable[T]],
    renew: Callable[[], Awaitable[bool]],
    every: float,
    held: Held | None,
    lost: Callable[[], BaseException] | None,
) -> T:
    value: T | None = None
    error: BaseException | None = None
    failed: list[Exception] = []
    finished = False
    async with anyio.create_task_group() as tg:
        tg.start_soon(_beat(renew, every, held, lost, failed, tg.cancel_scope.cancel))
        try:
            value = await work()
            finished = True
        except Exception as exc:
            error = exc
        finally:
            tg.cancel_scope.cancel()
    if error is not None:
        raise error
    if failed and not finished:
        raise failed[0]
    if not finished and lost is not None:
        raise lost()
    return value  # type: ignore[return-value]
