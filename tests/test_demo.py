"""The demo: with retrysafe, no duplicate side effect in any mode; the naive run shows why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _demo(*args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "retrysafe", "demo", "--json", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == out.returncode, out.stderr
    return dict(json.loads(out.stdout))


def test_demo_in_memory() -> None:
    """Default in-memory swarm: retrysafe makes zero duplicates; naive makes some."""
    figures = _demo("--agents", "30", "--seed", "11")
    safe, naive = figures["retrysafe"], figures["naive"]
    assert isinstance(safe, dict) and isinstance(naive, dict)
    assert 0 == safe["duplicate_charges"] == safe["duplicate_emails"]
    assert naive["duplicate_charges"] + naive["duplicate_emails"] > 0
    assert safe["cache_hits"] > 0
    assert safe["remote_calls"] < naive["remote_calls"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_demo_is_repeatable_and_clean(seed: int) -> None:
    """Different seeds: always zero duplicates with retrysafe."""
    figures = _demo("--agents", "20", "--orders", "2", "--seed", str(seed))
    safe = figures["retrysafe"]
    assert isinstance(safe, dict)
    assert (0, 0, 0) == (safe["duplicate_charges"], safe["duplicate_emails"], safe["failed_orders"])


def test_demo_swarm_of_processes_through_redis(redis_url: str) -> None:
    """--redis URL --processes 3: the swarm shares Redis, and still no duplicates."""
    figures = _demo("--agents", "24", "--orders", "2", "--redis", redis_url, "--processes", "3")
    safe = figures["retrysafe"]
    assert isinstance(safe, dict)
    assert 0 == safe["duplicate_charges"] == safe["duplicate_emails"]


def test_demo_text_output() -> None:
    """The table and the plain verdict are printed."""
    out = subprocess.run(
        [sys.executable, "-m", "retrysafe", "demo", "--agents", "10"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert 0 == out.returncode
    assert "duplicate charges" in out.stdout
    assert "With retrysafe: zero duplicate side effects" in out.stdout


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_demo_swarm_of_processes_on_a_database(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """--store sqlite:///... or postgresql://... --processes 4: no duplicates, and the naive
    swarm's duplicates are counted from the same shared books."""
    url = (
        f"sqlite:///{tmp_path / 'demo.db'}"
        if kind == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    figures = _demo("--agents", "24", "--orders", "2", "--store", url, "--processes", "4")
    safe, naive = figures["retrysafe"], figures["naive"]
    assert isinstance(safe, dict) and isinstance(naive, dict)
    assert 0 == safe["duplicate_charges"] == safe["duplicate_emails"]
    assert naive["duplicate_charges"] + naive["duplicate_emails"] > 0


def test_store_init_creates_the_schema(tmp_path: Path, postgres_url: str) -> None:
    for url in (f"sqlite:///{tmp_path / 'init.db'}", postgres_url):
        out = subprocess.run(
            [sys.executable, "-m", "retrysafe", "store", "init", url],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert 0 == out.returncode, out.stderr
        assert "is ready" in out.stdout
    sql = subprocess.run(
        [sys.executable, "-m", "retrysafe", "store", "sql"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "CREATE OR REPLACE FUNCTION retrysafe_claim" in sql.stdout


def test_processes_need_redis() -> None:
    """--processes without --store is a usage error."""
    out = subprocess.run(
        [sys.executable, "-m", "retrysafe", "demo", "--processes", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert 2 == out.returncode
    assert "--store" in out.stderr
