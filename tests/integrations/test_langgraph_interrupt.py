"""LangGraph's ``interrupt()`` inside a protected tool: control flow, neither a failure nor a
completion. The record waits for the resume; the resumed node (LangGraph runs it again from
its start) completes the same call once and stores its result; a side effect before the
interrupt is not repeated where retrysafe can know it happened."""

from __future__ import annotations

import re
from typing import Any

import pytest

from retrysafe import MemoryStore, idempotent, side_effect_started, tool

pytest.importorskip("langgraph")
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, interrupt

from retrysafe.integrations.langchain import as_tool

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """LangGraph runs on asyncio."""
    return "asyncio"


ARGS = {"customer": "cus_42", "amount_cents": 1999}


class Remote:
    """A payment API; with ``dedupe`` it answers a key it saw with its first answer."""

    def __init__(self, *, dedupe: bool = False) -> None:
        self.dedupe = dedupe
        self.requests: list[str | None] = []
        self.charges: list[str] = []
        self.seen: dict[str, str] = {}

    def charge(self, key: str | None = None) -> str:
        self.requests.append(key)
        if self.dedupe and key in self.seen:
            return self.seen[key]
        self.charges.append(f"ch_{len(self.charges) + 1}")
        if key is not None:
            self.seen[key] = self.charges[-1]
        return self.charges[-1]


def graph_of(fn: Any) -> Any:
    graph = StateGraph(MessagesState)
    graph.add_node("tools", ToolNode([as_tool(fn)]))
    graph.add_edge(START, "tools")
    graph.add_edge("tools", END)
    return graph.compile(checkpointer=InMemorySaver())


async def ask(graph: Any, thread: str) -> Any:
    message = AIMessage(content="", tool_calls=[{"name": "refund", "args": ARGS, "id": "call-1"}])
    config: Any = {"configurable": {"thread_id": thread}}
    return await graph.ainvoke({"messages": [message]}, config=config)


async def resume(graph: Any, thread: str, answer: str) -> str:
    config: Any = {"configurable": {"thread_id": thread}}
    out = await graph.ainvoke(Command(resume=answer), config=config)
    return str(out["messages"][-1].content)


async def test_approval_before_the_side_effect_completes_once_on_resume() -> None:
    """The pattern LangGraph recommends: ask first, act after. A plain write (no checkpoint:
    its whole body counts as the side effect) used to become UNKNOWN at the interrupt, and
    the resume answered "may or may not have happened"."""
    remote = Remote()
    store = MemoryStore()

    @tool.write(store=store, registry=None)
    async def refund(customer: str, amount_cents: int) -> str:
        """Refund a customer."""
        if interrupt(f"refund {amount_cents} to {customer}?") != "yes":
            return "declined"
        return remote.charge()

    graph = graph_of(refund)
    paused = await ask(graph, "t-1")
    assert "__interrupt__" in paused and not remote.charges
    assert "ch_1" == await resume(graph, "t-1", "yes")
    assert ["ch_1"] == remote.charges
    # The result is stored: the model's repeat in the thread replays it.
    again = await ask(graph, "t-1")
    assert "ch_1" == str(again["messages"][-1].content)
    assert ["ch_1"] == remote.charges


async def test_a_protected_sub_call_before_the_interrupt_is_not_repeated() -> None:
    """The side effect before the interrupt runs in a call with its own record: on the
    resume LangGraph runs the body again, the sub-call replays, the tool completes."""
    remote = Remote()
    store = MemoryStore()

    @idempotent(store=store, effect="write")
    async def send_charge(customer: str, amount_cents: int) -> str:
        return remote.charge()

    @tool.write(store=store, registry=None)
    async def refund(customer: str, amount_cents: int) -> str:
        """Refund, then ask whether to e-mail the receipt."""
        charge = await send_charge(customer, amount_cents)
        answer = interrupt("e-mail the receipt?")
        return f"{charge} receipt={answer}"

    graph = graph_of(refund)
    await ask(graph, "t-2")
    assert ["ch_1"] == remote.charges
    assert "ch_1 receipt=yes" == await resume(graph, "t-2", "yes")
    assert ["ch_1"] == remote.charges


