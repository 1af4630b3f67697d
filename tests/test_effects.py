"""Effect tags, MCP annotations, sessions."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import pytest

from retrysafe import (
    Effect,
    current_session,
    effect,
    effect_from_mcp,
    get_effect,
    mcp_annotations,
    session,
)


def test_parse_is_case_insensitive_and_strict() -> None:
    """'Write', ' READ ' parse; unknown names are refused, naming the choices."""
    assert Effect.WRITE is Effect.parse("Write")
    assert Effect.READ is Effect.parse(" READ ")
    assert "write" == str(Effect.WRITE)
    with pytest.raises(
        ValueError, match=r"unknown effect 'mutate'.*read, idempotent, write, destructive"
    ):
        Effect.parse("mutate")


def test_tagging_keeps_the_function_and_follows_wrappers() -> None:
    """@effect returns the same function; get_effect sees through functools.wraps."""

    async def send(to: str) -> None: ...

    tagged = effect("write")(send)
    assert tagged is send
    assert Effect.WRITE is get_effect(send)

    @functools.wraps(send)
    async def wrapper(to: str) -> None: ...

    assert Effect.WRITE is get_effect(wrapper)
    assert get_effect(lambda: None) is None
    with pytest.raises(ValueError, match="already tagged write"):
        effect(Effect.READ)(send)


def test_methods_can_be_tagged() -> None:
    """Methods, staticmethods and classmethods carry their tag."""

    class Tools:
        @effect(Effect.READ)
        def a(self) -> None: ...

        @staticmethod
        @effect(Effect.DESTRUCTIVE)
        def b() -> None: ...

    assert Effect.READ is get_effect(Tools().a)
    assert Effect.DESTRUCTIVE is get_effect(Tools.b)


@pytest.mark.parametrize("kind", list(Effect))
def test_mcp_round_trip(kind: Effect) -> None:
    """mcp_annotations and effect_from_mcp are inverse for every effect."""
    assert kind is effect_from_mcp(mcp_annotations(kind))


def test_mcp_defaults() -> None:
    """Missing hints take MCP's defaults: not read-only, destructive; untagged is DESTRUCTIVE."""
    assert Effect.DESTRUCTIVE is effect_from_mcp({})
    assert Effect.WRITE is effect_from_mcp({"destructiveHint": False})
    assert Effect.IDEMPOTENT is effect_from_mcp({"destructiveHint": False, "idempotentHint": True})
    assert Effect.READ is effect_from_mcp({"readOnlyHint": True, "destructiveHint": True})
    assert {
        "readOnlyHint": False,
        "destructiveHint": True,
        "idempotentHint": False,
        "openWorldHint": True,
    } == (mcp_annotations(lambda: None))


@pytest.mark.anyio
async def test_sessions_are_context_local() -> None:
    """Concurrent tasks each see their own session; async and sync forms nest and restore."""
    seen: dict[str, str | None] = {}

    async def agent(name: str) -> None:
        async with session(name, tenant="acme"):
            await anyio.sleep(0.01)
            s = current_session()
            seen[name] = s.scope if s else None

    async with anyio.create_task_group() as tg:
        for name in ("a", "b", "c"):
            tg.start_soon(agent, name)
    assert {"a": "t=acme/c=a", "b": "t=acme/c=b", "c": "t=acme/c=c"} == seen
    assert current_session() is None
    with session("outer"):
        with session("inner"):
            assert "inner" == current_session().id  # type: ignore[union-attr]
        assert "outer" == current_session().id  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        session("")


def test_the_four_policy_helpers_with_untagged_as_destructive() -> None:
    from retrysafe import has_side_effect, is_destructive, is_read_only, is_retry_safe

    @effect(Effect.READ)
    def read() -> None: ...

    @effect(Effect.IDEMPOTENT)
    def put() -> None: ...

    @effect(Effect.WRITE)
    def charge() -> None: ...

    @effect(Effect.DESTRUCTIVE)
    def delete() -> None: ...

    def untagged() -> None: ...

    table = {
        fn.__name__: (is_retry_safe(fn), is_read_only(fn), is_destructive(fn), has_side_effect(fn))
        for fn in (read, put, charge, delete, untagged)
    }
    assert {
        "read": (True, True, False, False),
        "put": (True, False, False, True),
        "charge": (False, False, False, True),
        "delete": (False, False, True, True),
        "untagged": (False, False, True, True),
    } == table
    assert is_retry_safe("idempotent") and is_read_only(Effect.READ)
    wrapped = functools.wraps(read)(lambda: None)
    assert is_read_only(wrapped)  # through functools.wraps


def test_custom_tags_are_kept_beside_the_effect_and_queried() -> None:
    """effect() keeps tags of one's own for routing; they add up, follow wrappers, never
    loosen policy (tags alone: untagged, treated as DESTRUCTIVE) and a registry finds its
    tools by them."""
    from retrysafe import ToolRegistry, get_tags, has_tag, is_destructive, tool

    @effect(Effect.WRITE, "payments")
    @effect("pii")
    def charge(card: str) -> str:
        return card

    assert Effect.WRITE is get_effect(charge)
    assert frozenset({"payments", "pii"}) == get_tags(charge)
    assert has_tag(charge, "pii") and has_tag(charge, "write") and not has_tag(charge, "read")

    @effect("sends_email")
    def notify(to: str) -> None: ...

    assert get_effect(notify) is None and is_destructive(notify)  # a tag never loosens policy

    registry = ToolRegistry()

    @tool.write(registry=registry)
    @effect("payments")
    def refund(charge_id: str) -> str:
        """Refund a charge."""
        return charge_id

    @tool.read(registry=registry)
    def balance(account: str) -> int:
        """An account's balance."""
        return 0

    assert ["refund"] == [spec.name for spec in registry.tagged("payments")]
    assert ["balance"] == [spec.name for spec in registry.tagged("read")]
    assert {"payments"} == get_tags(refund)  # through the tool's wrapper


@pytest.mark.parametrize(
    ("kinds", "said"),
    [
        ((), "needs an effect or a tag"),
        (("Payments",), "custom tag"),
        (("has space",), "custom tag"),
        (("x" * 65,), "custom tag"),
        ((Effect.READ, "write"), "two effects"),
        ((3,), "unknown effect 3"),
    ],
)
def test_a_bad_tag_is_refused_naming_the_rule(kinds: tuple[Any, ...], said: str) -> None:
    with pytest.raises(ValueError, match=said):
        effect(*kinds)
