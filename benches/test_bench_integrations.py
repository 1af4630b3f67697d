"""What an integration adds to a framework's own tool call, for a cache hit (issue 12's
target: <= 5 %). Each framework calls, through its own machinery, a plain tool (the
baseline: the framework's per-call cost) and the same tool protected by retrysafe (its
integration, a READ tool whose result is cached), in alternating pairs in the same run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from retrysafe import tool

from .conftest import paired_median, paired_ratio


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
    # Where it goes: a capability that overrides no hook (Pydantic AI's own cost of running
    # one, a copy of the run context per hook point and step) over the plain agent, and
    # retrysafe's capability and tool over that.
    empty: Agent[None, str] = Agent(FunctionModel(model), capabilities=[_empty_capability()])
    empty.tool_plain(name="weather")(_weather)

    def run(agent: Agent[None, str]) -> Callable[[], Any]:
        return lambda: loop.run_until_complete(agent.run("go"))

    framework = paired_median(run(empty), run(plain))
    ours_over_empty = paired_median(run(ours), run(empty))
    print(
        f"pydantic-ai: a capability overriding no hook / plain agent = {framework:.3f}; "
        f"retrysafe / that = {ours_over_empty:.3f}"
    )
    benchmark.extra_info["empty_capability_ratio"] = round(framework, 3)
    benchmark.extra_info["over_empty_capability"] = round(ours_over_empty, 3)


def _empty_capability() -> Any:
    """A Pydantic AI capability that overrides no hook."""
    from pydantic_ai.capabilities import AbstractCapability

    @dataclass
    class NoHooks(AbstractCapability[Any]):
        @classmethod
        def get_serialization_name(cls) -> str | None:
            return None

    return NoHooks()


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


def test_google_adk(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    pytest.importorskip("google.adk")
    from google.adk.agents import Agent
    from google.adk.apps import App
    from google.adk.cli.agent_test_runner import MockModel
    from google.adk.runners import Runner
    from google.adk.sessions import InMemorySessionService
    from google.genai import types

    from retrysafe.integrations.google_adk import Retrysafe

    call = types.Content(
        role="model", parts=[types.Part.from_function_call(name="_weather", args={"city": "Oslo"})]
    )
    done = types.Content(role="model", parts=[types.Part(text="ok")])
    message = types.Content(role="user", parts=[types.Part(text="go")])

    def runner(tool_fn: Callable[..., Any], plugins: list[Any]) -> Callable[[], Any]:
        sessions = InMemorySessionService()

        async def run() -> None:
            agent = Agent(name="shop", model=MockModel.create([call, done]), tools=[tool_fn])
            app = App(name="shop", root_agent=agent, plugins=plugins)
            session = await sessions.create_session(app_name="shop", user_id="u")
            async for _ in Runner(app=app, session_service=sessions).run_async(
                user_id="u", session_id=session.id, new_message=message
            ):
                pass

        return lambda: loop.run_until_complete(run())

    benchmark.group = "integration overhead: google-adk Runner.run_async with one tool call"
    ratio = paired_ratio(benchmark, runner(_protected(), [Retrysafe()]), runner(_weather, []))
    _report(benchmark, "google-adk", ratio)


def test_llama_index(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    pytest.importorskip("llama_index.core")
    import warnings

    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
    from llama_index.core.llms.mock import MockFunctionCallingLLM
    from llama_index.core.tools import FunctionTool

    from retrysafe.integrations.llama_index import as_tool

    warnings.filterwarnings("ignore", category=DeprecationWarning)

    def respond(messages: Any, **kwargs: Any) -> ChatMessage:
        if any(m.role == MessageRole.TOOL for m in messages):
            return ChatMessage(role="assistant", content="ok")
        block = ToolCallBlock(tool_call_id="c", tool_name="_weather", tool_kwargs={"city": "Oslo"})
        return ChatMessage(role="assistant", blocks=[block])

    def agent(tool_obj: Any) -> Callable[[], Any]:
        made = FunctionAgent(
            tools=[tool_obj], llm=MockFunctionCallingLLM(response_generator=respond)
        )

        async def run() -> None:
            await made.run("go")

        return lambda: loop.run_until_complete(run())

    benchmark.group = "integration overhead: llama-index FunctionAgent.run with one tool call"
    ratio = paired_ratio(
        benchmark,
        agent(as_tool(_protected(), name="_weather")),
        agent(FunctionTool.from_defaults(fn=_weather, name="_weather")),
    )
    _report(benchmark, "llama-index", ratio)
