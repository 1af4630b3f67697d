"""Type-checked by mypy and pyright (strict), never run: every public decorator keeps the
function's parameters and result, and adds the attributes the README documents."""

from __future__ import annotations

from typing import Any

from typing_extensions import assert_type

from retrysafe import (
    CachedTool,
    CacheInfo,
    IdempKey,
    IdempotencyHandle,
    IdempotentTool,
    cache_tool,
    idempotent,
    tool,
)


@idempotent
def pay(customer: str, amount: int) -> bool:
    return True


@idempotent(scope="payments", remote_idempotent=True)
async def charge(customer: str, amount: int, idempotency_key: str | None = None) -> str:
    return "ch_1"


@cache_tool
def rate(base: str) -> float:
    return 1.0


@cache_tool(ttl_seconds=60)
async def forecast(city: str, days: int = 3) -> list[str]:
    return []


@tool.read
def weather(city: str) -> str:
    """Weather."""
    return city


@tool.write(remote_idempotent=True, registry=None)
async def refund(customer: str, idempotency_key: str | None = None) -> dict[str, str]:
    """Refund."""
    return {}


@tool.destructive
def delete_account(customer: str) -> None:
    """Delete."""


async def use() -> None:
    assert_type(pay("c", 1), bool)
    assert_type(await charge("c", 1), str)
    assert_type(await charge("c", 1, idempotency_key="order-7"), str)
    assert_type(rate("EUR"), float)
    assert_type(await forecast("Oslo"), list[str])
    assert_type(weather("Paris"), str)
    assert_type(await refund("c"), dict[str, str])
    assert_type(delete_account("c"), None)

    # The attributes the README documents.
    assert_type(pay.idempotency, IdempotencyHandle)
    assert_type(pay.idempotency.key_for("c", 1), IdempKey)
    assert_type(rate.cache, CacheInfo[Any])
    assert_type(rate.cache.stats(), dict[str, int])
    assert_type(weather.cache.invalidate("Paris"), bool)
    assert_type(refund.idempotency, IdempotencyHandle)
    as_protocol: IdempotentTool[[str, int], bool] = pay
    cached: CachedTool[[str], float] = rate
    assert_type(as_protocol("c", 1), bool)
    assert_type(cached.cache, CacheInfo[Any])
    assert_type(pay.__name__, str)

    # Wrong arguments are caught, as on the undecorated function.
    pay("c", "1")  # type: ignore[arg-type]
    weather(1)  # type: ignore[arg-type]
    # The key is a parameter only where the function declares one.
    pay("c", 1, idempotency_key="k")  # type: ignore[call-arg]
    # A READ tool has no records; a write has no cache.
    print(weather.idempotency)  # type: ignore[attr-defined]
    print(refund.cache)  # type: ignore[attr-defined]
