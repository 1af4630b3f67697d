"""Raw SDK loops: the registry's exports validate against the SDKs' own types, and tool-call
blocks of Anthropic and OpenAI (Chat Completions and Responses) dispatch through it."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from retrysafe import Effect, LoopGuard, ToolRegistry, session, tool

anthropic_types = pytest.importorskip("anthropic.types")
chat = pytest.importorskip("openai.types.chat")
responses = pytest.importorskip("openai.types.responses")
mcp_types = pytest.importorskip("mcp.types")
pydantic = pytest.importorskip("pydantic")


def _registry() -> tuple[ToolRegistry, list[tuple[str, int, str]]]:
    registry = ToolRegistry()
    charges: list[tuple[str, int, str]] = []

    @tool.read(registry=registry)
    def get_weather(city: str, units: Literal["metric", "imperial"] = "metric") -> dict[str, Any]:
        """Weather for a city."""
        return {"city": city, "units": units, "temp": 21}

    @tool.write(registry=registry, remote_idempotent=True)
    async def charge_card(
        customer: str, amount_cents: int, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Charge a customer's card."""
        assert idempotency_key is not None
        charges.append((customer, amount_cents, idempotency_key))
        return {"charge": f"ch_{len(charges)}", "amount": amount_cents}

    @tool(effect=Effect.IDEMPOTENT, registry=registry)
    def set_level(level: Literal[1, 2, 3]) -> int:
        """Set the level."""
        return level

    return registry, charges


def test_exports_validate_against_the_sdks_types() -> None:
    """Anthropic ToolParam, OpenAI Chat and Responses function tools, MCP Tool: all valid."""
    registry, _ = _registry()
    for definition in registry.anthropic():
        pydantic.TypeAdapter(anthropic_types.ToolParam).validate_python(definition)
    for definition in registry.openai():
        pydantic.TypeAdapter(chat.ChatCompletionFunctionToolParam).validate_python(definition)
    for definition in registry.openai(api="responses"):
        responses.FunctionTool.model_validate(definition)
        pydantic.TypeAdapter(responses.FunctionToolParam).validate_python(definition)
    for definition in registry.mcp():
        mcp_types.Tool.model_validate(definition)
    charge = registry["charge_card"].parameters
    assert ["customer", "amount_cents"] == list(charge["properties"])
    assert {"type": "integer", "enum": [1, 2, 3]} == registry["set_level"].parameters["properties"][
        "level"
    ]


@pytest.mark.anyio
async def test_anthropic_tool_use_blocks_dispatch_and_a_repeat_replays() -> None:
    """A tool_use block runs the tool; the model's repeat of a write gets the same result."""
    registry, charges = _registry()
    block = anthropic_types.ToolUseBlock(
        id="toolu_1",
        name="charge_card",
        input={"customer": "cus_42", "amount_cents": 1999},
        type="tool_use",
    )
    async with session("conversation-1"):
        first = await registry.anthropic_result(block)
        repeat = await registry.anthropic_result(block.model_copy(update={"id": "toolu_2"}))
    pydantic.TypeAdapter(anthropic_types.ToolResultBlockParam).validate_python(first)
    assert "toolu_1" == first["tool_use_id"] and "is_error" not in first
    assert first["content"] == repeat["content"]
    assert 1 == len(charges)


@pytest.mark.anyio
async def test_openai_chat_and_responses_calls_dispatch() -> None:
    """Chat Completions tool calls and Responses function_call items give their result shapes."""
    registry, charges = _registry()
    chat_call = chat.ChatCompletionMessageFunctionToolCall(
        id="call_1",
        type="function",
        function={"name": "get_weather", "arguments": '{"city": "Paris"}'},
    )
    item = responses.ResponseFunctionToolCall(
        call_id="call_2",
        name="charge_card",
        arguments='{"customer": "cus_1", "amount_cents": 500}',
        type="function_call",
    )
    async with session("conversation-1"):
        message = await registry.openai_result(chat_call)
        output = await registry.openai_result(item)
    pydantic.TypeAdapter(chat.ChatCompletionToolMessageParam).validate_python(message)
    from openai.types.responses.response_input_param import FunctionCallOutput

    pydantic.TypeAdapter(FunctionCallOutput).validate_python(output)
    assert '"city":"Paris"' in message["content"]
    assert "call_2" == output["call_id"] and "ch_1" in output["output"]
    assert [("cus_1", 500)] == [c[:2] for c in charges]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"customer": 42, "amount_cents": 5}, "customer: Input should be a valid string"),
        (
            {"customer": "c", "amount_cents": "lots"},
            "amount_cents: Input should be a valid integer",
        ),
        ({"customer": "c"}, "missing required argument 'amount_cents'"),
        (
            {"customer": "c", "amount_cents": 5, "idempotency_key": "made-up"},
            "unexpected argument 'idempotency_key'",
        ),
        ('{"customer": ', "not valid JSON"),
    ],
)
async def test_bad_arguments_come_back_as_error_results_naming_the_field(
    arguments: Any, expected: str
) -> None:
    """Validation runs before the tool: the model reads which field is wrong; nothing ran."""
    registry, charges = _registry()
    async with session("conversation-1"):
        outcome = await registry.call("charge_card", arguments)
        block = outcome.anthropic("toolu_9")
    assert not outcome.ok
    assert expected in outcome.text
    assert block["is_error"] is True
    assert [] == charges


