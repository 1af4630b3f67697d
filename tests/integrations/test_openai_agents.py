"""retrysafe.integrations.openai_agents on real Agents SDK runs driven by its ScriptedModel."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from retrysafe import tool

agents = pytest.importorskip("agents")
from agents import Agent, RunConfig, SQLiteSession  # noqa: E402
from agents.testing import ScriptedModel, assistant_message, function_call  # noqa: E402

from retrysafe.integrations.openai_agents import (  # noqa: E402
    function_tool,
    run,
    run_streamed,
    run_sync,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """The Agents SDK runs on asyncio."""
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_tracing() -> Iterator[None]:
    """Tracing exports to a remote: off (tests reach only loopback)."""
    agents.set_tracing_disabled(True)
    yield


ARGS = {"customer": "cus_42", "amount_cents": 1999}


def _script(*turns: list[Any]) -> ScriptedModel:
    return ScriptedModel([*turns, [assistant_message("done")]])


class Shop:
    def __init__(self) -> None:
        self.charges: list[tuple[str, int, str]] = []
        self.lookups: list[str] = []

        @function_tool
        @tool.write(remote_idempotent=True, registry=None)
        async def charge_card(
            customer: str, amount_cents: int, idempotency_key: str | None = None
        ) -> dict[str, Any]:
            """Charge a customer's card."""
            assert idempotency_key is not None
            self.charges.append((customer, amount_cents, idempotency_key))
            return {"charge": f"ch_{len(self.charges)}"}

        @function_tool
        @tool.read(registry=None)
        def get_weather(city: str) -> str:
            """Weather for a city."""
            self.lookups.append(city)
            return f"sunny in {city}"

        self.tools = [charge_card, get_weather]

    def agent(self, model: ScriptedModel) -> Any:
        return Agent(name="shop", model=model, tools=self.tools)


def _outputs(result: Any) -> list[str]:
    return [str(i.output) for i in result.new_items if i.type == "tool_call_output_item"]


def test_the_schema_has_the_parameters_and_no_key() -> None:
    """The function tool's strict schema lists customer and amount_cents only."""
    charge = Shop().tools[0]
    assert ["customer", "amount_cents"] == list(charge.params_json_schema["properties"])
    assert "Charge a customer's card." == charge.description


async def test_a_write_repeated_in_a_conversation_runs_once() -> None:
    """A repeat, parallel identical calls and a later run of the same session: one charge."""
    shop = Shop()
    conversation = SQLiteSession("conversation-1")
    calls = [function_call("charge_card", ARGS, call_id=f"c{i}") for i in range(4)]
    first = await run(shop.agent(_script(calls[:1], calls[1:])), "charge", session=conversation)
    later = await run(shop.agent(_script(calls[:1])), "again", session=conversation)
    assert 1 == len(shop.charges)
    assert 1 == len(set(_outputs(first) + _outputs(later)))


async def test_conversations_are_isolated() -> None:
    """Two sessions (and a group_id) with identical arguments each charge."""
    shop = Shop()
    call = [function_call("charge_card", ARGS, call_id="c1")]
    await run(shop.agent(_script(call)), "charge", session=SQLiteSession("a"))
    await run(shop.agent(_script(call)), "charge", session=SQLiteSession("b"))
    await run(shop.agent(_script(call)), "charge", run_config=RunConfig(group_id="thread-c"))
    assert 3 == len(shop.charges)


async def test_reads_are_cached() -> None:
    """A READ tool runs once for identical arguments, even without a conversation."""
    shop = Shop()
    call = [function_call("get_weather", {"city": "Oslo"}, call_id="w")]
    await run(shop.agent(_script(call, call)), "weather")
    await run(shop.agent(_script(call)), "weather", session=SQLiteSession("x"))
    assert ["Oslo"] == shop.lookups


async def test_without_a_conversation_a_write_is_refused_with_a_hint() -> None:
    """No session, conversation or group id: the model reads why, and nothing is charged."""
    shop = Shop()
    result = await run(
        shop.agent(_script([function_call("charge_card", ARGS, call_id="c1")])), "charge"
    )
    assert [] == shop.charges
    assert "session" in _outputs(result)[0]


async def test_a_model_supplied_key_is_never_used() -> None:
    """An idempotency_key the model makes up is dropped by the SDK's argument parsing (the
    schema, strict, does not offer it): the derived key is used, and the model's repeat
    with another made-up key still replays."""
    shop = Shop()
    forged = [
        function_call("charge_card", {**ARGS, "idempotency_key": f"made-up-{i}"}, call_id=f"c{i}")
        for i in range(2)
    ]
    await run(
        shop.agent(_script(forged[:1], forged[1:])), "charge", session=SQLiteSession("conv-1")
    )
    assert 1 == len(shop.charges)
    assert shop.charges[0][2].startswith("ik_")


def test_run_sync_binds_the_conversation_too() -> None:
    """run_sync: the same binding for sync callers."""
    shop = Shop()
    call = [function_call("charge_card", ARGS, call_id="c1")]
    try:
        run_sync(shop.agent(_script(call, call)), "charge", session=SQLiteSession("s"))
    finally:
        # Runner.run_sync keeps the thread's default event loop open on purpose: close it.
        policy = asyncio.get_event_loop_policy()
        policy.get_event_loop().close()
        policy.set_event_loop(None)
    assert 1 == len(shop.charges)


async def test_streamed_runs_charge_as_plain_runs_do() -> None:
    """run_streamed: the model's repeat in the run and a later streamed run of the session
    charge once (a streamed run through Runner.run_streamed alone was refused every write);
    the events are consumed in another task, after the call returned."""
    shop = Shop()
    conversation = SQLiteSession("conversation-streamed")
    calls = [function_call("charge_card", ARGS, call_id=f"c{i}") for i in range(3)]
    outputs: list[str] = []

    async def consume(result: Any) -> None:
        async for event in result.stream_events():
            if event.type == "run_item_stream_event" and event.item.type == "tool_call_output_item":
                outputs.append(str(event.item.output))

    first = run_streamed(shop.agent(_script(calls[:1], calls[1:2])), "charge", session=conversation)
    await asyncio.get_running_loop().create_task(consume(first))
    later = run_streamed(shop.agent(_script(calls[2:])), "again", session=conversation)
    await consume(later)
    assert 1 == len(shop.charges)
    assert 3 == len(outputs) and 1 == len(set(outputs)), outputs
    plain = Shop()  # the same script, not streamed: the same charges
    await run(plain.agent(_script(calls[:1], calls[1:2])), "charge", session=SQLiteSession("p"))
    assert len(plain.charges) == len(shop.charges)


async def test_a_streamed_run_without_a_conversation_is_refused_with_a_hint() -> None:
    shop = Shop()
    result = run_streamed(
        shop.agent(_script([function_call("charge_card", ARGS, call_id="c1")])), "charge"
    )
    texts = [
        str(e.item.output)
        async for e in result.stream_events()
        if e.type == "run_item_stream_event" and e.item.type == "tool_call_output_item"
    ]
    assert [] == shop.charges and "session" in texts[0]
