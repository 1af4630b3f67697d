"""retrysafe.integrations.claude_agent_sdk: in-process SDK MCP tools served to the SDK's
bundled Claude Code CLI (the real binary), which talks to a scripted Messages API on
127.0.0.1 (``examples/_fake_anthropic.py``, which the example uses too)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from retrysafe import OutcomeUnknownError, SessionRequiredError, tool

pytest.importorskip("claude_agent_sdk")
from claude_agent_sdk import (
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ToolResultBlock,
    UserMessage,
    create_sdk_mcp_server,
)

from retrysafe.integrations.claude_agent_sdk import as_tool, client

from .ledger import Ledger

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from _fake_anthropic import FakeAnthropic, serving

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


ARGS = {"customer": "cus_42", "amount_cents": 1999}
CHARGE = "mcp__shop__charge_card"
EMAIL = "mcp__shop__send_email"


class Shop(Ledger):
    def __init__(self) -> None:
        super().__init__()
        self.server = create_sdk_mcp_server(
            "shop", tools=[as_tool(self.charge_card), as_tool(self.send_email)]
        )


def options_for(shop: Shop, url: str, home: Path, session_id: str | None) -> ClaudeAgentOptions:
    home.mkdir(parents=True, exist_ok=True)
    return ClaudeAgentOptions(
        mcp_servers={"shop": shop.server},
        allowed_tools=[CHARGE, EMAIL],
        tools=[],
        session_id=session_id,
        model="claude-sonnet-4-5",
        cwd=str(home),
        env={
            "ANTHROPIC_BASE_URL": url,
            "ANTHROPIC_API_KEY": "sk-test",
            "HOME": str(home),
            "CLAUDE_CONFIG_DIR": str(home),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
        },
    )


async def results(claude: ClaudeSDKClient, prompt: str) -> list[ToolResultBlock]:
    """Send one user message; the tool results the model was given, in order."""
    out: list[ToolResultBlock] = []
    with anyio.fail_after(60):
        await claude.query(prompt)
        async for message in claude.receive_response():
            if isinstance(message, UserMessage) and isinstance(message.content, list):
                out.extend(b for b in message.content if isinstance(b, ToolResultBlock))
    return out


def text_of(block: ToolResultBlock) -> str:
    content: Any = block.content
    return content if isinstance(content, str) else "".join(c["text"] for c in content)


async def converse(
    shop: Shop,
    home: Path,
    script: list[list[tuple[str, dict[str, Any]]]],
    *,
    session_id: str | None,
    principal: str | None = "user-7",
    bound: bool = True,
) -> list[ToolResultBlock]:
    with serving(FakeAnthropic(script)) as url:
        options = options_for(shop, url, home, session_id)
        if not bound:
            async with ClaudeSDKClient(options) as plain:
                return await results(plain, "go")
        async with client(options, principal=principal) as claude:
            return await results(claude, "go")


def test_the_tool_has_the_schema_and_annotations_without_the_key() -> None:
    @tool.write(remote_idempotent=True, registry=None)
    async def charge_card(
        customer: str, amount_cents: int, idempotency_key: str | None = None
    ) -> str:
        """Charge a customer's card."""
        return "ch"

    made = as_tool(charge_card)
    schema: Any = made.input_schema
    assert ("charge_card", "Charge a customer's card.") == (made.name, made.description)
    assert ["customer", "amount_cents"] == list(schema["properties"])
    assert made.annotations is not None
    hints = made.annotations.model_dump(by_alias=True, exclude_none=True)
    assert {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": False} == {
        k: v for k, v in hints.items() if k != "openWorldHint"
    }


async def test_a_repeated_write_in_a_session_runs_once(tmp_path: Path) -> None:
    shop = Shop()
    out = await converse(
        shop, tmp_path, [[(CHARGE, ARGS)], [(CHARGE, ARGS)]], session_id=str(uuid.uuid4())
    )
    assert 1 == len(shop.charges)
    assert ['{"charge": "ch_1"}'] * 2 == [text_of(b) for b in out]


async def test_sessions_and_principals_are_isolated(tmp_path: Path) -> None:
    """Another session, and another principal in the same session id: each charges."""
    shop = Shop()
    first = str(uuid.uuid4())
    await converse(shop, tmp_path / "a", [[(CHARGE, ARGS)]], session_id=first)
    await converse(shop, tmp_path / "b", [[(CHARGE, ARGS)]], session_id=str(uuid.uuid4()))
    await converse(shop, tmp_path / "c", [[(CHARGE, ARGS)]], session_id=first, principal="u-2")
    assert 3 == len(shop.charges)


async def test_an_unknown_outcome_reaches_the_model_as_the_hint(tmp_path: Path) -> None:
    shop = Shop()
    out = await converse(
        shop,
        tmp_path,
        [[(EMAIL, {"to": "a@x"})], [(EMAIL, {"to": "a@x"})]],
        session_id=str(uuid.uuid4()),
    )
    hint = OutcomeUnknownError("x", key=None).llm_hint
    assert [hint, hint] == [text_of(b) for b in out]
    assert all(b.is_error for b in out)
    assert ["a@x"] == shop.sent


async def test_without_a_conversation_a_write_fails_closed(tmp_path: Path) -> None:
    """The SDK's own client (nothing bound): the model reads the refusal, nothing is
    charged; so does a client whose options name no session."""
    shop = Shop()
    hint = SessionRequiredError("x").llm_hint
    plain = await converse(shop, tmp_path / "a", [[(CHARGE, ARGS)]], session_id=None, bound=False)
    unnamed = await converse(shop, tmp_path / "b", [[(CHARGE, ARGS)]], session_id=None)
    assert [hint, hint] == [text_of(b) for b in plain + unnamed]
    assert [] == shop.charges
