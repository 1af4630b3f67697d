"""Writes whose answer is unclear, against a real payments server on loopback: it charges and
then drops the connection (a lost response), and throttles with 429 + Retry-After. Agents
repeat their calls as models do. With a Stripe-like server that honours ``Idempotency-Key``
no charge is made twice and no repeat comes before the server's time; with a server that
ignores keys, the records make each unclear charge an ``OutcomeUnknownError`` that
``resolve()`` settles, and still nothing is charged twice."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import anyio
import pytest

import retrysafe
from retrysafe import (
    OutcomeUnknownError,
    RetryConfig,
    RetryLaterError,
    Store,
    ToolRegistry,
    current_key,
    session,
    tool,
)

from .http_server import Exchange, serving

pytestmark = pytest.mark.anyio
httpx2 = pytest.importorskip("httpx2")


class Payments:
    """Charges per request. ``dedupe``: one charge per Idempotency-Key, replayed after (as
    Stripe). The first charge of every third order loses its response; the first request
    of every other order is throttled (429 + Retry-After, nothing charged)."""

    def __init__(self, *, dedupe: bool, retry_after: float = 1.0, status: int = 429) -> None:
        self.dedupe = dedupe
        self.retry_after = retry_after
        self.status = status
        self.lock = threading.Lock()
        self.charges: Counter[str] = Counter()  # per order
        self.by_key: dict[str, dict[str, Any]] = {}
        self.requests: Counter[str] = Counter()
        self.not_before: dict[str, float] = {}
        self.early = 0
        self.lost = 0

    def __call__(self, ex: Exchange) -> None:
        order = json.loads(ex.body())["order"]
        key = ex.headers.get("Idempotency-Key") or ""
        with self.lock:
            self.requests[order] += 1
            n = self.requests[order]
            if time.time() < self.not_before.get(order, 0.0):
                self.early += 1
            if n == 1 and _number(order) % 2 == 0:
                self.not_before[order] = time.time() + self.retry_after
                throttled = True
            else:
                throttled = False
                replay = self.by_key.get(key) if self.dedupe else None
                if replay is None:
                    self.charges[order] += 1
                    replay = {"id": f"ch_{sum(self.charges.values())}", "order": order}
                    self.by_key[key] = replay
                    lose = self.charges[order] == 1 and _number(order) % 3 == 0
                    self.lost += lose
                else:
                    lose = False
        if throttled:
            ex.reply(
                self.status,
                b'{"error": "slow down"}',
                {"Retry-After": f"{self.retry_after:g}"},
            )
        elif lose:
            ex.drop()
        else:
            ex.reply(200, json.dumps(replay).encode())

    def charged(self, order: str) -> dict[str, Any] | None:
        """The operator's lookup: the charge made for an order, if any."""
        with self.lock:
            return next((c for c in self.by_key.values() if c["order"] == order), None)


def _number(order: str) -> int:
    return int(order.rsplit("-", 1)[1])


def _charge_tool(url: str, store: Store, *, remote_idempotent: bool) -> Any:
    retry = (
        RetryConfig(max_attempts=3, base_delay=0.05, max_delay=0.1) if remote_idempotent else None
    )

    async def charge(order: str, amount_cents: int) -> dict[str, Any]:
        """Charge an order."""
        async with httpx2.AsyncClient(timeout=5) as client:
            response = await client.post(
                url + "/charges",
                json={"order": order, "amount_cents": amount_cents},
                headers={"Idempotency-Key": str(current_key())},
            )
            response.raise_for_status()
            return dict(response.json())

    return tool.write(
        charge,
        remote_idempotent=remote_idempotent,
        retry=retry,
        store=store,
        registry=ToolRegistry(),
    )


AGENTS, ORDERS = 6, 4


async def _agents(run_one: Any) -> None:
    async with anyio.create_task_group() as tasks:
        for agent in range(AGENTS):
            for n in range(ORDERS):
                tasks.start_soon(run_one, f"agent-{agent}", f"order-{agent * ORDERS + n}")


