"""retrysafe in the Claude Agent SDK: the model repeats a charge, the first response is lost.

Run it: `python examples/claude_agent_sdk_tools.py` (offline: the SDK's bundled Claude Code
CLI talks to a scripted Messages API on 127.0.0.1, `_fake_anthropic.py`).
"""

from __future__ import annotations

import tempfile
import uuid
from typing import Any

import anyio
from claude_agent_sdk import ClaudeAgentOptions, ResultMessage, create_sdk_mcp_server

from _fake_anthropic import FakeAnthropic, serving
from _fake_payments import LossyPayments
from retrysafe import RetryConfig, tool
from retrysafe.integrations.claude_agent_sdk import as_tool, client

payments = LossyPayments()
CHARGE = {"customer": "cus_42", "amount_cents": 1999}


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
    # The model calls charge_card, then calls it again (as models do when unsure).
    api = FakeAnthropic([[("mcp__shop__charge_card", CHARGE)]] * 2, text="Charged $19.99.")
    with tempfile.TemporaryDirectory(prefix="claude-home-") as home, serving(api) as url:
        options = ClaudeAgentOptions(
            mcp_servers={"shop": create_sdk_mcp_server("shop", tools=[as_tool(charge_card)])},
            allowed_tools=["mcp__shop__charge_card"],
            tools=[],
            session_id=str(uuid.uuid4()),  # your application's conversation id
            model="claude-sonnet-4-5",
            cwd=home,
            env={
                "ANTHROPIC_BASE_URL": url,
                "ANTHROPIC_API_KEY": "sk-offline",
                "HOME": home,
                "CLAUDE_CONFIG_DIR": home,
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            },
        )
        async with client(options, principal="user-7") as claude:
            await claude.query("Charge cus_42 $19.99")
            async for message in claude.receive_response():
                if isinstance(message, ResultMessage):
                    print(message.result)
    print(payments.report())
    assert 1 == sum(payments.charged.values()), "charged more than once"


if __name__ == "__main__":
    anyio.run(main)
