"""The DBOS application of the engine tests, run as a process that may be SIGKILLed and
started again (DBOS then recovers its pending workflows). argv: directory, mode, store URL,
DBOS's system database URL."""

from __future__ import annotations

import json
import os
import sys

from dbos import DBOS, SetWorkflowID

from retrysafe import tool
from retrysafe.integrations.dbos import step
from tests.engines.units import UNITS, after_charge, charge_body, note

DIRECTORY, MODE, STORE, SYSTEM_DB = sys.argv[1:5]


@tool.write(store=STORE, lease_seconds=2, wait_seconds=15, checkpoint=True)
def charge(unit: int) -> str:
    """Charge one unit."""
    return charge_body(DIRECTORY, unit, checkpoint=True)


def unit_body(unit: int) -> str:
    note(DIRECTORY, "starts", str(unit))
    result = charge_body(DIRECTORY, unit) if MODE == "naive" else charge(unit)
    after_charge(DIRECTORY, unit)
    return result


RETRIES = {"retries_allowed": True, "interval_seconds": 0.1, "max_attempts": 4}
if MODE == "naive":
    unit_step = DBOS.step(**RETRIES)(unit_body)
else:
    unit_step = step(**RETRIES)(unit_body)


@DBOS.workflow()
def unit_workflow(unit: int) -> str:
    return unit_step(unit)


def main() -> None:
    DBOS(config={"name": "engine-tests", "system_database_url": SYSTEM_DB})
    DBOS.launch()  # recovers the workflows a killed process left pending
    outcomes_path = os.path.join(DIRECTORY, "outcomes.jsonl")
    done = set()
    if os.path.exists(outcomes_path):
        with open(outcomes_path) as f:
            done = {json.loads(line)[0] for line in f}
    for unit in range(UNITS):  # one at a time: a kill takes only its own unit down
        if unit in done:
            continue
        with SetWorkflowID(f"unit-{unit}"):
            handle = DBOS.start_workflow(unit_workflow, unit)
        try:
            handle.get_result()
            outcome: object = "ok"
        except Exception as error:  # what DBOS recorded: the error, unpickled
            outcome = [type(error).__name__, str(error)]
        with open(outcomes_path, "a") as f:
            f.write(json.dumps([unit, outcome]) + "\n")
    DBOS.destroy()


if __name__ == "__main__":
    main()
