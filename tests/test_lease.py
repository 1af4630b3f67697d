"""run_with_heartbeat on asyncio (a timer until the first renewal is due, then a task) and
trio (a task group): quick work renews nothing, long work is renewed every third of its
lease, a lost lease cancels the work and raises what ``lost`` makes, the work's own error
and an outer cancellation pass through as themselves."""

from __future__ import annotations

import math
import time

import anyio
import pytest

from retrysafe._lease import Held, run_with_heartbeat

pytestmark = pytest.mark.anyio


class Lost(Exception):
    pass


async def test_quick_work_renews_nothing() -> None:
    renewals: list[float] = []

    async def renew() -> bool:
        renewals.append(anyio.current_time())
        return True

    async def work() -> str:
        await anyio.sleep(0.01)
        return "done"

    assert "done" == await run_with_heartbeat(work, renew, 0.3, Held(0.9), Lost)
    await anyio.sleep(0.4)  # past the first renewal's time: none was left behind
    assert [] == renewals


async def test_long_work_is_renewed_every_third_of_its_lease() -> None:
    held = Held(0.3)
    renewals: list[float] = []

    async def renew() -> bool:
        renewals.append(anyio.current_time())
        return True

    async def work() -> float:
        await anyio.sleep(0.55)
        return held.until

    start, began = anyio.current_time(), time.monotonic()  # (Held keeps monotonic time)
    until = await run_with_heartbeat(work, renew, 0.1, held, Lost)
    assert 2 <= len(renewals) <= 6, renewals  # (5 on an idle machine)
    assert renewals[0] - start >= 0.09
    assert until > began + 0.55  # each renewal moved the lease on
    count = len(renewals)
    await anyio.sleep(0.25)
    assert count == len(renewals)  # the heartbeat stopped with the work


async def test_a_lost_lease_cancels_the_work_and_raises_lost() -> None:
    held = Held(0.3)
    reached: list[str] = []

    async def renew() -> bool:
        return False  # the store says the lease is someone else's

    async def work() -> str:
        await anyio.sleep(5)
        reached.append("after")
        return "late"

    with anyio.fail_after(2):
        with pytest.raises(Lost):
            await run_with_heartbeat(work, renew, 0.05, held, Lost)
    assert held.lost and [] == reached


async def test_without_lost_a_lost_lease_only_marks_held() -> None:
    held = Held(0.3)

    async def renew() -> bool:
        return False

    async def work() -> str:
        await anyio.sleep(0.2)
        return "finished"

    assert "finished" == await run_with_heartbeat(work, renew, 0.05, held)
    assert held.lost


async def test_the_works_error_and_an_outer_cancel_pass_through() -> None:
    async def renew() -> bool:
        return True

    async def failing() -> None:
        await anyio.sleep(0.15)
        raise KeyError("the work's own")

    with pytest.raises(KeyError):
        await run_with_heartbeat(failing, renew, 0.05, Held(0.15), Lost)

    async def forever() -> None:
        await anyio.sleep(math.inf)

    with anyio.move_on_after(0.12) as scope:
        await run_with_heartbeat(forever, renew, 0.05, Held(0.15), Lost)
    assert scope.cancelled_caught  # the caller's own cancellation, not a lost lease


async def test_a_heartbeat_that_breaks_fails_the_call() -> None:
    """An error of the renewal that is not the store's (a bug) cancels the work and reaches
    the caller, as a task group would make it, never a log line at garbage collection."""

    async def renew() -> bool:
        raise ZeroDivisionError("a bug in the renewal")

    async def work() -> str:
        await anyio.sleep(5)
        return "late"

    with anyio.fail_after(2):
        with pytest.raises(ZeroDivisionError):
            await run_with_heartbeat(work, renew, 0.05, Held(0.15), Lost)
