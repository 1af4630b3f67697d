"""What an integration adds to a framework's own tool call, for a cache hit (issue 12's
target: <= 5 %). Each framework calls, through its own machinery, a plain tool (the
baseline: the framework's per-call cost) and the same tool protected by retrysafe (its
integration, a READ tool whose result is cached), in alternating pairs in the same run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from retrysafe import tool

from .conftest import paired_ratio


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    made = asyncio.new_event_loop()
    yield made
    made.close()


def _weather(city: str) -> str:
    """Weather for a city."""
    return f"sunny in {city}"


def _protected() -> Callable[..., Any]:
    return tool.read(registry=None, cache_ttl=3600)(_weather)


def _report(benchmark: Any, framework: str, ratio: float) -> None:
    benchmark.extra_info["target"] = 1.05
    print(f"\n{framework}: protected cache hit / plain tool call = {ratio:.3f} (target <= 1.05)")


def test_pydantic_ai(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    pytest.importorskip("pydantic_ai")
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import FunctionModel

    from retrysafe.integrations.pydantic_ai import Retrysafe

    def model(messages: list[Any], info: Any) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("weather", {"city": "Oslo"})])
        return ModelResponse(parts=[TextPart("ok")])

    plain: Agent[None, str] = Agent(FunctionModel(model))
    plain.tool_plain(name="weather")(_weather)
    ours: Agent[None, str] = Agent(FunctionModel(model), capabilities=[Retrysafe()])
    ours.tool_plain(name="weather")(_protected())
    benchmark.group = "integration overhead: pydantic-ai agent.run with one tool call"
    ratio = paired_ratio(
        benchmark,
        lambda: loop.run_until_complete(ours.run("go")),
        lambda: loop.run_until_complete(plain.run("go")),
    )
    _report(benchmark, "pydantic-ai", ratio)


def test_fastmcp(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    fastmcp = pytest.importorskip("fastmcp")

    from retrysafe.integrations.mcp import protect

    plain = fastmcp.FastMCP("plain")
    plain.tool(name="weather")(_weather)
    ours = fastmcp.FastMCP("ours")
    protect(ours)
    ours.tool(name="weather")(_protected())
    clients = [fastmcp.Client(plain), fastmcp.Client(ours)]
    for client in clients:
        loop.run_until_complete(client.__aenter__())
    meta = {"retrysafe/conversation": "c1"}
    try:
        benchmark.group = "integration overhead: fastmcp in-memory call_tool"
        ratio = paired_ratio(
            benchmark,
            lambda: loop.run_until_complete(
                clients[1].call_tool("weather", {"city": "Oslo"}, meta=meta)
            ),
            lambda: loop.run_until_complete(
                clients[0].call_tool("weather", {"city": "Oslo"}, meta=meta)
            ),
        )
    finally:
        for client in clients:
            loop.run_until_complete(client.__aexit__(None, None, None))
    _report(benchmark, "fastmcp", ratio)


def test_openai_agents(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    agents = pytest.importorskip("agents")
    from agents.testing import ScriptedModel, assistant_message, function_call

    from retrysafe.integrations.openai_agents import function_tool, run

    agents.set_tracing_disabled(True)
    plain_tool = agents.function_tool(_weather, name_override="weather")
    our_tool = function_tool(_protected(), name_override="weather")

    def agent(with_tool: Any) -> Any:
        model = ScriptedModel(
            [[function_call("weather", {"city": "Oslo"}, call_id="w")], [assistant_message("ok")]]
        )
        return agents.Agent(name="a", model=model, tools=[with_tool])

    # The same run config on both sides (a conversation_id would switch the SDK to its
    # server-side conversation tracking, a cost of its own).
    config = agents.RunConfig(group_id="conversation-1")
    benchmark.group = "integration overhead: openai-agents run with one tool call"
    ratio = paired_ratio(
        benchmark,
        lambda: loop.run_until_complete(run(agent(our_tool), "go", run_config=config)),
        lambda: loop.run_until_complete(
            agents.Runner.run(agent(plain_tool), "go", run_config=config)
        ),
    )
    _report(benchmark, "openai-agents", ratio)


def test_langchain(benchmark: Any) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.tools import StructuredTool

    from retrysafe.integrations.langchain import as_tool

    plain = StructuredTool.from_function(func=_weather, name="weather")
    ours = as_tool(_protected(), name="weather")
    config: Any = {"configurable": {"thread_id": "t1"}}
    benchmark.group = "integration overhead: langchain tool.invoke"
    ratio = paired_ratio(
        benchmark,
        lambda: ours.invoke({"city": "Oslo"}, config=config),
        lambda: plain.invoke({"city": "Oslo"}, config=config),
    )
    _report(benchmark, "langchain", ratio)
