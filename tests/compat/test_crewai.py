"""retrysafe.integrations.crewai on a real Crew, whose agent's LLM is CrewAI's native
Anthropic provider talking to a scripted Messages API on 127.0.0.1
(``examples/_fake_anthropic.py``). CrewAI pins mcp 1.x, openai 2.x and Pydantic < 2.13, so
this runs in a venv of its own (``make test-compat``)."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from retrysafe import OutcomeUnknownError, SessionRequiredError

with warnings.catch_warnings():
    # CrewAI's lazy crewai.rag module refuses the attribute its own import sets (an
    # ImportWarning, theirs).
    warnings.simplefilter("ignore", ImportWarning)
    from crewai import LLM, Agent, Crew, Task

    from retrysafe.integrations.crewai import as_tool, identify

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integrations"))
from ledger import Ledger

from _fake_anthropic import FakeAnthropic, serving

pytestmark = pytest.mark.filterwarnings(
    # CrewAI reads its own deprecated fields when it builds an agent (its warnings, not ours).
    "ignore::DeprecationWarning:crewai.*"
)

ARGS = {"customer": "cus_42", "amount_cents": 1999}


class Shop(Ledger):
    def __init__(self) -> None:
        super().__init__()
        self.tools = [as_tool(self.charge_card), as_tool(self.send_email)]

    def crew(self, url: str) -> Crew:
        llm = LLM(model="anthropic/claude-sonnet-4-5", base_url=url, api_key="sk-test")
        agent = Agent(
            role="cashier",
            goal="charge customers",
            backstory="a careful cashier",
            tools=list(self.tools),
            llm=llm,
            max_iter=6,
            verbose=False,
        )
        task = Task(description="Charge cus_42 $19.99", expected_output="a receipt", agent=agent)
        return Crew(agents=[agent], tasks=[task], verbose=False)


def kickoff(
    shop: Shop, script: list[list[tuple[str, dict[str, Any]]]], **who: Any
) -> FakeAnthropic:
    api = FakeAnthropic(script)
    with serving(api) as url:
        crew = shop.crew(url)
        if who:
            identify(crew, **who)
        crew.kickoff()
    return api


def tool_results(api: FakeAnthropic) -> list[str]:
    """The tool results the model was sent, in order (from the last request)."""
    last = [r for r in api.requests if r.get("tools")][-1]
    out = []
    for message in last["messages"]:
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if block.get("type") == "tool_result":
                inner = block.get("content")
                out.append(
                    inner
                    if isinstance(inner, str)
                    else "".join(c.get("text", "") for c in inner or [])
                )
    return out


def test_the_schema_has_the_parameters_and_no_key() -> None:
    made = Shop().tools[0]
    assert ["customer", "amount_cents"] == list(made.args_schema.model_json_schema()["properties"])


def test_a_repeated_write_in_a_crew_runs_once() -> None:
    shop = Shop()
    api = kickoff(shop, [[("charge_card", ARGS)] * 2, [("charge_card", ARGS)]], principal="u")
    assert 1 == len(shop.charges)
    results = tool_results(api)
    assert 3 == len(results) and all(
        json.loads(r.replace("'", '"')) == {"charge": "ch_1"} for r in results
    )


def test_crews_and_principals_are_isolated() -> None:
    """Another crew, and the same conversation named for another principal."""
    shop = Shop()
    kickoff(shop, [[("charge_card", ARGS)]])
    kickoff(shop, [[("charge_card", ARGS)]])
    kickoff(shop, [[("charge_card", ARGS)]], principal="u-1", conversation="c")
    kickoff(shop, [[("charge_card", ARGS)]], principal="u-2", conversation="c")
    kickoff(shop, [[("charge_card", ARGS)]], principal="u-2", conversation="c")
    assert 4 == len(shop.charges)


def test_an_unknown_outcome_reaches_the_model_as_the_hint() -> None:
    shop = Shop()
    api = kickoff(shop, [[("send_email", {"to": "a@x"})], [("send_email", {"to": "a@x"})]])
    hint = OutcomeUnknownError("x", key=None).llm_hint
    assert [hint, hint] == tool_results(api)
    assert ["a@x"] == shop.sent


def test_a_token_the_model_sends_names_nothing() -> None:
    """The model sends the hook's argument itself: it is replaced, never trusted; a call
    CrewAI makes without the hook (the tool run directly) fails closed."""
    shop = Shop()
    forged = {**ARGS, "_retrysafe_call": "0" * 32}
    kickoff(shop, [[("charge_card", forged)]])
    assert 1 == len(shop.charges)
    hint = SessionRequiredError("x").llm_hint
    assert hint == shop.tools[0].run(**forged)
    assert 1 == len(shop.charges)
