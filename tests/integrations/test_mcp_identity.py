"""Who shares a record on an MCP server: attacks of one client on another, on a real FastMCP
server over streamable HTTP with bearer auth (two principals), and over stdio with an
off-the-shelf client that sends no ``_meta``."""

from __future__ import annotations

import json
import socket
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from retrysafe import tool

fastmcp = pytest.importorskip("fastmcp")
uvicorn = pytest.importorskip("uvicorn")

from fastmcp.server.auth.providers.jwt import StaticTokenVerifier  # noqa: E402

from retrysafe.integrations.mcp import protect  # noqa: E402

pytestmark = pytest.mark.anyio

TOKENS = {
    "alice-token": {"client_id": "alice", "scopes": []},
    "bob-token": {"client_id": "bob", "scopes": []},
}


@pytest.fixture
def anyio_backend() -> str:
    """uvicorn and the MCP client run on asyncio."""
    return "asyncio"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bank:
    """The server's tools, and what they really did."""

    def __init__(self) -> None:
        self.charges: list[tuple[str, int]] = []
        self.balance_reads = 0
        self.server = fastmcp.FastMCP("bank", auth=StaticTokenVerifier(tokens=TOKENS))
        protect(self.server)

        @self.server.tool
        @tool.write(registry=None)
        async def charge_card(card: str, amount_cents: int) -> dict[str, Any]:
            """Charge a card."""
            await anyio.sleep(0.2)  # long enough for another caller to arrive meanwhile
            self.charges.append((card, amount_cents))
            return {"charge": f"ch_{len(self.charges)}", "card": card[-4:]}

        @self.server.tool
        @tool.read(registry=None, cache_ttl=60)
        def my_balance() -> int:
            """The caller's balance (the server knows who calls; the tool takes nothing)."""
            from fastmcp.server.dependencies import get_access_token

            self.balance_reads += 1
            token = get_access_token()
            return {"alice": 100, "bob": 5}[token.client_id if token else ""]