async def test_an_interrupt_after_side_effect_started_is_not_started_again() -> None:
    """A checkpointed write interrupted after ``side_effect_started()``: retrysafe knows the
    effect began, so the resumed run's checkpoint refuses to begin it again; the model reads
    the UNKNOWN hint (a person settles it), and the remote is charged once."""
    remote = Remote()
    store = MemoryStore()

    @tool.write(store=store, registry=None, checkpoint=True)
    async def refund(customer: str, amount_cents: int) -> str:
        """Refund, then confirm."""
        side_effect_started()
        charge = remote.charge()
        interrupt("confirm?")
        return charge

    graph = graph_of(refund)
    await ask(graph, "t-3")
    answer = await resume(graph, "t-3", "yes")
    assert ["ch_1"] == remote.charges
    assert "may or may not have happened" in answer
    # The record is UNKNOWN: the next call gets the same answer without running.
    again = await ask(graph, "t-3")
    assert ["ch_1"] == remote.charges
    assert str(again["messages"][-1].content) == answer
    # A person settles it "not applied" (by key, as the error says): the next call runs
    # once, the suspension's note spent.
    from retrysafe import records

    (key,) = [k for k in store._records if re.fullmatch(r"idem:[0-9a-f]{64}", str(k))]
    records.resolve(store, str(key), not_applied=True)
    paused = await ask(graph, "t-3")
    assert "__interrupt__" in paused, paused
    assert ["ch_1", "ch_2"] == remote.charges


async def test_an_interrupt_before_side_effect_started_releases_the_claim() -> None:
    """Before the checkpoint nothing acted: the resume runs the call once."""
    remote = Remote()
    store = MemoryStore()

    @tool.write(store=store, registry=None, checkpoint=True)
    async def refund(customer: str, amount_cents: int) -> str:
        """Ask, then refund."""
        interrupt("refund?")
        side_effect_started()
        return remote.charge()

    graph = graph_of(refund)
    await ask(graph, "t-4")
    assert "ch_1" == await resume(graph, "t-4", "yes")
    assert ["ch_1"] == remote.charges


async def test_remote_idempotent_resume_resends_the_same_key_and_stores_the_result() -> None:
    """``remote_idempotent=True``: the resume resends the same key (the remote answers it
    once) and the completed result is stored, so a later repeat runs nothing."""
    remote = Remote(dedupe=True)
    store = MemoryStore()

    @tool.write(store=store, registry=None, remote_idempotent=True)
    async def refund(customer: str, amount_cents: int, idempotency_key: str | None = None) -> str:
        """Refund, then confirm."""
        charge = remote.charge(idempotency_key)
        interrupt("confirm?")
        return charge

    graph = graph_of(refund)
    await ask(graph, "t-5")
    assert "ch_1" == await resume(graph, "t-5", "yes")
    assert ["ch_1"] == remote.charges
    assert 2 == len(remote.requests) and len(set(remote.requests)) == 1
    again = await ask(graph, "t-5")
    assert "ch_1" == str(again["messages"][-1].content)
    assert 2 == len(remote.requests)


def test_a_sync_tool_interrupted_after_side_effect_started_is_not_started_again() -> None:
    """The same on the sync path (``graph.invoke``, a sync tool in LangGraph's thread)."""
    remote = Remote()
    store = MemoryStore()

    @tool.write(store=store, registry=None, checkpoint=True)
    def refund(customer: str, amount_cents: int) -> str:
        """Refund, then confirm."""
        side_effect_started()
        charge = remote.charge()
        interrupt("confirm?")
        return charge

    graph = graph_of(refund)
    config: Any = {"configurable": {"thread_id": "t-6"}}
    message = AIMessage(content="", tool_calls=[{"name": "refund", "args": ARGS, "id": "c"}])
    assert "__interrupt__" in graph.invoke({"messages": [message]}, config=config)
    out = graph.invoke(Command(resume="yes"), config=config)
    assert ["ch_1"] == remote.charges
    assert "may or may not have happened" in str(out["messages"][-1].content)


def test_the_integration_registers_langgraphs_interrupt() -> None:
    """Importing the integration makes LangGraph's interrupt a suspension."""
    from langgraph.errors import GraphInterrupt

    from retrysafe._idempotent import _SUSPENSIONS

    assert GraphInterrupt in _SUSPENSIONS
