"""retrysafe in a LlamaIndex FunctionAgent: the model repeats a charge, the first response
is lost.

Run it: `python examples/llama_index_agent.py` (offline: LlamaIndex's own
MockFunctionCallingLLM plays the model).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import anyio
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.workflow import Context

from _fake_payments import LossyPayments
from retrysafe import RetryConfig, tool
from retrysafe.integrations.llama_index import as_tool, identify

# llama-index reads deprecated Pydantic attributes when it inspects its models.
warnings.filterwarnings("ignore", category=DeprecationWarning)

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


def scripted_model(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
    """Calls charge_card, then calls it again (as models do when unsure), then answers."""
    replies = sum(1 for m in messages if m.role == MessageRole.ASSISTANT)
    if replies < 2:
        call = ToolCallBlock(
            tool_call_id=f"c{replies}", tool_name="charge_card", tool_kwargs=CHARGE
        )
        return ChatMessage(role="assistant", blocks=[call])
    return ChatMessage(role="assistant", content="Charged cus_42 $19.99.")


async def main() -> None:
    agent = FunctionAgent(
        tools=[as_tool(charge_card)], llm=MockFunctionCallingLLM(response_generator=scripted_model)
    )
    ctx = Context(agent)  # one per conversation
    await identify(ctx, principal="user-7")  # who is calling: your server says
    print(await agent.run("Charge cus_42 $19.99", ctx=ctx))
    print(payments.report())
    assert 1 == sum(payments.charged.values()), "charged more than once"


if __name__ == "__main__":
    anyio.run(main)
