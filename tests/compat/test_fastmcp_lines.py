"""retrysafe.integrations.mcp on the FastMCP lines the main venv cannot hold (2.x and 3.x
need mcp 1.x; the main suite runs FastMCP 4.x on mcp 2.x), through FastMCP's in-memory
client: ``make test-compat`` runs this file in ``.venv-compat`` (FastMCP 2.x) and in
``.venv-fastmcp3`` (3.x), and names the line it expects in ``RETRYSAFE_FASTMCP``."""

from __future__ import annotations

import logging
import os
from typing import Any

import fastmcp
import pytest

from retrysafe import MemoryStore, OutcomeUnknownError, tool
from retrysafe.integrations.mcp import protect

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_this_is_the_line_expected() -> None:
    expected = os.environ.get("RETRYSAFE_FASTMCP", "")
    assert expected and fastmcp.__version__.startswith(expected + "."), fastmcp.__version__


async def test_a_repeated_write_runs_once_and_a_refusal_reads_as_the_hint() -> None:
    charges: list[str] = []
    sent: list[str] = []
    store = MemoryStore()

    @tool.write(remote_idempotent=True, registry=None, store=store)
    async def charge_card(customer: str, idempotency_key: str | None = None) -> dict[str, Any]:
        """Charge a customer's card."""
        assert idempotency_key is not None
        charges.append(idempotency_key)
        return {"charge": f"ch_{len(charges)}"}

    @tool.write(registry=None, store=store)
    def send_email(to: str) -> str:
        """Send an e-mail."""
        sent.append(to)
        raise ConnectionError("the mail server hung up after accepting it")

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    server = fastmcp.FastMCP("shop")
    protect(server)
    server.tool(charge_card)
    server.tool(send_email)
    handler = Keep()
    loggers = [
        logging.getLogger(n) for n in ("fastmcp.tools.tool_manager", "fastmcp.server.server")
    ]
    for logger in loggers:
        logger.addHandler(handler)
    meta = {"retrysafe/conversation": "c"}
    try:
        async with fastmcp.Client(server) as client:
            listed = {t.name: t for t in await client.list_tools()}
            first = await client.call_tool("charge_card", {"customer": "cus_42"}, meta=meta)
            again = await client.call_tool("charge_card", {"customer": "cus_42"}, meta=meta)
            refused = [
                await client.call_tool("send_email", {"to": "a@x"}, meta=meta, raise_on_error=False)
                for _ in range(2)
            ]
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    assert ["customer"] == list(listed["charge_card"].inputSchema["properties"])
    assert listed["charge_card"].annotations is not None
    assert 1 == len(charges) and first.data == again.data
    hint = OutcomeUnknownError("x", key=None).llm_hint
    assert [hint, hint] == [r.content[0].text for r in refused]
    assert ["a@x"] == sent
    mine = [r for r in records if "send_email" in r.getMessage()]
    assert mine and all(r.exc_info is None for r in mine)
    assert all("OutcomeUnknownError (key ik_" in r.getMessage() for r in mine)
