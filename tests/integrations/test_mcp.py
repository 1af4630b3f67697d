"""retrysafe.integrations.mcp on real FastMCP and MCP SDK servers, through in-memory clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from retrysafe import tool

fastmcp = pytest.importorskip("fastmcp")
mcp_server = pytest.importorskip("mcp.server")
mcp_client = pytest.importorskip("mcp.client")

from retrysafe.integrations.mcp import add_tools, protect  # noqa: E402

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """The MCP clients and servers run on asyncio."""
    return "asyncio"


class Shop:
    """The server's tools and what they really did."""

    def __init__(self) -> None:
        self.charges: list[tuple[str, int, str]] = []
        self.lookups: list[str] = []

        @tool.write(remote_idempotent=True, registry=None)
        async def charge_card(
            customer: str, amount_cents: int, idempotency_key: str | None = None
        ) -> dict[str, Any]:
            """Charge a customer's card."""
            assert idempotency_key is not None
            await anyio.sleep(0.05)
            self.charges.append((customer, amount_cents, idempotency_key))
            return {"charge": f"ch_{len(self.charges)}"}

        @tool.read(registry=None)
        def get_weather(city: str) -> str:
            """Weather for a city."""
            self.lookups.append(city)
            return f"sunny in {city}"

        @tool.destructive(registry=None)
        def delete_account(customer: str) -> str:
            """Delete an account."""
            return customer

        self.tools: list[Callable[..., Any]] = [charge_card, get_weather, delete_account]


@asynccontextmanager
async def connected(kind: str, shop: Shop) -> AsyncIterator[Any]:
    if kind == "fastmcp":
        server = fastmcp.FastMCP("shop")
        protect(server)
        for fn in shop.tools:
            server.tool(fn)
        async with fastmcp.Client(server) as client:
            yield client
    else:
        server = mcp_server.MCPServer("shop")
        add_tools(server, *shop.tools)
        async with mcp_client.Client(server) as client:
            yield client


def _meta(conversation: str) -> dict[str, str]:
    return {"retrysafe/conversation": conversation}


async def _call(client: Any, name: str, arguments: dict[str, Any], **options: Any) -> Any:
    if isinstance(client, fastmcp.Client):
        return await client.call_tool(name, arguments, raise_on_error=False, **options)
    return await client.call_tool(name, arguments, **options)


def _text(result: Any) -> str:
    return str(result.content[0].text)


@pytest.fixture(params=["fastmcp", "mcp-sdk"])
def kind(request: pytest.FixtureRequest) -> str:
    """Every test runs on FastMCP and on the MCP SDK's MCPServer."""
    return str(request.param)


async def test_tools_list_has_the_schema_and_annotations_without_the_key(kind: str) -> None:
    """The model sees the parameters, the description and each effect's hints; no key."""
    shop = Shop()
    async with connected(kind, shop) as client:
        listed = await client.list_tools()
    tools = {t.name: t for t in getattr(listed, "tools", listed)}
    charge = tools["charge_card"]
    assert ["customer", "amount_cents"] == list(charge.input_schema["properties"])
    assert "Charge a customer's card." == charge.description
    expected = {
        "charge_card": (False, False, False),
        "get_weather": (True, False, True),
        "delete_account": (False, True, False),
    }
    for name, (read_only, destructive, idempotent) in expected.items():
        hints = tools[name].annotations
        assert (read_only, destructive, idempotent) == (
            hints.read_only_hint,
            hints.destructive_hint,
            hints.idempotent_hint,
        ), name


async def test_a_write_repeated_in_a_conversation_runs_once(kind: str) -> None:
    """The model's repeat (and parallel identical calls) get the first call's result."""
    shop = Shop()
    arguments = {"customer": "cus_42", "amount_cents": 1999}
    async with connected(kind, shop) as client:
        results: list[str] = []

        async def one() -> None:
            results.append(_text(await _call(client, "charge_card", arguments, meta=_meta("c1"))))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(one)
        results.append(_text(await _call(client, "charge_card", arguments, meta=_meta("c1"))))
    assert 1 == len(shop.charges)
    assert 6 == len(results) and len(set(results)) == 1


async def test_conversations_are_isolated(kind: str) -> None:
    """Two conversations with identical arguments each place their order; a tenant the
    client sends in _meta is ignored (only server-side code names a tenant)."""
    shop = Shop()
    arguments = {"customer": "cus_42", "amount_cents": 1999}
    async with connected(kind, shop) as client:
        await _call(client, "charge_card", arguments, meta=_meta("c1"))
        await _call(client, "charge_card", arguments, meta={"conversation_id": "c2"})
        await _call(client, "charge_card", arguments, meta={**_meta("c2"), "retrysafe/tenant": "t"})
    assert 2 == len(shop.charges)
    assert 2 == len({key for *_, key in shop.charges})


