"""Each defect of the partition-and-pause run, against a real redis-server and PostgreSQL
behind a fault proxy, on asyncio and trio: a caller's deadline is kept while the store is
cut off, a claim whose reply was lost leaves nothing to settle, an owner paused past its
lease stops before acting, and a live owner's record is not settled by hand."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.lowlevel
import pytest

from retrysafe import (
    IdempotencyInProgressError,
    LeaseLostError,
    OutcomeUnknownError,
    StoreError,
    current_fence,
    current_key,
    idempotent,
    resolve,
    side_effect_started,
)
from retrysafe._settle import wait_settled
from retrysafe.stores import PostgresStore, RedisStore

from ..conftest import _make_store
from .proxy import FaultProxy

pytestmark = pytest.mark.anyio
SERVERS = ["redis", "postgres"]
#: The bound this project states: a caller is back within its deadline plus this.
DEADLINE_GRACE = 1.0


def _proxied(url: str) -> tuple[FaultProxy, str]:
    parts = urlsplit(url)
    proxy = FaultProxy(parts.hostname or "127.0.0.1", parts.port or 0)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    netloc = f"{netloc[0]}@{host}" if len(netloc) == 2 else host
    return proxy, urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture(params=SERVERS)
def cut_off(request: pytest.FixtureRequest) -> Any:
    """(proxy, store through it): a store whose connection the test can partition."""
    if request.param == "redis":
        proxy, url = _proxied(request.getfixturevalue("redis_url"))
        store: Any = RedisStore(url, prefix=f"fault-{uuid.uuid4().hex[:8]}", command_timeout=3)
    else:
        proxy, url = _proxied(request.getfixturevalue("postgres_url"))
        store = PostgresStore(
            url, prefix=f"fault-{uuid.uuid4().hex[:8]}", timeout=3, command_timeout=3
        )
    yield proxy, store
    proxy.set("pass")
    wait_settled(15)
    proxy.close()
    store.close()


def _charging(store: Any, ledger: list[str], **options: Any) -> Any:
    @idempotent(store=store, effect="write", scope=f"charge-{uuid.uuid4().hex[:6]}", **options)
    async def charge(order: str) -> str:
        await anyio.lowlevel.checkpoint()
        ledger.append(order)
        return f"ch-{order}"

    return charge


async def test_a_deadline_is_kept_while_the_store_is_cut_off(cut_off: Any) -> None:
    """A WRITE under fail_after(2) while the proxy holds every byte: the caller is back
    within 2 + 1 s (it waited 30 s, and on trio + PostgreSQL the charge ran after the
    deadline); once the network heals nothing is left to settle, and the retry charges once."""
    proxy, store = cut_off
    ledger: list[str] = []
    charge = _charging(store, ledger)
    assert "ch-warm" == await charge("warm")  # connections made
    proxy.set("hold")
    started = time.monotonic()
    with pytest.raises((TimeoutError, StoreError)):
        with anyio.fail_after(2):
            await charge("o-1")
    assert time.monotonic() - started <= 2 + DEADLINE_GRACE
    proxy.set("pass")
    assert await anyio.to_thread.run_sync(wait_settled, 20.0)
    await anyio.sleep(0.5)
    assert ["warm"] == ledger  # never charged after its deadline
    assert charge.idempotency.record(charge.idempotency.key_for("o-1")) is None
    assert "ch-o-1" == await charge("o-1")
    assert ["warm", "o-1"] == ledger


async def test_a_claim_whose_reply_was_lost_is_given_up_by_its_caller(cut_off: Any) -> None:
    """The claim reaches the server, its reply does not: the caller fails (no side effect),
    and the record is removed by its nonce, so the next call runs instead of finding an
    UNKNOWN outcome that lasts three days."""
    proxy, store = cut_off
    ledger: list[str] = []
    charge = _charging(store, ledger, lease_seconds=2)
    assert "ch-warm" == await charge("warm")
    proxy.set("drop_replies")
    with pytest.raises((TimeoutError, StoreError)):
        with anyio.fail_after(1.5):
            await charge("o-2")
    proxy.set("pass")
    proxy.reset()  # the connections that lost replies are out of step
    assert await anyio.to_thread.run_sync(wait_settled, 20.0)
    await anyio.sleep(2.5)  # past the lease: a claim left behind would now be UNKNOWN
    assert charge.idempotency.record(charge.idempotency.key_for("o-2")) is None
    assert "ch-o-2" == await charge("o-2")
    assert ["warm", "o-2"] == ledger


@pytest.mark.parametrize("kind", ["memory", "redis", "postgres"])
@pytest.mark.parametrize("checkpoint", ["side_effect_started", "current_key", "current_fence"])
def test_an_owner_paused_past_its_lease_stops_before_acting(
    kind: str, checkpoint: str, request: pytest.FixtureRequest
) -> None:
    """Owner A pauses past its lease before acting (its event loop blocked, as under
    SIGSTOP: no heartbeat either); B finds the record UNKNOWN; the operator sees nothing
    charged and resolves it not applied; C charges. When A resumes, its checkpoint raises
    LeaseLostError: one charge, not two (Redis and PostgreSQL made two). With
    ``checkpoint=True`` the store knows A never reached its checkpoint: B takes the record
    over and charges, no person needed, and A still stops at its checkpoint."""
    store: Any = _make_store(kind, request)
    ledger: list[str] = []
    paused = threading.Event()
    check = {"side_effect_started": side_effect_started, "current_key": current_key}.get(
        checkpoint, current_fence
    )

    @idempotent(
        store=store,
        effect="write",
        scope=f"pay-{uuid.uuid4().hex[:6]}",
        lease_seconds=1,
        checkpoint=checkpoint == "side_effect_started",
    )
    async def pay(order: str) -> str:
        who = threading.current_thread().name
        if who == "A":
            paused.set()
            time.sleep(2.5)  # noqa: ASYNC251 (the whole loop stalls past the lease)
        check()
        ledger.append(who)
        return who

    outcome: dict[str, Any] = {}

    def owner() -> None:
        try:
            outcome["A"] = anyio.run(pay, "o")
        except BaseException as exc:
            outcome["A"] = exc

    key = pay.idempotency.key_for("o")
    thread = threading.Thread(target=owner, name="A")
    thread.start()
    try:
        assert paused.wait(10)
        with pytest.raises(IdempotencyInProgressError):  # a live owner's record: not by hand
            pay.idempotency.resolve(key, not_applied=True)
        time.sleep(1.5)  # A's lease has run out
        if checkpoint == "side_effect_started":  # A never marked its start: B takes over
            assert threading.current_thread().name == anyio.run(pay, "o")  # B runs
        else:
            with pytest.raises(OutcomeUnknownError) as unknown:
                anyio.run(pay, "o")  # B
            assert [] == ledger  # the operator looks: nothing was charged
            resolve(unknown.value, not_applied=True)
            assert threading.current_thread().name == anyio.run(pay, "o")  # C runs
    finally:
        thread.join(10)
    assert isinstance(outcome["A"], LeaseLostError), outcome
    assert [threading.current_thread().name] == ledger
    close = getattr(store, "close", None)
    if close is not None:
        close()
