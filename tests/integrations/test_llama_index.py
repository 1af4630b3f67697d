"""retrysafe.integrations.llama_index on a real FunctionAgent, driven by LlamaIndex's own
offline model (``MockFunctionCallingLLM`` with a scripted response generator)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from retrysafe import OutcomeUnknownError

pytest.importorskip("llama_index.core")
from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.workflow import Context

from retrysafe.integrations.llama_index import as_tool, identify

from .ledger import Ledger

pytestmark = [
    pytest.mark.anyio,
    # llama-index's workflows inspect every attribute of Pydantic models, which reads
    # deprecated ones (their warning, on Pydantic 2.14, not ours).
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecationWarning"),
    # Their memory does not serialize under Pydantic 2.14: a context run again warns that
    # it keeps the live memory instead of a copy.
    pytest.mark.filterwarnings("ignore::workflows.context.state_store.UnserializableKeyWarning"),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


ARGS = {"customer": "cus_42", "amount_cents": 1999}


def scripted(*replies: list[tuple[str, dict[str, Any]]]) -> MockFunctionCallingLLM:
    """A model making each reply's tool calls in turn (counted from the tool results it
    was given since the user's last message), then answering "done"."""

    def respond(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        since_user = 0
        for message in messages:
            if message.role == MessageRole.USER:
                since_user = 0
            elif message.role == MessageRole.ASSISTANT:
                since_user += 1
        if since_user >= len(replies):
            return ChatMessage(role="assistant", content="done")
        blocks: list[Any] = [
            ToolCallBlock(tool_call_id=f"call-{since_user}-{i}", tool_name=n, tool_kwargs=a)
            for i, (n, a) in enumerate(replies[since_user])
        ]
        return ChatMessage(role="assistant", blocks=blocks)

    return MockFunctionCallingLLM(response_generator=respond)


class Shop(Ledger):
    def __init__(self) -> None:
        super().__init__()
        self.tools = [as_tool(self.charge_card), as_tool(self.send_email)]

    def agent(self, *replies: list[tuple[str, dict[str, Any]]]) -> FunctionAgent:
        return FunctionAgent(tools=list(self.tools), llm=scripted(*replies))

    async def run(
        self, agent: FunctionAgent, ctx: Context, text: str = "go", memory: Any = None
    ) -> list[str]:
        """One user message; the tool outputs the model was given."""
        handler = agent.run(text, ctx=ctx, memory=memory)
        outputs = []
        async for event in handler.stream_events():
            if isinstance(event, ToolCallResult):
                outputs.append(str(event.tool_output.content))
        await handler
        return outputs


def test_the_schema_has_the_parameters_and_no_key_nor_context() -> None:
    charge = Shop().tools[0]
    schema = charge.metadata.get_parameters_dict()
    assert ["customer", "amount_cents"] == list(schema["properties"])
    assert "charge_card" == charge.metadata.name
    assert "Charge a customer's card." in charge.metadata.description


async def test_a_repeated_write_in_a_context_runs_once() -> None:
    """Twice in one reply, again in the next, and in the context's next run: one charge."""
    shop = Shop()
    agent = shop.agent([("charge_card", ARGS)] * 2, [("charge_card", ARGS)])
    ctx = Context(agent)
    await identify(ctx, principal="user-7")
    out = await shop.run(agent, ctx)
    assert 1 == len(shop.charges)
    assert ["{'charge': 'ch_1'}"] * 3 == out
    await shop.run(agent, ctx, "again")
    assert 1 == len(shop.charges)


async def test_a_memory_names_the_conversation_and_counts_the_turns() -> None:
    """A ``Memory`` with a session id: that is the conversation (another context with the
    same memory meets the same record), and its user messages are the turns, so the charge
    asked for again in the user's next message needs their confirmation."""
    from llama_index.core.memory import Memory
    from sqlalchemy.ext.asyncio import create_async_engine

    shop = Shop()
    agent = shop.agent([("charge_card", ARGS)])
    engine = create_async_engine("sqlite+aiosqlite://")
    memory = Memory.from_defaults(session_id="conversation-42", async_engine=engine)
    try:
        await shop.run(agent, Context(agent), memory=memory)
        later = await shop.run(agent, Context(agent), "again", memory=memory)
    finally:
        await engine.dispose()
    assert 1 == len(shop.charges)
    assert "NOT performed again" in later[0]


async def test_contexts_and_principals_are_isolated() -> None:
    """A new Context is a new conversation; the same conversation named for another
    principal is another record."""
    shop = Shop()
    agent = shop.agent([("charge_card", ARGS)])
    for principal, conversation in (("u-1", None), ("u-1", None), ("u-1", "c"), ("u-2", "c")):
        ctx = Context(agent)
        await identify(ctx, principal=principal, conversation=conversation)
        await shop.run(agent, ctx)
    assert 4 == len(shop.charges)


async def test_a_serialized_context_is_the_same_conversation() -> None:
    """ctx.to_dict() / Context.from_dict(): the resumed context keeps its conversation."""
    shop = Shop()
    agent = shop.agent([("charge_card", ARGS)])
    ctx = Context(agent)
    await shop.run(agent, ctx)
    resumed = Context.from_dict(agent, ctx.to_dict())
    await shop.run(agent, resumed)  # a later turn: refused for confirmation, not charged
    assert 1 == len(shop.charges)


async def test_parallel_first_calls_agree_on_one_conversation() -> None:
    """Three identical calls in the context's first reply: one charge."""
    shop = Shop()
    agent = shop.agent([("charge_card", ARGS)] * 3)
    await shop.run(agent, Context(agent))
    assert 1 == len(shop.charges)


async def test_an_unknown_outcome_reaches_the_model_as_the_hint() -> None:
    shop = Shop()
    agent = shop.agent([("send_email", {"to": "a@x"})], [("send_email", {"to": "a@x"})])
    out = await shop.run(agent, Context(agent))
    hint = OutcomeUnknownError("x", key=None).llm_hint
    assert [hint, hint] == out
    assert ["a@x"] == shop.sent
