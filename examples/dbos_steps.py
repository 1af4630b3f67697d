"""retrysafe with DBOS: a step charges, then a follow-up call times out and DBOS retries the
step; the charge is made once (and once after a crash: a recovered step replays it). Run
it: `python examples/dbos_steps.py` (DBOS's system database in SQLite here; PostgreSQL in
production).
"""

from __future__ import annotations

import os

from dbos import DBOS

from _ledger import DIRECTORY, notify_shipping, report, send_charge
from retrysafe import tool
from retrysafe.integrations.dbos import step

STORE = f"sqlite:///{os.path.join(DIRECTORY, 'records.db')}"


@tool.write(store=STORE, registry=None)
def charge_card(order_id: str) -> str:
    """Charge an order's card."""
    return send_charge(order_id)


@step(retries_allowed=True, interval_seconds=0.1)  # the one line, in place of DBOS.step
def charge_and_notify(order_id: str) -> str:
    charge = charge_card(order_id)  # replayed on the retry: same workflow and step id
    notify_shipping(order_id)
    return charge


@DBOS.workflow()
def checkout(order_id: str) -> str:
    return charge_and_notify(order_id)


if __name__ == "__main__":
    DBOS(config={"name": "shop", "system_database_url": f"sqlite:///{DIRECTORY}/dbos.db"})
    DBOS.launch()
    print(checkout("order-7"))
    DBOS.destroy()
    print(report())
