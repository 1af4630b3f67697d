"""retrysafe.integrations.pydantic_ai on a real Pydantic AI agent driven by FunctionModel."""

from __future__ import annotations

from typing import Any

import pytest

from retrysafe import tool

pydantic_ai = pytest.importorskip("pydantic_ai")
from pydantic_ai import Agent  # noqa: E402
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart  # noqa: E402
from pydantic_ai.models.function import AgentInfo, FunctionModel  # noqa: E402

from retrysafe.integrations.pydantic_ai import Retrysafe  # noqa: E402

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """Pydantic AI runs on asyncio."""
    return "asyncio"


class Script:
    """A scripted model: each turn issues the next batch of tool calls, then answers."""

    def __init__(self, *turns: list[tuple[str, dict[str, Any]]]) -> None:
        self.turns = list(turns)
        self.seen: list[AgentInfo] = []

    def __call__(self, messages: list[Any], info: AgentInfo) -> ModelResponse:
        self.seen.append(info)
        asked = sum(1 for m in messages if isinstance(m, ModelResponse))
        if asked < len(self.turns):
            return ModelResponse(
                parts=[ToolCallPart(name, args) for name, args in self.turns[asked]]
            )
        return ModelResponse(parts=[TextPart("done")])


class Shop:
    def __init__(self) -> None:
        self.charges: list[tuple[str, int, str]] = []
        self.lookups: list[str] = []

    def agent(self, script: Script) -> Agent[None, str]:
        agent: Agent[None, str] = Agent(FunctionModel(script), capabilities=[Retrysafe()])

        @agent.tool_plain
        @tool.write(remote_idempotent=True, registry=None)
        async def charge_card(
            customer: str, amount_cents: int, idempotency_key: str | None = None
        ) -> dict[str, Any]:
            """Charge a customer's card."""
            assert idempotency_key is not None
            self.charges.append((customer, amount_cents, idempotency_key))
            return {"charge": f"ch_{len(self.charges)}"}

        @agent.tool_plain
        @tool.read(registry=None)
        def get_weather(city: str) -> str:
            """Weather for a city."""
            self.lookups.append(city)
            return f"sunny in {city}"

        return agent


CHARGE = ("charge_card", {"customer": "cus_42", "amount_cents": 1999})


async def test_the_schema_has_the_parameters_and_no_key() -> None:
    """The model is offered customer and amount_cents, with the docstring; no key."""
    shop = Shop()
    script = Script()
    await shop.agent(script).run("hi")
    tools = {t.name: t for t in script.seen[0].function_tools}
    schema = tools["charge_card"].parameters_json_schema
    assert ["customer", "amount_cents"] == list(schema["properties"])
    assert "Charge a customer's card." == tools["charge_card"].description


async def test_a_write_repeated_in_a_conversation_runs_once() -> None:
    """Repeats in one run, parallel identical calls, and a later run of the same
    conversation (message_history) all get the first charge."""
    shop = Shop()
    agent = shop.agent(Script([CHARGE], [CHARGE, CHARGE, CHARGE]))
    first = await agent.run("charge")
    await agent.run(
        "again", message_history=first.all_messages(), model=FunctionModel(Script([CHARGE]))
    )
    assert 1 == len(shop.charges)


async def test_conversations_are_isolated() -> None:
    """Two runs (two conversations) with identical arguments each charge."""
    shop = Shop()
    agent = shop.agent(Script([CHARGE]))
    await agent.run("charge")
    await agent.run("charge", model=FunctionModel(Script([CHARGE])))
    assert 2 == len(shop.charges)
    assert 2 == len({key for *_, key in shop.charges})


async def test_reads_are_cached_across_runs() -> None:
    """A READ tool runs once for identical arguments."""
    shop = Shop()
    weather = ("get_weather", {"city": "Oslo"})
    agent = shop.agent(Script([weather], [weather]))
    await agent.run("weather")
    await agent.run("weather", model=FunctionModel(Script([weather])))
    assert ["Oslo"] == shop.lookups


async def test_a_model_supplied_key_is_refused() -> None:
    """An idempotency_key the model makes up fails Pydantic AI's validation: no charge."""
    shop = Shop()
    forged = ("charge_card", {"customer": "c", "amount_cents": 5, "idempotency_key": "made-up"})
    await shop.agent(Script([forged])).run("charge")
    assert [] == shop.charges


async def test_retrysafe_errors_reach_the_model_as_results() -> None:
    """An unknown outcome is the tool's result (its llm_hint), not the end of the run."""
    attempts: list[int] = []
    script = Script([("flaky_send", {"to": "a@b"})], [("flaky_send", {"to": "a@b"})])
    agent: Agent[None, str] = Agent(FunctionModel(script), capabilities=[Retrysafe()])

    @agent.tool_plain
    @tool.write(registry=None)
    def flaky_send(to: str) -> str:
        """Send an e-mail."""
        attempts.append(1)
        raise TimeoutError("the mail server did not answer")

    result = await agent.run("send")
    assert "done" == result.output
    returns = [
        p.content
        for m in result.all_messages()
        for p in getattr(m, "parts", [])
        if p.part_kind == "tool-return"
    ]
    assert 2 == len(returns)
    assert all(r["error"] == "OutcomeUnknownError" for r in returns)
    assert 1 == len(attempts)


def _per_turn(calls_per_turn: int) -> FunctionModel:
    """A model that makes ``calls_per_turn`` identical charges after each user prompt (more
    than one: the model looping, or retrying after a lost response), then answers."""
    from pydantic_ai.messages import ModelRequest, UserPromptPart

    def respond(messages: list[Any], info: AgentInfo) -> ModelResponse:
        made = 0
        for message in reversed(messages):
            if isinstance(message, ModelRequest) and any(
                isinstance(part, UserPromptPart) for part in message.parts
            ):
                break
            if isinstance(message, ModelResponse):
                made += sum(isinstance(part, ToolCallPart) for part in message.parts)
        if made < calls_per_turn:
            return ModelResponse(parts=[ToolCallPart(*CHARGE)])
        return ModelResponse(parts=[TextPart("done")])

    return FunctionModel(respond)


def _tool_results(messages: list[Any]) -> list[Any]:
    from pydantic_ai.messages import ModelRequest, ToolReturnPart

    return [
        part.content
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, ToolReturnPart)
    ]


async def test_a_repeat_in_a_later_turn_needs_the_users_confirmation() -> None:
    """Turn 1: the model repeats its charge -> 1 charge. Turn 2 ("charge me ANOTHER"): the
    model is told an identical charge ran earlier, and when; nothing runs. Turn 3 (the user
    confirms): the second charge runs. Turn 3 re-run after a crash (same history, same
    prompt): replayed, still 2 charges."""
    shop = Shop()
    agent = shop.agent(Script())
    first = await agent.run("charge me $19.99", model=_per_turn(2))
    assert 1 == len(shop.charges)
    second = await agent.run(
        "charge me ANOTHER $19.99", model=_per_turn(1), message_history=first.all_messages()
    )
    assert 1 == len(shop.charges)
    told = _tool_results(second.new_messages())[-1]
    assert "RepeatNeedsConfirmationError" == told["error"]
    assert "earlier turn" in told["message"] and "confirm" in told["message"]
    history = second.all_messages()
    third = await agent.run("yes, charge it again", model=_per_turn(2), message_history=history)
    assert 2 == len(shop.charges)
    rerun = await agent.run("yes, charge it again", model=_per_turn(1), message_history=history)
    assert 2 == len(shop.charges)
    assert _tool_results(third.new_messages())[0] == _tool_results(rerun.new_messages())[0]
