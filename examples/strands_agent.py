"""retrysafe in a Strands agent: the model repeats a charge, the first response is lost.

Run it: `python examples/strands_agent.py` (offline: Strands' AnthropicModel talks to a
scripted Messages API on 127.0.0.1, `_fake_anthropic.py`).
"""

from __future__ import annotations

from typing import Any

import anyio
from strands import Agent, tool
from strands.models.anthropic import AnthropicModel

import retrysafe
from _fake_anthropic import FakeAnthropic, serving
from _fake_payments import LossyPayments
from retrysafe import RetryConfig
from retrysafe.integrations.strands import Retrysafe

payments = LossyPayments()
CHARGE = {"customer": "cus_42", "amount_cents": 1999}


@tool
@retrysafe.tool.write(
    remote_idempotent=True, retry=RetryConfig(max_attempts=3, base_delay=0.01), registry=None
)
def charge_card(
    customer: str, amount_cents: int, idempotency_key: str | None = None
) -> dict[str, Any]:
    """Charge a customer's card.

    Args:
        customer: The customer's id.
        amount_cents: The amount, in cents.
    """
    assert idempotency_key is not None
    return payments.charge(customer, amount_cents, idempotency_key)


async def main() -> None:
    # The model calls charge_card, then calls it again (as models do when unsure).
    api = FakeAnthropic([[("charge_card", CHARGE)]] * 2, text="Charged $19.99.")
    with serving(api) as url:
        model = AnthropicModel(
            client_args={"base_url": url, "api_key": "sk-offline"},
            model_id="claude-sonnet-4-5",
            max_tokens=1024,
        )
        agent = Agent(
            model=model, tools=[charge_card], plugins=[Retrysafe()], callback_handler=None
        )
        result = await agent.invoke_async(
            "Charge cus_42 $19.99", invocation_state={"principal": "user-7"}
        )
        await model.client.close()
    print(result)
    print(payments.report())
    assert 1 == sum(payments.charged.values()), "charged more than once"


if __name__ == "__main__":
    anyio.run(main)
