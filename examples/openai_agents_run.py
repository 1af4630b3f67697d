"""retrysafe with the OpenAI Agents SDK: the model repeats a charge, the first response is
lost. Run it: `python examples/openai_agents_run.py` (offline: the SDK's ScriptedModel).
"""

from __future__ import annotations

from typing import Any

import anyio
from agents import Agent, SQLiteSession, set_tracing_disabled
from agents.testing import ScriptedModel, assistant_message, function_call

from _fake_payments import LossyPayments
from retrysafe import RetryConfig, tool
from retrysafe.integrations.openai_agents import function_tool, run

payments = LossyPayments()
set_tracing_disabled(True)  # offline example: no trace export


@function_tool
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
    arguments = {"customer": "cus_42", "amount_cents": 1999}
    model = ScriptedModel(
        [
            [function_call("charge_card", arguments, call_id="call_1")],
            [function_call("charge_card", arguments, call_id="call_2")],  # the model repeats
            [assistant_message("Charged cus_42 $19.99.")],
        ]
    )
    agent = Agent(name="cashier", model=model, tools=[charge_card])
    result = await run(agent, "Charge cus_42 $19.99", session=SQLiteSession("conversation-42"))
    print(result.final_output)
    print(payments.report())
    assert 1 == sum(payments.charged.values()), "charged more than once"


if __name__ == "__main__":
    anyio.run(main)
