"""retrysafe.integrations.google_adk on ADK's real Runner, driven by ADK's own offline test
model (``google.adk.cli.agent_test_runner.MockModel``)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("google.adk")
from google.adk.agents import Agent
from google.adk.apps import App
from google.adk.cli.agent_test_runner import MockModel
from google.adk.runners import Runner
from google.adk.sessions import InMemorySessionService
from google.adk.tools import FunctionTool
from google.genai import types

from retrysafe.integrations.google_adk import Retrysafe

from .ledger import Ledger

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """ADK runs on asyncio."""
    return "asyncio"


ARGS = {"customer": "cus_42", "amount_cents": 1999}


def calls(*batches: list[tuple[str, dict[str, Any]]]) -> list[types.Content]:
    """The model's replies: each batch of function calls in one reply, then a last word."""
    replies = [
        types.Content(
            role="model",
            parts=[types.Part.from_function_call(name=n, args=a) for n, a in batch],
        )
        for batch in batches
    ]
    return [*replies, types.Content(role="model", parts=[types.Part(text="done")])]


class Shop(Ledger):
    def __init__(self, *, plugin: bool = True) -> None:
        super().__init__()
        self.sessions = InMemorySessionService()
        self.plugin = plugin
        self.tools = [self.charge_card, self.send_email]

    async def run(
        self, user: str, session_id: str, replies: list[types.Content], text: str = "go"
    ) -> list[Any]:
        """One user message; the function responses the model was given."""
        agent = Agent(name="shop", model=MockModel.create(replies), tools=list(self.tools))
        plugins = [Retrysafe()] if self.plugin else []
        app = App(name="shop", root_agent=agent, plugins=plugins)
        runner = Runner(app=app, session_service=self.sessions)
        if (
            await self.sessions.get_session(app_name="shop", user_id=user, session_id=session_id)
            is None
        ):
            await self.sessions.create_session(app_name="shop", user_id=user, session_id=session_id)
        message = types.Content(role="user", parts=[types.Part(text=text)])
        responses = []
        async for event in runner.run_async(
            user_id=user, session_id=session_id, new_message=message
        ):
            responses.extend(r.response for r in event.get_function_responses())
        return responses


def test_the_declaration_has_the_parameters_and_no_key() -> None:
    shop = Shop()
    declaration = FunctionTool(shop.tools[0])._get_declaration()
    assert declaration is not None
    schema: Any = declaration.parameters_json_schema
    assert ["customer", "amount_cents"] == list(schema["properties"])
    assert (declaration.description or "").startswith("Charge a customer's card.")


async def test_a_repeated_write_in_a_session_runs_once() -> None:
    """The model sends the charge twice in one reply and again in the next: one charge."""
    shop = Shop()
    out = await shop.run("u-1", "s-1", calls([("charge_card", ARGS)] * 2, [("charge_card", ARGS)]))
    assert 1 == len(shop.charges)
    assert [{"charge": "ch_1"}] * 3 == out


async def test_sessions_and_users_are_isolated() -> None:
    """Another session, and another user naming the same session id: each charges."""
    shop = Shop()
    await shop.run("u-1", "s-1", calls([("charge_card", ARGS)]))
    await shop.run("u-1", "s-2", calls([("charge_card", ARGS)]))
    await shop.run("u-2", "s-1", calls([("charge_card", ARGS)]))
    assert 3 == len(shop.charges)


async def test_a_refusal_is_the_tools_response_and_the_run_goes_on() -> None:
    """An UNKNOWN outcome: the model reads the hint, twice, and the e-mail went once."""
    from retrysafe import OutcomeUnknownError

    shop = Shop()
    out = await shop.run(
        "u-1", "s-1", calls([("send_email", {"to": "a@x"})], [("send_email", {"to": "a@x"})])
    )
    hint = OutcomeUnknownError("x", key=None).llm_hint
    assert [{"error": "OutcomeUnknownError", "message": hint}] * 2 == out
    assert ["a@x"] == shop.sent


async def test_without_the_plugin_a_write_fails_closed() -> None:
    """Without the plugin nothing names the conversation: ADK ends the run with the
    refusal (SessionRequiredError) and nothing is charged."""
    from retrysafe import SessionRequiredError

    shop = Shop(plugin=False)
    with pytest.raises(SessionRequiredError):
        await shop.run("u-1", "s-1", calls([("charge_card", ARGS)]))
    assert [] == shop.charges


async def test_a_repeat_in_a_later_turn_asks_for_confirmation() -> None:
    """The same charge asked for in the user's next message is not replayed silently."""
    shop = Shop()
    await shop.run("u-1", "s-1", calls([("charge_card", ARGS)]))
    later = await shop.run("u-1", "s-1", calls([("charge_card", ARGS)]), text="again")
    assert 1 == len(shop.charges)
    assert "RepeatNeedsConfirmationError" == later[0]["error"]
    assert "NOT performed again" in later[0]["message"]
