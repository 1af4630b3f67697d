"""retrysafe in a FastMCP server: a client repeats a charge, the first response is lost.

Run it: `python examples/mcp_server.py` (offline: fastmcp's in-memory Client).
"""

from __future__ import annotations

from typing import Any

import anyio
from fastmcp import Client, FastMCP

from _fake_payments import LossyPayments
from retrysafe import RetryConfig, tool
from retrysafe.integrations.mcp import protect

payments = LossyPayments()
server = FastMCP("shop")
protect(server)  # sessions per conversation (from _meta), effect annotations in tools/list


@server.tool
@tool.write(
    remote_idempotent=True, retry=RetryConfig(max_attempts=3, base_delay=0.01), registry=None
)
def charge_card(
    customer: str, amount_cents: int, idempotency_key: str | None = None
) -> dict[str, Any]:
    """Charge a customer's card (in cents)."""
    assert idempotency_key is not None
    return payments.charge(customer, amount_cents, idempotency_key)


async def main() -> None:
    async with Client(server) as client:
        listed = {t.name: t for t in await client.list_tools()}
        print("charge_card annotations:", listed["charge_card"].annotations)
        conversation = {"retrysafe/conversation": "conversation-42"}
        arguments = {"customer": "cus_42", "amount_cents": 1999}
        for _ in range(2):  # the model calls the tool, then repeats the call
            result = await client.call_tool("charge_card", arguments, meta=conversation)
            print("result:", result.data)
    print(payments.report())
    assert 1 == sum(payments.charged.values()), "charged more than once"


if __name__ == "__main__":
    anyio.run(main)
