"""retrysafe in a Google ADK agent: the model repeats a charge, the first response is lost.

Run it: `python examples/google_adk_agent.py` (offline: ADK's own MockModel plays the model).
"""

from __future__ import annotations

from typing import Any

import anyio
from google.adk.agents import Agent
from google.adk.apps import App
from google.adk.cli.agent_test_runner import MockModel
from google.adk.runners import Runner
from google.adk.sessions import InMemorySessionService
from google.genai import types

from _fake_payments import LossyPayments
from retrysafe import RetryConfig, tool
from retrysafe.integrations.google_adk import Retrysafe

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


def replies() -> list[types.Content]:
    """Calls charge_card, then calls it again (as models do when unsure), then answers."""
    call = types.Content(
        role="model", parts=[types.Part.from_function_call(name="charge_card", args=CHARGE)]
    )
    return [call, call, types.Content(role="model", parts=[types.Part(text="Charged $19.99.")])]


async def main() -> None:
    agent = Agent(name="shop", model=MockModel.create(replies()), tools=[charge_card])
    app = App(name="shop", root_agent=agent, plugins=[Retrysafe()])
    sessions = InMemorySessionService()
    runner = Runner(app=app, session_service=sessions)
    session = await sessions.create_session(app_name="shop", user_id="user-7")
    message = types.Content(role="user", parts=[types.Part(text="Charge cus_42 $19.99")])
    async for event in runner.run_async(
        user_id="user-7", session_id=session.id, new_message=message
    ):
        if event.is_final_response() and event.content and event.content.parts:
            print(event.content.parts[0].text)
    print(payments.report())
    assert 1 == sum(payments.charged.values()), "charged more than once"


if __name__ == "__main__":
    anyio.run(main)
