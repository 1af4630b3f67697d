"""@tool applies the policy of its effect; the registry exports tool definitions."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Optional

import anyio
import pytest

from retrysafe import (
    Effect,
    LoopGuard,
    LoopStop,
    RetryConfig,
    RetryRefusedError,
    ToolRegistry,
    json_schema,
    session,
    tool,
)
from retrysafe.stores import Store

FAST = RetryConfig(max_attempts=3, base_delay=0.001, max_delay=0.002)


@pytest.mark.anyio
async def test_read_tool_caches_coalesces_and_retries(astore: Store) -> None:
    """READ: a transient failure is retried, the result cached, concurrent calls coalesced."""
    calls = {"n": 0}

    @tool.read(store=astore, retry=FAST, registry=None)
    async def get_weather(city: str) -> dict[str, str]:
        """Weather."""
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("flaky")
        await anyio.sleep(0.02)
        return {"city": city}

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(get_weather, "Paris")
    assert {"city": "Paris"} == await get_weather("Paris")
    assert 2 == calls["n"]  # one failure + one success, for 21 calls
    assert Effect.READ is get_weather.effect  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_write_tool_keys_records_and_retries_with_the_same_key(astore: Store) -> None:
    """WRITE + remote_idempotent: every attempt sends the same key; a repeat call replays."""
    keys: list[str | None] = []

    @tool.write(store=astore, retry=FAST, remote_idempotent=True, registry=None)
    async def charge(customer: str, amount: int, idempotency_key: str | None = None) -> str:
        """Charge."""
        keys.append(idempotency_key)
        if len(keys) == 1:
            raise TimeoutError("lost response")
        return f"charged {amount}"

    async with session("s"):
        assert "charged 5" == await charge("c", 5)
        assert "charged 5" == await charge("c", 5)  # replayed
    assert 2 == len(keys) and keys[0] == keys[1] and keys[0] is not None


def test_write_without_remote_idempotency_is_not_retried() -> None:
    """WRITE without remote_idempotent: no retry by default; an explicit retry is refused."""
    calls = {"n": 0}

    @tool.write(registry=None)
    def send(to: str) -> str:
        """Send."""
        calls["n"] += 1
        raise TimeoutError()

    from retrysafe import OutcomeUnknownError

    with session("s-send"), pytest.raises(OutcomeUnknownError):
        send("a")
    assert 1 == calls["n"]
    with pytest.raises(RetryRefusedError):

        @tool.destructive(retry=FAST, registry=None)
        def drop(name: str) -> None:
            """Drop."""


def test_guard_is_checked_first() -> None:
    """A loop guard stops the fourth identical call before the tool runs."""
    guard = LoopGuard(max_identical=2, mode="message")
    calls = {"n": 0}

    @tool.read(guard=guard, cache_ttl=None, registry=None)
    def search(q: str) -> int:
        """Search."""
        calls["n"] += 1
        return calls["n"]

    with session("g"):
        search("x")
        search("x")
        stopped = search("x")
    assert isinstance(stopped, LoopStop)
    assert 2 == calls["n"]


def test_effect_is_required() -> None:
    """@tool without an effect says how to tag it."""
    with pytest.raises(ValueError, match="has no effect"):

        @tool(registry=None)
        def mystery() -> None:
            """?"""


def test_registry_exports() -> None:
    """Names, descriptions and schemas in the Anthropic, OpenAI and MCP shapes."""
    registry = ToolRegistry()

    @tool.read(registry=registry)
    def get_weather(
        city: str, units: Literal["metric", "imperial"] = "metric", days: Optional[int] = None
    ) -> dict[str, Any]:
        """Weather forecast for a city."""
        return {}

    @tool.destructive(registry=registry)
    def delete_file(path: str, idempotency_key: str | None = None) -> None:
        """Delete a file."""

    assert 2 == len(registry)
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "units": {"type": "string", "enum": ["metric", "imperial"], "default": "metric"},
            "days": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
        },
        "required": ["city"],
        "additionalProperties": False,
    }
    assert {
        "name": "get_weather",
        "description": "Weather forecast for a city.",
        "input_schema": schema,
    } == (registry.anthropic()[0])
    assert {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather forecast for a city.",
            "parameters": schema,
        },
    } == (registry.openai()[0])
    mcp = registry.mcp()[1]
    assert {
        "readOnlyHint": False,
        "destructiveHint": True,
        "idempotentHint": False,
        "openWorldHint": True,
    } == mcp["annotations"]
    assert "idempotency_key" not in mcp["inputSchema"]["properties"]


def test_registry_rejects_bad_names_and_missing_descriptions() -> None:
    """A tool name must be snake_case and unique, with a description."""
    registry = ToolRegistry()
    with pytest.raises(ValueError, match="snake_case"):
        tool.read(name="GetIt", registry=registry)(lambda: None)

    def undocumented() -> None: ...

    with pytest.raises(ValueError, match="needs a description"):
        tool.read(registry=registry)(undocumented)


@dataclasses.dataclass
class Item:
    sku: str
    qty: int = 1


def test_json_schema_of_dataclasses_and_lists() -> None:
    """Nested dataclasses, lists and dicts get their schema."""

    def order(items: list[Item], notes: dict[str, str], flags: set[bool]) -> None: ...

    props = json_schema(order)["properties"]
    assert {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
            "required": ["sku"],
        },
    } == props["items"]
    assert {"type": "object", "additionalProperties": {"type": "string"}} == props["notes"]
    assert {"type": "array", "items": {"type": "boolean"}} == props["flags"]
