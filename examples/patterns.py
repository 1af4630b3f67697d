"""The usage patterns of "making agent tool calls safe to retry", with retrysafe.

Run it: `python examples/patterns.py` (set REDIS_URL to use Redis for the sync cache).
The payment and e-mail services are fakes in this process; each remembers the side effects
it really performed, so the run can check that nothing happened twice.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from typing import Any

import anyio

from retrysafe import IdempKey, RetryConfig, cache_tool, with_retry
from retrysafe.testing import retries_disabled_waits


class FakePayments:
    """Honours idempotency keys like Stripe; the first refund attempt times out after acting."""

    def __init__(self) -> None:
        self.effects: Counter[str] = Counter()
        self.by_key: dict[str, dict[str, Any]] = {}
        self.refund_attempts = 0

    def charge(self, customer: str, amount_cents: int, idempotency_key: str) -> dict[str, Any]:
        if idempotency_key in self.by_key:
            return self.by_key[idempotency_key]
        self.effects[f"charge:{customer}:{amount_cents}"] += 1
        result = {"id": f"ch_{uuid.uuid4().hex[:8]}", "amount": amount_cents}
        self.by_key[idempotency_key] = result
        return result

    def refund(self, order_id: str, idempotency_key: str) -> dict[str, Any]:
        self.refund_attempts += 1
        if idempotency_key not in self.by_key:
            self.effects[f"refund:{order_id}"] += 1
            self.by_key[idempotency_key] = {"refund": f"re_{order_id}"}
        if self.refund_attempts == 1:
            raise TimeoutError("refunded, but the response was lost")
        return self.by_key[idempotency_key]


class FakeEmail:
    def __init__(self) -> None:
        self.effects: Counter[str] = Counter()
        self.by_key: set[str] = set()

    def send(self, to: str, template: str, idempotency_key: str) -> str:
        if idempotency_key not in self.by_key:
            self.by_key.add(idempotency_key)
            self.effects[f"{template}:{to}"] += 1
        return f"queued:{idempotency_key}"


payments = FakePayments()
email = FakeEmail()
catalog_calls = Counter[str]()


# 1. A payment charge keyed by session and arguments: a retry sends the same key.
def charge_customer(session_id: str, customer: str, amount_cents: int) -> dict[str, Any]:
    key = IdempKey.for_args(
        scope=f"charge:{session_id}", args={"customer": customer, "amount_cents": amount_cents}
    )
    return payments.charge(customer, amount_cents, idempotency_key=str(key))


# 2. A lookup cached for five minutes; concurrent identical lookups run once.
@cache_tool(ttl_seconds=300, max_size=512)
async def lookup_product(sku: str) -> dict[str, Any]:
    catalog_calls[sku] += 1
    await anyio.sleep(0.01)
    return {"sku": sku, "price_cents": 1999}


# 3. A confirmation e-mail: cached for the retry window, with a key inside for the provider.
@cache_tool(ttl_seconds=300)
def send_confirmation(session_id: str, to: str, order_id: str) -> str:
    key = IdempKey.for_args(scope=f"email:{session_id}", args={"to": to, "order": order_id})
    return email.send(to, "order-confirmation", idempotency_key=str(key))


# 4. A sync function cached in Redis (shared by every process), when REDIS_URL is set.
def _redis_store() -> Any:
    url = os.environ.get("REDIS_URL")
    if not url:
        return None
    import redis

    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    return redis.Redis(host=host, port=int(port))


@cache_tool(ttl_seconds=120, store=_redis_store())
def exchange_rate(base: str, quote: str) -> float:
    return 1.08 if (base, quote) == ("EUR", "USD") else 1.0


# 5. A refund (a cached sync write) retried: the key makes the retry safe at the remote.
@cache_tool(ttl_seconds=300)
def refund_order(order_id: str) -> dict[str, Any]:
    # An order id is unique across sessions: a global scope is right here.
    key = IdempKey.for_args(scope="refund", args={"order_id": order_id})  # retrysafe: ignore[RS005]
    return payments.refund(order_id, idempotency_key=str(key))


safe_refund = with_retry(
    refund_order, config=RetryConfig(max_attempts=3, base_delay=1.0, jitter=True)
)


async def agent_turns() -> None:
    # The model calls tools, sometimes twice, sometimes concurrently.
    charge_customer("sess-1", "cus_42", 1999)
    charge_customer("sess-1", "cus_42", 1999)  # a retry by the model: same key, no second charge
    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(lookup_product, "sku-mug")
    send_confirmation("sess-1", "ada@example.com", "ord-1")
    send_confirmation("sess-1", "ada@example.com", "ord-1")
    exchange_rate("EUR", "USD")
    exchange_rate(base="EUR", quote="USD")
    safe_refund("ord-1")


def main() -> dict[str, Any]:
    """Run the patterns; return what each fake remote really did."""
    anyio.run(agent_turns)
    report = {
        "charges": dict(payments.effects),
        "emails": dict(email.effects),
        "catalog_calls": dict(catalog_calls),
        "exchange_rate_cache": exchange_rate.cache.stats(),  # type: ignore[attr-defined]
        "refund_attempts": payments.refund_attempts,
    }
    duplicates = sum(
        n - 1 for c in (payments.effects, email.effects, catalog_calls) for n in c.values()
    )
    report["duplicates"] = duplicates
    return report


if __name__ == "__main__":
    with retries_disabled_waits():  # the refund's retry would wait ~1 s: not in a demo
        result = main()
    for name, value in result.items():
        print(f"{name:>20}: {value}")
    print("no side effect happened twice" if result["duplicates"] == 0 else "DUPLICATES!")