async def test_a_server_that_honours_keys_charges_once_and_is_never_early(
    astore: Store,
) -> None:
    server = Payments(dedupe=True)
    with serving(server) as url:
        charge = _charge_tool(url, astore, remote_idempotent=True)
        results: dict[str, dict[str, Any]] = {}

        async def model(agent: str, order: str) -> None:
            with session(agent):
                for _ in range(6):  # the model repeats the call until it gets an answer
                    try:
                        results[order] = await charge(order, 500)
                        return
                    except Exception:
                        continue

        await _agents(model)
    orders = [f"order-{i}" for i in range(AGENTS * ORDERS)]
    assert set(orders) == set(results)
    assert {order: 1 for order in orders} == dict(server.charges)
    assert 0 == server.early
    assert server.lost > 0 and any(n > 1 for n in server.requests.values())
    print(
        f"\nhonours keys: {len(orders)} orders, {sum(server.requests.values())} requests, "
        f"{server.lost} responses lost, {sum(server.charges.values())} charges, "
        f"{server.early} early repeats"
    )


async def test_a_server_that_ignores_keys_gets_unknowns_settled_by_hand(astore: Store) -> None:
    server = Payments(dedupe=False)
    with serving(server) as url:
        charge = _charge_tool(url, astore, remote_idempotent=False)
        unknown: dict[str, OutcomeUnknownError] = {}
        results: dict[str, dict[str, Any]] = {}

        async def model(agent: str, order: str) -> None:
            with session(agent):
                for _ in range(4):
                    try:
                        results[order] = await charge(order, 500)
                        return
                    except OutcomeUnknownError as error:
                        unknown[order] = error  # the model is told not to repeat blindly
                    except httpx2.HTTPStatusError:
                        continue  # throttled: repeat at once (the record makes it wait)

        await _agents(model)
        assert server.lost == len(unknown) > 0
        assert set(results) | set(unknown) == {f"order-{i}" for i in range(AGENTS * ORDERS)}
        # The operator looks each unclear charge up and settles it.
        for order, error in unknown.items():
            made = server.charged(order)
            assert made is not None  # this server lost responses only after charging
            retrysafe.resolve(error, applied=made)

        async def settled(agent: str, order: str) -> None:
            with session(agent):
                results[order] = await charge(order, 500)  # replayed, not sent

        before = sum(server.requests.values())
        await _agents(settled)
        assert before == sum(server.requests.values())
    assert {f"order-{i}": 1 for i in range(AGENTS * ORDERS)} == dict(server.charges)
    assert 0 == server.early
    print(
        f"\nignores keys: {AGENTS * ORDERS} orders, {before} requests, {server.lost} responses "
        f"lost, {len(unknown)} OutcomeUnknownError settled by resolve(), "
        f"{sum(server.charges.values())} charges, {server.early} early repeats"
    )


async def test_a_repeat_too_far_ahead_of_retry_after_is_refused_with_a_hint(
    astore: Store,
) -> None:
    """Retry-After longer than a call waits: the repeat sends nothing and says when."""
    server = Payments(dedupe=False, retry_after=120)
    with serving(server) as url:
        charge = _charge_tool(url, astore, remote_idempotent=False)
        with session("a"):
            with pytest.raises(httpx2.HTTPStatusError):
                await charge("order-0", 500)
            with pytest.raises(RetryLaterError) as raised:
                await charge("order-0", 500)
            assert {"id": "ch_1", "order": "order-1"} == await charge("order-1", 500)
    assert 1 == server.requests["order-0"]
    assert 100 < raised.value.retry_after <= 120
    assert "again in 120 s" in raised.value.llm_hint or "again in 119 s" in raised.value.llm_hint
    assert str(raised.value.tool).endswith("charge")
    assert raised.value.key is not None


