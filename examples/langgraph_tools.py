"""retrysafe in a LangGraph graph: the model repeats a charge in the same thread, the first
response is lost. Run it: `python examples/langgraph_tools.py` (offline: scripted tool calls).
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

from _fake_payments import LossyPayments
from retrysafe import RetryConfig, tool
from retrysafe.integrations.langchain import as_tool

payments = LossyPayments()


@as_tool
@tool.write(
    remote_idempotent=True, retry=RetryConfig(max_attempts=3, base_delay=0.01), registry=None
)
def charge_card(
    customer: str, amount_cents: int, idempotency_key: str | None = None
) -> dict[str, Any]:
    """Charge a customer's card (in cents)."""
    assert idempotency_key is not None
    return payments.charge(customer, amount_cents, idempotency_key)


def main() -> None:
    builder = StateGraph(MessagesState)
    builder.add_node("tools", ToolNode([charge_card]))
    builder.add_edge(START, "tools")
    builder.add_edge("tools", END)
    graph = builder.compile(checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "conversation-42"}}
    call = {"name": "charge_card", "args": {"customer": "cus_42", "amount_cents": 1999}}
    for n in range(2):  # the model calls the tool, then repeats the call
        turn = AIMessage(content="", tool_calls=[{**call, "id": f"call_{n}"}])
        state = graph.invoke({"messages": [turn]}, config=config)
        print("result:", state["messages"][-1].content)
    print(payments.report())
    assert 1 == sum(payments.charged.values()), "charged more than once"


if __name__ == "__main__":
    main()
