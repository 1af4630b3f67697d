"""retrysafe.integrations.langchain: LangChain tools invoked directly and by a LangGraph
ToolNode in a compiled graph with a checkpointer (the thread_id is the conversation)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from retrysafe import tool

pytest.importorskip("langchain_core")
pytest.importorskip("langgraph")
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

from retrysafe.integrations.langchain import as_tool

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """LangGraph runs on asyncio."""
    return "asyncio"


ARGS = {"customer": "cus_42", "amount_cents": 1999}


class Shop:
    def __init__(self) -> None:
        self.charges: list[tuple[str, int, str]] = []
        self.lookups: list[str] = []

        @as_tool
        @tool.write(remote_idempotent=True, registry=None)
        async def charge_card(
            customer: str, amount_cents: int, idempotency_key: str | None = None
        ) -> dict[str, Any]:
            """Charge a customer's card."""
            assert idempotency_key is not None
            await anyio.sleep(0.02)
            self.charges.append((customer, amount_cents, idempotency_key))
            return {"charge": f"ch_{len(self.charges)}"}

        @as_tool
        @tool.read(registry=None)
        def get_weather(city: str) -> str:
            """Weather for a city."""
            self.lookups.append(city)
            return f"sunny in {city}"

        self.charge_card = charge_card
        self.get_weather = get_weather
        graph = StateGraph(MessagesState)
        graph.add_node("tools", ToolNode([charge_card, get_weather]))
        graph.add_edge(START, "tools")
        graph.add_edge("tools", END)
        self.graph = graph.compile(checkpointer=InMemorySaver())

    async def turn(self, thread: str | None, *calls: tuple[str, dict[str, Any]]) -> list[str]:
        message = AIMessage(
            content="",
            tool_calls=[
                {"name": name, "args": args, "id": f"call-{i}"}
                for i, (name, args) in enumerate(calls)
            ],
        )
        config: Any = {"configurable": {"thread_id": thread or "unbound"}}
        out = await self.graph.ainvoke({"messages": [message]}, config=config)
        return [str(m.content) for m in out["messages"][-len(calls) :]]


def test_the_schema_has_the_parameters_and_no_key() -> None:
    """The schema the model is offered (LangChain's tool_call_schema, and the OpenAI tool a
    chat model binds) lists customer and amount_cents, with the docstring: no key, and not
    the graph state LangGraph injects."""
    from langchain_core.utils.function_calling import convert_to_openai_tool

    charge = Shop().charge_card
    assert ["customer", "amount_cents"] == list(
        charge.tool_call_schema.model_json_schema()["properties"]
    )
    bound = convert_to_openai_tool(charge)["function"]["parameters"]["properties"]
    assert ["customer", "amount_cents"] == list(bound)
    assert "Charge a customer's card." == charge.description


async def test_a_write_repeated_in_a_thread_runs_once() -> None:
    """A repeat in the same thread, and parallel identical calls in one turn: one charge."""
    shop = Shop()
    first = await shop.turn("thread-1", ("charge_card", ARGS))
    again = await shop.turn("thread-1", *[("charge_card", ARGS)] * 3)
    assert 1 == len(shop.charges)
    assert 1 == len(set(first + again))


async def test_threads_are_isolated() -> None:
    """Two threads with identical arguments each charge."""
    shop = Shop()
    await shop.turn("thread-1", ("charge_card", ARGS))
    await shop.turn("thread-2", ("charge_card", ARGS))
    assert 2 == len(shop.charges)


async def test_reads_are_cached() -> None:
    """A READ tool runs once for identical arguments, across threads."""
    shop = Shop()
    await shop.turn("thread-1", ("get_weather", {"city": "Oslo"}))
    await shop.turn("thread-2", ("get_weather", {"city": "Oslo"}))
    assert "sunny in Oslo" == shop.get_weather.invoke({"city": "Oslo"})
    assert ["Oslo"] == shop.lookups


async def test_invoked_without_a_conversation_a_write_returns_the_hint() -> None:
    """A direct invoke with no thread: the hint is the tool's result, nothing is charged."""
    shop = Shop()
    result = await shop.charge_card.ainvoke(ARGS)
    assert "session" in str(result)
    assert [] == shop.charges
    config: Any = {"configurable": {"thread_id": "t-9"}}
    assert "ch_1" in str(await shop.charge_card.ainvoke(ARGS, config=config))


async def test_a_model_supplied_key_is_never_used() -> None:
    """An extra idempotency_key argument is dropped by the tool's schema: the derived key is
    used, and the model's repeat with another made-up key replays."""
    shop = Shop()
    await shop.turn("thread-1", ("charge_card", {**ARGS, "idempotency_key": "made-up-1"}))
    await shop.turn("thread-1", ("charge_card", {**ARGS, "idempotency_key": "made-up-2"}))
    assert 1 == len(shop.charges)
    assert shop.charges[0][2].startswith("ik_")


async def test_a_repeat_in_a_later_turn_needs_the_users_confirmation() -> None:
    """Turn 1: the model charges twice -> 1 charge. Turn 2 ("another one"): the model is
    told an identical charge ran in an earlier turn; nothing runs. Turn 3 (the user
    confirms): the second charge runs. Turn 3 re-run from its checkpoint (a crash before
    the graph went on): replayed, still 2 charges."""
    from langchain_core.messages import HumanMessage

    shop = Shop()
    config: Any = {"configurable": {"thread_id": "thread-turns"}}

    async def turn(prompt: str, calls: int) -> list[str]:
        ask = AIMessage(
            content="",
            tool_calls=[
                {"name": "charge_card", "args": ARGS, "id": f"{prompt}-{i}"} for i in range(calls)
            ],
        )
        out = await shop.graph.ainvoke({"messages": [HumanMessage(prompt), ask]}, config=config)
        return [str(m.content) for m in out["messages"][-calls:]]

    await turn("charge me", 2)
    assert 1 == len(shop.charges)
    told = await turn("charge me another one", 1)
    assert 1 == len(shop.charges)
    assert "earlier turn" in told[0] and "confirm" in told[0]
    confirmed = await turn("yes, charge again", 1)
    assert 2 == len(shop.charges)
    async for before_tools in shop.graph.aget_state_history(config):  # newest first
        if before_tools.next == ("tools",):
            break
    rerun = await shop.graph.ainvoke(None, config=before_tools.config)
    assert 2 == len(shop.charges)
    assert confirmed[0] == str(rerun["messages"][-1].content)