@asynccontextmanager
async def serving(bank: Bank, **app_options: Any) -> AsyncIterator[str]:
    port = _free_port()
    config = uvicorn.Config(
        bank.server.http_app(**app_options),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(20):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
                await anyio.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            server.should_exit = True


def _client(url: str, token: str) -> Any:
    return fastmcp.Client(url, auth=token)


async def _charge(client: Any, conversation: str, **meta: str) -> Any:
    result = await client.call_tool(
        "charge_card",
        {"card": "4242424242424242", "amount_cents": 1999},
        meta={"retrysafe/conversation": conversation, **meta},
        raise_on_error=False,
    )
    return result


def _data(result: Any) -> Any:
    return json.loads(result.content[0].text)


async def test_another_principal_naming_my_conversation_never_gets_my_charge() -> None:
    """Bob sends alice's conversation id and arguments: his own charge runs, he never reads
    alice's stored result; alice's repeat still replays hers."""
    bank = Bank()
    async with serving(bank) as url:
        async with _client(url, "alice-token") as alice, _client(url, "bob-token") as bob:
            mine = _data(await _charge(alice, "conv-alice-1"))
            stolen = _data(await _charge(bob, "conv-alice-1"))
            again = _data(await _charge(alice, "conv-alice-1"))
    assert mine == again
    assert stolen != mine
    assert 2 == len(bank.charges)


async def test_another_principal_cannot_pre_empt_or_block_my_charge() -> None:
    """Bob calls first with alice's future conversation and arguments, and is still running
    when alice calls: alice's own charge runs, she is not told of bob's nor kept waiting."""
    bank = Bank()
    async with serving(bank) as url:
        async with _client(url, "alice-token") as alice, _client(url, "bob-token") as bob:
            results: dict[str, Any] = {}

            async def bob_first() -> None:
                results["bob"] = _data(await _charge(bob, "conv-alice-2"))

            async with anyio.create_task_group() as tg:
                tg.start_soon(bob_first)
                await anyio.sleep(0.05)  # bob's call holds its record IN_PROGRESS now
                with anyio.fail_after(5):
                    results["alice"] = await _charge(alice, "conv-alice-2")
    assert not results["alice"].is_error
    assert results["bob"] != _data(results["alice"])
    assert 2 == len(bank.charges)


async def test_a_tenant_in_meta_is_not_trusted() -> None:
    """A client naming a tenant in _meta changes nothing: the same principal's repeat in the
    same conversation still replays (the tenant comes from server-side code only)."""
    bank = Bank()
    async with serving(bank) as url:
        async with _client(url, "alice-token") as alice:
            first = _data(await _charge(alice, "c"))
            spoofed = _data(await _charge(alice, "c", **{"retrysafe/tenant": "globex"}))
    assert first == spoofed
    assert 1 == len(bank.charges)


async def test_cached_reads_never_cross_principals() -> None:
    """my_balance() cached for alice is never served to bob, and each principal's repeat is a
    cache hit."""
    bank = Bank()
    async with serving(bank) as url:
        async with _client(url, "alice-token") as alice, _client(url, "bob-token") as bob:
            a1 = await alice.call_tool("my_balance", {})
            b1 = await bob.call_tool("my_balance", {})
            a2 = await alice.call_tool("my_balance", {})
            b2 = await bob.call_tool("my_balance", {})
    assert [100, 5, 100, 5] == [r.data for r in (a1, b1, a2, b2)]
    assert 2 == bank.balance_reads


STDIO_SERVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from fastmcp import FastMCP

    from retrysafe import tool
    from retrysafe.integrations.mcp import protect

    ledger = Path(sys.argv[1])
    server = FastMCP("shop")
    protect(server)


    @server.tool
    @tool.write(registry=None)
    def charge_card(customer: str, amount_cents: int) -> str:
        with ledger.open("a") as out:
            out.write(f"{customer} {amount_cents}\\n")
        return f"charged {customer}"


    if __name__ == "__main__":
        server.run(show_banner=False)
    """
)


async def test_an_off_the_shelf_stdio_client_writes_once(tmp_path: Path) -> None:
    """A client over stdio that sends no _meta (any MCP host): its write runs (not refused),
    and its repeat is replayed, not charged again."""
    from fastmcp.client.transports import StdioTransport

    script = tmp_path / "server.py"
    script.write_text(STDIO_SERVER)
    ledger = tmp_path / "ledger.txt"
    ledger.touch()
    transport = StdioTransport(sys.executable, [str(script), str(ledger)])
    async with fastmcp.Client(transport) as client:
        results = [
            await client.call_tool("charge_card", {"customer": "c", "amount_cents": 5})
            for _ in range(3)
        ]
    assert all(not r.is_error for r in results)
    assert ["c 5"] == ledger.read_text().split("\n")[:-1]


async def test_stateless_http_without_auth_keys_transport_retries_by_request_key() -> None:
    """No auth, no MCP session, no conversation: nothing tells two callers apart, so a write
    is refused with a hint; one that carries a request key (SEP-3182 idempotencyKey) runs,
    its transport retry (same key) replays, and a new key is a new call."""
    bank = Bank()
    bank.server.auth = None
    arguments = {"card": "4242424242424242", "amount_cents": 1999}
    async with serving(bank, stateless_http=True) as url, fastmcp.Client(url) as client:
        refused = await client.call_tool("charge_card", arguments, raise_on_error=False)
        keyed = [
            await client.call_tool(
                "charge_card", arguments, meta={"idempotencyKey": key}, raise_on_error=False
            )
            for key in ("req-1", "req-1", "req-2")
        ]
    assert refused.is_error and "session" in refused.content[0].text
    assert [False, False, False] == [r.is_error for r in keyed]
    assert _data(keyed[0]) == _data(keyed[1]) != _data(keyed[2])
    assert 2 == len(bank.charges)
