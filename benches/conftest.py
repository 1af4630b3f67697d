from __future__ import annotations

import os

import pytest


@pytest.fixture(params=["asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Benchmarks time one backend: asyncio (the anchors are asyncio-only)."""
    return str(request.param)


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("REDIS_URL not set (run through `make bench`)")
    return url