async def test_a_client_naming_no_conversation_gets_its_connection(kind: str) -> None:
    """An off-the-shelf client sends no _meta: its writes run (not refused), a repeat on
    its connection runs once, and another connection's identical call is its own."""
    shop = Shop()
    arguments = {"customer": "c", "amount_cents": 5}
    async with connected(kind, shop) as client:
        first = await _call(client, "charge_card", arguments)
        again = await _call(client, "charge_card", arguments)
    assert not first.is_error
    assert _text(first) == _text(again)
    assert 1 == len(shop.charges)


async def test_a_model_supplied_key_is_never_used(kind: str) -> None:
    """An extra idempotency_key argument is refused by FastMCP's validation and dropped by
    the MCP SDK's (which ignores unknown arguments); either way it is never the key."""
    shop = Shop()
    arguments = {"customer": "c", "amount_cents": 5, "idempotency_key": "made-up"}
    async with connected(kind, shop) as client:
        result = await _call(client, "charge_card", arguments, meta=_meta("c1"))
    if kind == "fastmcp":
        assert result.is_error
        assert [] == shop.charges
    else:
        assert [("c", 5)] == [charge[:2] for charge in shop.charges]
    assert "made-up" not in {key for *_, key in shop.charges}


async def test_reads_are_cached(kind: str) -> None:
    """A READ tool runs once for identical arguments, with or without a conversation."""
    shop = Shop()
    async with connected(kind, shop) as client:
        for meta in (None, _meta("c1"), _meta("c2")):
            result = await _call(client, "get_weather", {"city": "Oslo"}, meta=meta)
            assert "sunny in Oslo" == _text(result)
    assert ["Oslo"] == shop.lookups


async def test_a_refusal_reaches_the_model_as_the_hint(kind: str) -> None:
    """An UNKNOWN outcome: the model reads retrysafe's hint, not FastMCP's wrapper ("Error
    calling tool ...: ...", with the internal message and the whole key)."""
    from retrysafe import OutcomeUnknownError

    sent: list[str] = []

    @tool.write(registry=None)
    def send_email(to: str) -> str:
        """Send an e-mail."""
        sent.append(to)
        raise ConnectionError("the mail server hung up after accepting it")

    shop = Shop()
    shop.tools = [send_email]
    async with connected(kind, shop) as client:
        first = await _call(client, "send_email", {"to": "a@example.com"}, meta=_meta("c"))
        again = await _call(client, "send_email", {"to": "a@example.com"}, meta=_meta("c"))
    hint = OutcomeUnknownError("x", key=None).llm_hint
    for result in (first, again):
        assert result.is_error
        text = _text(result)
        assert "Error calling tool" not in text and "ik_" not in text, text
    # FastMCP: the hint as is; the MCP SDK: its own prefix for a tool's error, then the hint.
    assert _text(again) == hint if kind == "fastmcp" else _text(again).endswith(": " + hint)
    assert ["a@example.com"] == sent


async def test_fastmcp_logs_a_refusal_in_one_line_and_a_bug_with_its_traceback() -> None:
    """FastMCP logs each failed tool call with a traceback (a rich one on a terminal): a
    retrysafe refusal is an answer to the model, logged as one line with its type and key;
    a bug in a tool keeps its traceback."""
    import logging

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    @tool.write(registry=None)
    def send_email(to: str) -> str:
        """Send an e-mail."""
        raise ConnectionError("the mail server hung up after accepting it")

    @tool.read(registry=None)
    def broken(city: str) -> str:
        """A tool with a bug."""
        raise ZeroDivisionError("a bug")

    shop = Shop()
    shop.tools = [send_email, broken]
    handler = Keep()
    loggers = [
        logging.getLogger(n) for n in ("fastmcp.server.server", "fastmcp.tools.tool_manager")
    ]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        async with connected("fastmcp", shop) as client:
            await _call(client, "send_email", {"to": "a@example.com"}, meta=_meta("c"))
            await _call(client, "send_email", {"to": "a@example.com"}, meta=_meta("c"))
            await _call(client, "broken", {"city": "Oslo"}, meta=_meta("c"))
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    refusals = [r for r in records if "send_email" in r.getMessage()]
    bugs = [r for r in records if "broken" in r.getMessage()]
    assert 2 == len(refusals) and 1 == len(bugs), [r.getMessage() for r in records]
    for record in refusals:
        assert record.exc_info is None and "\n" not in record.getMessage()
        assert "OutcomeUnknownError (key ik_" in record.getMessage()
        assert "a@example.com" not in record.getMessage()
    assert bugs[0].exc_info is not None
