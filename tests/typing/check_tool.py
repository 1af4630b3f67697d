"""Type-checked by mypy (strict), never run: @tool, @cache_tool and @idempotent keep signatures."""

from __future__ import annotations

from typing_extensions import assert_type

from retrysafe import Effect, cache_tool, tool


@tool.read
async def get_weather(city: str) -> dict[str, str]:
    """Weather."""
    return {"city": city}


@tool(effect=Effect.WRITE, remote_idempotent=True)
def charge(customer: str, amount: int) -> bool:
    """Charge."""
    return True


@cache_tool(ttl_seconds=60)
def rate(base: str) -> float:
    return 1.0


async def use() -> None:
    assert_type(await get_weather("Paris"), dict[str, str])
    assert_type(charge("c", 1), bool)
    assert_type(rate("EUR"), float)
    charge("c", "1")  # type: ignore[arg-type]