@pytest.mark.anyio
async def test_loop_stops_and_unknown_tools_are_error_results() -> None:
    """A loop guard's stop and a tool that does not exist reach the model as hints."""
    registry, _ = _registry()
    unknown = await registry.call("get_wether", {"city": "x"})
    assert not unknown.ok and "get_weather" in unknown.text
    with LoopGuard(max_identical=1, mode="message"):
        assert (await registry.call("get_weather", {"city": "Oslo"})).ok
        stopped = await registry.call("get_weather", {"city": "Oslo"})
    assert not stopped.ok and stopped.text


def test_outside_a_session_a_write_is_an_error_result() -> None:
    """A raw loop that forgot the session gets SessionRequiredError's hint, not a shared record."""
    registry = ToolRegistry()
    ran: list[str] = []

    @tool.write(registry=registry)
    def send_email(to: str) -> str:
        """Send an e-mail."""
        ran.append(to)
        return "sent"

    outcome = registry.call_sync("send_email", {"to": "a@b"})
    assert not outcome.ok and "session" in outcome.text
    assert [] == ran
    with session("conversation-1"):
        assert "sent" == registry.call_sync("send_email", {"to": "a@b"}).text


def test_redefining_a_tool_replaces_it_and_a_clash_is_refused() -> None:
    """A notebook cell run twice replaces its tool; another function under a taken name is
    registered apart (two modules of one program may each define one: importing both no
    longer fails), and offering or calling the name is refused, naming both and the fix."""
    registry = ToolRegistry()

    def define(text: str) -> Any:
        @tool.read(registry=registry)
        def lookup(q: str) -> str:
            """Look up."""
            return text

        return lookup

    define("v1")
    define("v2")
    assert 1 == len(registry)
    assert "v2" == registry.call_sync("lookup", {"q": "x"}).text

    def lookup(q: str) -> str:
        """Another lookup."""
        return q

    other = tool.read(registry=registry)(lookup)  # no error at import time
    assert "x" == other("x")  # the tool itself works
    for use in (
        lambda: registry["lookup"],
        lambda: registry.openai(),
        lambda: registry.anthropic(),
        lambda: registry.call_sync("lookup", {"q": "x"}),
    ):
        with pytest.raises(ValueError, match=r"2 tools are named 'lookup' .*name=\.\.\."):
            use()


def test_decorating_a_tool_does_not_import_pydantic() -> None:
    """The argument validator is built on the first registry call, not at decoration time."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom retrysafe import tool\n"
        "@tool.read\ndef get_weather(city: str) -> str:\n    'Weather.'\n    return city\n"
        "print('pydantic' in sys.modules)\n"
        "get_weather.spec.validate({'city': 'Oslo'})\n"
        "print('pydantic' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert ["False", "True"] == done.stdout.split(), done.stderr


def test_an_empty_registry_is_true() -> None:
    """``registry or ToolRegistry()`` keeps the registry given, empty or not."""
    empty = ToolRegistry()
    assert bool(empty) and 0 == len(empty)
    assert (empty or ToolRegistry()) is empty


def test_the_registry_and_the_tool_factory_say_what_they_are() -> None:
    from retrysafe import tool

    registry = ToolRegistry()

    @tool.read(registry=registry)
    def weather(city: str) -> str:
        """Weather."""
        return city

    assert "ToolRegistry(1 tools: weather)" == repr(registry)
    assert "@tool.write" in repr(tool) and "@tool.write" in (type(tool).__doc__ or "")
