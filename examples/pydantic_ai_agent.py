"""retrysafe in a Pydantic AI agent: the model repeats a charge, the first response is lost.

Run it: `python examples/pydantic_ai_agent.py` (offline: a FunctionModel plays the model).
"""

from __future__ import annotations

from typing import Any

import anyio
from pydantic_ai import Agent
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from _fake_payments import LossyPayments
from retrysafe import RetryConfig, tool
from retrysafe.integrations.pydantic_ai import Retrysafe

payments = LossyPayments()


def scripted_model(messages: list[Any], info: AgentInfo) -> ModelResponse:
    """Calls charge_card, then calls it again (as models do when unsure), then answers."""
    turns = sum(1 for m in messages if isinstance(m, ModelResponse))
    if turns < 2:
        return ModelResponse(
            parts=[ToolCallPart("charge_card", {"customer": "cus_42", "amount_cents": 1999})]
        )
    return ModelResponse(parts=[TextPart("Charged cus_42 $19.99.")])


agent = Agent(FunctionModel(scripted_model), capabilities=[Retrysafe()])


@agent.tool_plain
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
    result = await agent.run("Charge cus_42 $19.99")
    print(result.output)
    print(payments.report())
    assert 1 == sum(payments.charged.values()), "charged more than once"


if __name__ == "__main__":
    anyio.run(main)
