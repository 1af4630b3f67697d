"""Every framework example runs offline and charges once though the model repeats the call
and the first response is lost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    "name",
    [
        "mcp_server",
        "pydantic_ai_agent",
        "openai_agents_run",
        "langgraph_tools",
        "raw_sdk_loop",
        "google_adk_agent",
        "claude_agent_sdk_tools",
        "llama_index_agent",
        "strands_agent",
    ],
)
def test_example_charges_once(name: str) -> None:
    """The example exits 0 and reports two requests sent (one lost) and one charge."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=EXAMPLES,
    )
    assert 0 == done.returncode, done.stderr[-3000:]
    assert "requests sent: 2, charges made: 1" in done.stdout


@pytest.mark.parametrize("name", ["celery_tasks", "temporal_activity", "ray_tasks", "dbos_steps"])
def test_engine_example_charges_once(name: str, tmp_path: Path) -> None:
    """The engine retries the unit after its charge; the charge is made once."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=EXAMPLES,
        env={**os.environ, "EXAMPLE_LEDGER": str(tmp_path)},
    )
    assert 0 == done.returncode, done.stderr[-3000:]
    assert "engine retries: 1, charges made: 1" in done.stdout, done.stdout[-2000:]
