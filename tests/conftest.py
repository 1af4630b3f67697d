from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from retrysafe.stores import MemoryStore, Store

#: Frameworks whose pins clash with the main venv's run in .venv-compat (`make test-compat`).
collect_ignore = ["compat"]

settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "slow", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

VECTORS = Path(__file__).parent / "data" / "jcs"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on asyncio and on trio."""
    return str(request.param)


# Under CI every test must run: a skip there (a server not started, a test extra not
# installed, so an `importorskip` gives up) fails instead, but for the checks that only
# `make test-slow` runs.
_CI_MAY_SKIP = ("make test-slow only",)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and os.environ.get("CI") and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else "")
        if not any(allowed in reason for allowed in _CI_MAY_SKIP):
            report.outcome = "failed"
            report.longrepr = f"skipped under CI, where every test must run: {reason}"


def _server_url(variable: str, what: str) -> str:
    """The URL of a real server that `make test` started, from `variable`; skipped outside
    `make test` (and so failed under CI)."""
    url = os.environ.get(variable)
    if not url:
        pytest.skip(f"{variable} not set: {what} is started by `make test`")
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real redis-server started by `make test`."""
    return _server_url("REDIS_URL", "a redis-server")


@pytest.fixture(scope="session")
def redis_cluster_url() -> str:
    """The real 6-node Redis Cluster started by `make test`."""
    return _server_url("REDIS_CLUSTER_URL", "a Redis Cluster")


@pytest.fixture(params=["redis", "cluster"])
def shared_url(request: pytest.FixtureRequest) -> str:
    """The cross-process tests run on a real Redis and on a real Redis Cluster."""
    fixture = "redis_cluster_url" if request.param == "cluster" else "redis_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture(params=["memory", "redis", "cluster", "sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Every cache, record and guard test runs on the memory store, a real Redis, a real
    Redis Cluster, a SQLite file and a real PostgreSQL."""
    return str(request.param)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The real PostgreSQL started by `make test`."""
    return _server_url("POSTGRES_URL", "a PostgreSQL server")


def _make_store(kind: str, request: pytest.FixtureRequest, prefix: str | None = None) -> Store:
    """A store of ``kind`` under ``prefix`` (a fresh one when None; SQLite stores of a test
    share one file)."""
    prefix = prefix or f"test-{uuid.uuid4().hex[:12]}"
    if kind == "memory":
        return MemoryStore(max_size=10_000)
    if kind == "sqlite":
        from retrysafe.stores import SQLiteStore

        return SQLiteStore(request.getfixturevalue("tmp_path") / "store.db", prefix=prefix)
    if kind == "postgres":
        from retrysafe.stores import PostgresStore

        url = request.getfixturevalue("postgres_url")
        return PostgresStore(url, prefix=prefix)
    from retrysafe.stores import RedisStore

    fixture = "redis_cluster_url" if kind == "cluster" else "redis_url"
    url = request.getfixturevalue(fixture)
    return RedisStore(url, prefix=prefix)


@pytest.fixture
def store(store_kind: str, request: pytest.FixtureRequest) -> Iterator[Store]:
    """A fresh store for a sync test, emptied afterwards."""
    made = _make_store(store_kind, request)
    yield made
    made.clear("")
    if hasattr(made, "close"):
        made.close()


@pytest.fixture
async def astore(store_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A fresh store for an async test; its event-loop client is closed in that loop."""
    made = _make_store(store_kind, request)
    yield made
    await made.aclear("")
    closer: Any = getattr(made, "aclose", None)
    if closer is not None:
        await closer()
    if hasattr(made, "close"):
        made.close()
