"""Ray, run for real (a local cluster started by the driver): 40 units (see units.py), the
task's worker SIGKILLed right after a charge (Ray re-executes the task), transient errors
after one (``retry_exceptions``). Naively 16 units are charged twice; with ``@bound`` none
is. The tool and the task are defined in the driver's ``__main__`` (Ray sends them by
value), with the store given by URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from .units import KILLED, UNITS, judge

ROOT = Path(__file__).resolve().parents[2]

DRIVER = textwrap.dedent(
    """
    import json, os, sys, tempfile
    import ray
    from retrysafe import tool
    from retrysafe.integrations.ray import bound
    from tests.engines.units import Transient, UNITS, after_charge, charge_body, note

    DIRECTORY, MODE, STORE, OUT = sys.argv[1:5]

    @tool.write(store=STORE, lease_seconds=2, wait_seconds=15, checkpoint=True)
    def charge(unit: int) -> str:
        \"\"\"Charge one unit.\"\"\"
        return charge_body(DIRECTORY, unit, checkpoint=True)

    def unit_body(unit: int) -> str:
        note(DIRECTORY, "starts", str(unit))
        result = charge_body(DIRECTORY, unit) if MODE == "naive" else charge(unit)
        after_charge(DIRECTORY, unit)
        return result

    task = ray.remote(max_retries=3, retry_exceptions=[Transient])(
        unit_body if MODE == "naive" else bound(unit_body)
    )
    TEMP = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # a short path: Ray's sockets live there
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=TEMP)
    refs = {unit: task.remote(unit) for unit in range(UNITS)}
    outcomes = {}
    for unit, ref in refs.items():
        try:
            ray.get(ref, timeout=120)
            outcomes[unit] = "ok"
        except ray.exceptions.RayTaskError as error:
            cause = error.cause
            outcomes[unit] = [type(cause).__name__, str(cause)]
        except ray.exceptions.RayError as error:
            outcomes[unit] = [type(error).__name__, str(error)]
    ray.shutdown()
    import shutil
    shutil.rmtree(TEMP, ignore_errors=True)
    with open(OUT, "w") as f:
        json.dump(outcomes, f)
    """
)


def _run(directory: Path, mode: str, store: str) -> dict[int, Any]:
    script = directory / "driver.py"
    script.write_text(DRIVER)
    out = directory / "outcomes.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0")
    with open(directory / "driver.log", "w") as log:
        subprocess.run(
            [sys.executable, str(script), str(directory), mode, store, str(out)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            check=True,
            timeout=400,
        )
    found = json.loads(out.read_text())
    return {int(k): v if isinstance(v, str) else tuple(v) for k, v in found.items()}


def test_naive_tasks_charge_twice(tmp_path: Path) -> None:
    outcomes = _run(tmp_path, "naive", f"sqlite:///{tmp_path / 'unused.db'}")
    report = judge(tmp_path, outcomes)
    print(report)
    assert 16 == report["duplicates"], report


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_tasks_charge_once_under_kills_and_retries(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = (
        request.getfixturevalue("redis_url")
        if kind == "redis"
        else f"sqlite:///{tmp_path / 'records.db'}"
    )
    outcomes = _run(tmp_path, "retrysafe", store)
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
