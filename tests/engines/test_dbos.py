"""DBOS on PostgreSQL, run for real: an application process runs 40 unit workflows (see
units.py), one step each; it is SIGKILLed right after a charge and started again (DBOS
recovers the pending workflow and runs the step again), and a transient error after a
charge is retried by the step. Naively 16 units are charged twice; with retrysafe's
``step`` none is, and a unit killed inside its tool ends with DBOS holding the
OutcomeUnknownError itself (it pickles), not retried."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from .units import KILLED, UNITS, judge

ROOT = Path(__file__).resolve().parents[2]


def _run(directory: Path, mode: str, store: str, postgres_url: str) -> dict[int, Any]:
    system_db = postgres_url.rsplit("/", 1)[0] + f"/dbos_{uuid.uuid4().hex[:10]}"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    runs = 0
    outcomes_path = directory / "outcomes.jsonl"
    with open(directory / "app.log", "w") as log:
        while True:
            runs += 1
            assert runs <= len(KILLED) + 2, "the application keeps dying: app.log"
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tests.engines.dbos_app",
                    str(directory),
                    mode,
                    store,
                    system_db,
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
                timeout=300,
            )
            if done.returncode == 0:
                break
            assert done.returncode == -9, f"exit {done.returncode}: app.log"  # our SIGKILL
    found: dict[int, Any] = {}
    for line in outcomes_path.read_text().splitlines():
        unit, outcome = json.loads(line)
        found[unit] = outcome if isinstance(outcome, str) else tuple(outcome)
    return found


def test_naive_steps_charge_twice(postgres_url: str, tmp_path: Path) -> None:
    outcomes = _run(tmp_path, "naive", f"sqlite:///{tmp_path / 'unused.db'}", postgres_url)
    report = judge(tmp_path, outcomes)
    print(report)
    assert 16 == report["duplicates"], report


@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
def test_steps_charge_once_under_kills_and_retries(
    kind: str, postgres_url: str, tmp_path: Path
) -> None:
    store = postgres_url if kind == "postgres" else f"sqlite:///{tmp_path / 'records.db'}"
    outcomes = _run(tmp_path, "retrysafe", store, postgres_url)
    report = judge(tmp_path, outcomes)
    print(kind, report)
    assert 0 == report["duplicates"], report
    assert [] == report["never_charged"], report
    for unit in range(UNITS):
        if unit in KILLED:
            assert "OutcomeUnknownError" == outcomes[unit][0], outcomes[unit]
            assert "ik_" in outcomes[unit][1]
        else:
            assert "ok" == outcomes[unit], (unit, outcomes[unit])
