"""retrysafe in a raw SDK tool loop: tool-use blocks of the Anthropic and OpenAI SDKs run
through a ToolRegistry, which validates the model's arguments and returns each SDK's result
message. Run it: `python examples/raw_sdk_loop.py` (offline: scripted model turns).
"""

from __future__ import annotations

from typing import Any

import anyio
from anthropic.types import ToolUseBlock
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from _fake_payments import LossyPayments
from retrysafe import RetryConfig, ToolRegistry, session, tool

payments = LossyPayments()
registry = ToolRegistry()


@tool.write(
    remote_idempotent=True, retry=RetryConfig(max_attempts=3, base_delay=0.01), registry=registry
)
def charge_card(
    customer: str, amount_cents: int, idempotency_key: str | None = None
) -> dict[str, Any]:
    """Charge a customer's card (in cents)."""
    assert idempotency_key is not None
    return payments.charge(customer, amount_cents, idempotency_key)


async def main() -> None:
    print("tools for Anthropic:", [t["name"] for t in registry.anthropic()])
    # What the model sends back, turn after turn: a charge, a bad argument, the same charge.
    turns = [
        ToolUseBlock(
            id="toolu_1",
            name="charge_card",
            type="tool_use",
            input={"customer": "cus_42", "amount_cents": 1999},
        ),
        ToolUseBlock(
            id="toolu_2",
            name="charge_card",
            type="tool_use",
            input={"customer": "cus_42", "amount_cents": "19.99"},
        ),
    ]
    async with session("conversation-42"):  # one conversation: writes are recorded in it
        for block in turns:
            result = await registry.anthropic_result(block)
            print("anthropic tool_result:", result)
        repeat = ChatCompletionMessageFunctionToolCall(
            id="call_3",
            type="function",
            function={
                "name": "charge_card",
                "arguments": '{"customer": "cus_42", "amount_cents": 1999}',
            },
        )
        print("openai tool message:", await registry.openai_result(repeat))
    print(payments.report())
    assert 1 == sum(payments.charged.values()), "charged more than once"


if __name__ == "__main__":
    anyio.run(main)
