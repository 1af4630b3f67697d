"""retrysafe.integrations.strands on a real Strands Agent, whose ``AnthropicModel`` (the
anthropic SDK) talks to a scripted Messages API on 127.0.0.1 (Strands ships no offline
model; ``examples/_fake_anthropic.py``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from retrysafe import OutcomeUnknownError

pytest.importorskip("strands")
pytest.importorskip("anthropic")
from strands import Agent, tool
from strands.models.anthropic import AnthropicModel

from retrysafe.integrations.strands import Retrysafe

from .ledger import Ledger

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from _fake_anthropic import FakeAnthropic, serving

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


ARGS = {"customer": "cus_42", "amount_cents": 1999}


class Shop(Ledger):
    def __init__(self) -> None:
        super().__init__()
        self.tools = [tool(self.charge_card), tool(self.send_email)]

    def agent(self, url: str, *, plugin: bool = True, agent_id: str = "shop") -> Agent:
        model = AnthropicModel(
            client_args={"base_url": url, "api_key": "sk-test", "max_retries": 0},
            model_id="claude-sonnet-4-5",
            max_tokens=1024,
        )
        return Agent(
            model=model,
            tools=list(self.tools),
            plugins=[Retrysafe()] if plugin else [],
            callback_handler=None,
            agent_id=agent_id,
        )


def tool_results(agent: Agent) -> list[str]:
    """The text of every tool result the model was given, in order."""
    out = []
    for message in agent.messages:
        for block in message.get("content", []):
            if "toolResult" in block:
                out.append("".join(c.get("text", "") for c in block["toolResult"]["content"]))
    return out


async def ask(shop: Shop, script: list[list[tuple[str, dict[str, Any]]]], **state: Any) -> Agent:
    """A new agent (a new session) given one user message."""
    with serving(FakeAnthropic(script)) as url:
        agent = shop.agent(url)
        await agent.invoke_async("go", invocation_state=state)
        await agent.model.client.close()
    return agent


def test_the_tool_spec_has_the_parameters_and_no_key() -> None:
    spec = Shop().tools[0].tool_spec
    assert ["customer", "amount_cents"] == list(spec["inputSchema"]["json"]["properties"])


async def test_a_repeated_write_in_a_session_runs_once() -> None:
    shop = Shop()
    agent = await ask(shop, [[("charge_card", ARGS)] * 2, [("charge_card", ARGS)]], principal="u")
    assert 1 == len(shop.charges)
    assert ['{"charge": "ch_1"}'] * 3 == [r.replace("'", '"') for r in tool_results(agent)]


async def test_agents_and_principals_are_isolated() -> None:
    """Another agent (another session), and the same one for another principal."""
    shop = Shop()
    charge = [("charge_card", ARGS)]
    await ask(shop, [charge], principal="u-1")
    await ask(shop, [charge], principal="u-1")
    assert 2 == len(shop.charges)
    with serving(FakeAnthropic([charge, [], charge, []])) as url:
        agent = shop.agent(url)
        await agent.invoke_async("go", invocation_state={"principal": "u-1"})
        await agent.invoke_async("go on", invocation_state={"principal": "u-2"})
        await agent.model.client.close()
    assert 4 == len(shop.charges)


async def test_a_repeat_in_a_later_turn_needs_confirmation() -> None:
    shop = Shop()
    charge = [("charge_card", ARGS)]
    with serving(FakeAnthropic([charge, [], charge, []])) as url:
        agent = shop.agent(url)
        await agent.invoke_async("go")
        await agent.invoke_async("again")
        await agent.model.client.close()
    assert 1 == len(shop.charges)
    assert "NOT performed again" in tool_results(agent)[-1]


async def test_an_unknown_outcome_reaches_the_model_as_the_hint() -> None:
    shop = Shop()
    agent = await ask(shop, [[("send_email", {"to": "a@x"})], [("send_email", {"to": "a@x"})]])
    hint = OutcomeUnknownError("x", key=None).llm_hint
    assert [hint, hint] == tool_results(agent)
    assert ["a@x"] == shop.sent


async def test_without_the_plugin_a_write_fails_closed() -> None:
    shop = Shop()
    with serving(FakeAnthropic([[("charge_card", ARGS)]])) as url:
        agent = shop.agent(url, plugin=False)
        await agent.invoke_async("go")
        await agent.model.client.close()
    assert [] == shop.charges
    assert "session" in tool_results(agent)[0]
