"""Type-checked by mypy (strict), never run: retry decorators keep signatures and async-ness."""

from __future__ import annotations

from typing_extensions import assert_type

from retrysafe import RetryConfig, retry, with_retry


async def fetch(url: str, *, timeout: float = 1.0) -> bytes:
    return b""


def lookup(order_id: int) -> str:
    return ""


safe_fetch = with_retry(fetch, config=RetryConfig(max_attempts=5))


async def use() -> None:
    assert_type(await safe_fetch("u", timeout=2.0), bytes)
    assert_type(await decorated(1), int)
    await safe_fetch(1)  # type: ignore[arg-type]


safe_lookup = with_retry(lookup)
assert_type(safe_lookup(1), str)
safe_lookup("not an int")  # type: ignore[arg-type]


@retry
async def decorated(x: int) -> int:
    return x


@retry(max_attempts=2)
def decorated_sync(x: int) -> int:
    return x


assert_type(decorated_sync(1), int)
decorated_sync("x")  # type: ignore[arg-type]
