"""The fake payments API the framework examples share: it deduplicates by idempotency key,
like Stripe, and loses the response of the first charge after acting (a timeout)."""

from __future__ import annotations

from collections import Counter
from typing import Any


class LossyPayments:
    """Charges once per idempotency key; the first response is lost after the charge."""

    def __init__(self) -> None:
        self.charged: Counter[tuple[str, int]] = Counter()
        self.by_key: dict[str, dict[str, Any]] = {}
        self.requests = 0

    def charge(self, customer: str, amount_cents: int, idempotency_key: str) -> dict[str, Any]:
        self.requests += 1
        if idempotency_key not in self.by_key:
            self.charged[(customer, amount_cents)] += 1
            self.by_key[idempotency_key] = {
                "id": f"ch_{len(self.by_key) + 1}",
                "amount": amount_cents,
            }
            if self.requests == 1:
                raise TimeoutError("charged, but the response was lost")
        return self.by_key[idempotency_key]

    def report(self) -> str:
        return (
            f"requests sent: {self.requests}, charges made: {sum(self.charged.values())} "
            f"({dict(self.charged)})"
        )
