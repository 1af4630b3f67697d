"""The shop every framework's integration test drives: a charge (its remote deduplicates by
the key) and an e-mail whose server hangs up after accepting it (an UNKNOWN outcome), and
what each really did."""

from __future__ import annotations

from typing import Any

import anyio

from retrysafe import MemoryStore, Store, tool


class Ledger:
    """``charge_card`` and ``send_email``, recording on one store, and their effects."""

    def __init__(self, store: Store | None = None) -> None:
        self.charges: list[str] = []
        self.sent: list[str] = []
        store = store or MemoryStore()

        @tool.write(remote_idempotent=True, registry=None, store=store)
        async def charge_card(
            customer: str, amount_cents: int, idempotency_key: str | None = None
        ) -> dict[str, Any]:
            """Charge a customer's card.

            Args:
                customer: The customer's id.
                amount_cents: The amount, in cents.
            """
            assert idempotency_key is not None
            await anyio.sleep(0.01)
            self.charges.append(idempotency_key)
            return {"charge": f"ch_{len(self.charges)}"}

        @tool.write(registry=None, store=store)
        def send_email(to: str) -> str:
            """Send an e-mail.

            Args:
                to: The address.
            """
            self.sent.append(to)
            raise ConnectionError("the mail server hung up after accepting it")

        self.charge_card = charge_card
        self.send_email = send_email