async def test_an_unknown_503_says_what_the_server_answered(astore: Store) -> None:
    """A 5xx on a write may have acted: UNKNOWN, with the server's status and wait in it."""

    def unavailable(ex: Exchange) -> None:
        ex.body()
        ex.reply(503, b"{}", {"Retry-After": "2"})

    with serving(unavailable) as url:
        charge = _charge_tool(url, astore, remote_idempotent=False)
        with session("a"), pytest.raises(OutcomeUnknownError) as raised:
            await charge("order-1", 500)
    assert "answered HTTP 503 and asked to wait 2 s (Retry-After)" in str(raised.value)


async def test_the_model_reads_a_throttled_call_with_its_wait(astore: Store) -> None:
    """Through the registry a raw 429 becomes an error result naming the status and wait;
    the repeat, sent at once, waits for the server's time."""
    server = Payments(dedupe=False)
    with serving(server) as url:
        registry = ToolRegistry()
        charge = _charge_tool(url, astore, remote_idempotent=False)
        registry.add(charge)
        with session("a"):
            first = await registry.call("charge", {"order": "order-2", "amount_cents": 5})
            second = await registry.call("charge", {"order": "order-2", "amount_cents": 5})
    assert not first.ok
    assert "HTTP 429" in first.text and "again in 1 s" in first.text
    assert second.ok and 0 == server.early
    assert 1 == server.charges["order-2"]


async def test_a_refused_connection_releases_the_write(astore: Store) -> None:
    """Nothing listening: the request never left, so the write is released, not UNKNOWN, and
    the repeat runs (through the SDK's wrapper too: anthropic's APIConnectionError)."""
    import anthropic

    from .http_server import closed_port

    url = f"http://127.0.0.1:{closed_port()}"
    runs: list[str] = []

    async def charge(order: str) -> dict[str, Any]:
        """Charge an order."""
        runs.append(order)
        async with httpx2.AsyncClient(timeout=2) as client:
            response = await client.post(url + "/charges", json={"order": order})
            return dict(response.json())

    async def ask(question: str) -> str:
        """Ask a model (through the SDK)."""
        runs.append(question)
        client = anthropic.AsyncAnthropic(base_url=url, api_key="test", max_retries=0)
        async with client:
            await client.messages.create(
                model="m", max_tokens=1, messages=[{"role": "user", "content": question}]
            )
        return "never"

    for fn, arg in ((charge, "order-1"), (ask, "hello")):
        wrapped = tool.write(fn, store=astore, registry=ToolRegistry())
        with session("refused"):
            for _ in range(2):
                with pytest.raises(Exception) as raised:
                    await wrapped(arg)
                assert not isinstance(raised.value, OutcomeUnknownError), raised.value
    assert ["order-1", "order-1", "hello", "hello"] == runs


async def test_a_record_waiting_on_retry_after_shows_the_server_s_wait(astore: Store) -> None:
    """While a repeat waits out the server's Retry-After (its record in progress), an
    operator's ``records.show`` names the wait; once sent, the record completes."""
    server = Payments(dedupe=False, retry_after=3)
    with serving(server) as url:
        charge = _charge_tool(url, astore, remote_idempotent=False)
        with session("a"):
            with pytest.raises(httpx2.HTTPStatusError):
                await charge("order-2", 500)  # 429: released, its wait noted
            answered = time.time()  # (just after the 429 came back)
            async with anyio.create_task_group() as tg:
                tg.start_soon(charge, "order-2", 500)  # claims, then waits ~3 s to send
                await anyio.sleep(0.7)
                waiting = retrysafe.records.list(astore, state="in_progress").records
                assert 1 == len(waiting)
                shown = retrysafe.records.show(astore, waiting[0].key)
                assert shown is not None and shown.not_before is not None
                # The server's 3 s from its answer: measured from then, not from this read,
                # which a loaded machine (a cluster's listing scans every node) may delay.
                assert 2.0 < shown.not_before - answered < 3.5, shown.not_before - answered
    assert 2 == server.requests["order-2"] and 0 == server.early
    done = retrysafe.records.show(astore, waiting[0].key)
    assert done is not None and "completed" == done.state and done.not_before is None
