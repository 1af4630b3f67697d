"""How frameworks call tools: the key slot, the signature they read, sessions, decorator order."""

from __future__ import annotations

import inspect
import typing
from typing import Any

import pytest

from retrysafe import (
    Effect,
    IdempKey,
    SessionRequiredError,
    cache_tool,
    current_key,
    idempotent,
    session,
    tool,
)


class Payments:
    """A remote that deduplicates by idempotency key, and counts what it really did."""

    def __init__(self) -> None:
        self.charges: list[tuple[str, int, str | None]] = []

    def charge(self, customer: str, amount: int, key: str | None) -> dict[str, Any]:
        self.charges.append((customer, amount, key))
        return {"id": f"ch_{len(self.charges)}", "key": key}


@pytest.mark.anyio
async def test_positional_none_key_is_filled_and_the_write_runs_once() -> None:
    """openai-agents passes every parameter positionally, None for the key: it is filled."""
    remote = Payments()

    @tool.write(remote_idempotent=True, registry=None)
    async def charge_card(
        customer: str, amount_cents: int, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Charge a card."""
        assert idempotency_key == str(current_key())
        return remote.charge(customer, amount_cents, idempotency_key)

    async with session("conv-1"):
        first = await charge_card("cus_42", 1999, None)
        second = await charge_card("cus_42", 1999, None)
        third = await charge_card("cus_42", amount_cents=1999)
    assert first == second == third
    assert 1 == len(remote.charges)
    assert str(remote.charges[0][2]).startswith("ik_")


def test_positional_explicit_key_is_the_callers() -> None:
    """A string in the key slot, positional or keyword, is the caller's own key."""
    remote = Payments()

    @idempotent(effect=Effect.WRITE)
    def charge(customer: str, amount: int, idempotency_key: str | None = None) -> Any:
        return remote.charge(customer, amount, idempotency_key)

    with session("conv-1"):
        charge("cus_1", 5, "order-77")
        charge("cus_1", 5, idempotency_key="order-77")
    assert [("cus_1", 5, "order-77")] == remote.charges


def test_the_key_parameter_is_hidden_from_signature_and_hints() -> None:
    """Frameworks read inspect.signature and type hints: neither shows idempotency_key."""

    @tool.write(registry=None)
    def book(room: str, nights: int = 1, idempotency_key: str | None = None) -> str:
        """Book a room."""
        return room

    @idempotent(scope="pay")
    async def pay(amount: int, *, idempotency_key: str | None = None) -> int:
        return amount

    for fn in (book, pay):
        assert "idempotency_key" not in inspect.signature(fn).parameters
        assert "idempotency_key" not in typing.get_type_hints(fn)
    assert ["room", "nights"] == list(inspect.signature(book).parameters)


def test_a_call_that_does_not_bind_raises_before_any_claim() -> None:
    """A TypeError from binding leaves no record: the next, correct call runs normally."""
    remote = Payments()

    @idempotent(effect=Effect.WRITE)
    def charge(customer: str, amount: int, idempotency_key: str | None = None) -> Any:
        return remote.charge(customer, amount, idempotency_key)

    with session("conv-1"):
        with pytest.raises(TypeError):
            charge("cus_1", 5, None, "extra")
        with pytest.raises(TypeError):
            charge("cus_1", 5, idempotency_key=None, coupon="x")
        with pytest.raises(TypeError):
            charge("cus_1")
        result = charge("cus_1", 5)
    assert [("cus_1", 5, result["key"])] == remote.charges


def test_writes_outside_a_session_raise_session_required() -> None:
    """No session and no explicit scope: SessionRequiredError, before the tool runs."""
    remote = Payments()

    @tool.write(registry=None)
    def charge(customer: str, amount: int) -> Any:
        """Charge."""
        return remote.charge(customer, amount, None)

    @idempotent(effect=Effect.IDEMPOTENT)
    def upsert(name: str) -> str:
        return name

    for call in (lambda: charge("cus_1", 5), lambda: upsert("x")):
        with pytest.raises(SessionRequiredError) as info:
            call()
        assert "session" in info.value.llm_hint
    assert [] == remote.charges


def test_explicit_scopes_and_keys_need_no_session() -> None:
    """idempotent(scope=...) and a caller's explicit key work outside any session."""

    @idempotent(scope="refund", effect=Effect.WRITE)
    def refund(order_id: str) -> str:
        return order_id

    @idempotent(effect=Effect.WRITE)
    def send(to: str, idempotency_key: str | None = None) -> str:
        return f"{to}:{idempotency_key}"

    assert "o-1" == refund("o-1")
    assert "a@b:mail-1" == send("a@b", idempotency_key="mail-1")


def test_two_conversations_with_identical_arguments_each_run() -> None:
    """The record is per conversation: a second conversation's identical order is placed."""
    remote = Payments()

    @tool.write(registry=None)
    def order(sku: str, qty: int) -> Any:
        """Order."""
        return remote.charge(sku, qty, None)

    with session("conv-1"):
        order("sku-1", 2)
        order("sku-1", 2)
    with session("conv-2"):
        order("sku-1", 2)
    with session("conv-2", tenant="other"):
        order("sku-1", 2)
    assert 3 == len(remote.charges)


def test_framework_tool_objects_are_refused_with_the_right_order() -> None:
    """Given a framework's tool object, each decorator names the right stacking order."""
    pytest.importorskip("langchain_core")
    pytest.importorskip("agents")
    from agents import function_tool
    from langchain_core.tools import tool as langchain_tool

    def lookup(city: str) -> str:
        """Look up a city."""
        return city

    objects = [langchain_tool(lookup), function_tool(lookup)]
    decorators: list[Any] = [
        tool.write,
        tool.read,
        idempotent,
        cache_tool,
        lambda obj: idempotent(scope="x")(obj),
    ]
    for obj in objects:
        for decorate in decorators:
            with pytest.raises(TypeError, match="below the framework's tool decorator"):
                decorate(obj)


def test_explicit_idempkey_objects_pass_through() -> None:
    """An IdempKey passed as the key is used as it is."""
    seen: list[str | None] = []

    @idempotent(effect=Effect.WRITE)
    def send(to: str, idempotency_key: Any = None) -> str:
        seen.append(str(idempotency_key))
        return to

    key = IdempKey.explicit("mail-9")
    with session("conv-1"):
        send("a", idempotency_key=key)
        send("a", idempotency_key=key)
    assert ["mail-9"] == seen
