"""The side effect the engine examples share: a charge that is not idempotent at the remote
(like an e-mail), written to a file so that every worker process of an engine counts it,
and a follow-up call that fails once after it (the engine retries the unit)."""

from __future__ import annotations

import os
import tempfile

if "EXAMPLE_LEDGER" not in os.environ:  # (set for the engine's worker processes too)
    os.environ["EXAMPLE_LEDGER"] = tempfile.mkdtemp(prefix="retrysafe-")
DIRECTORY = os.environ["EXAMPLE_LEDGER"]


def send_charge(order_id: str) -> str:
    with open(os.path.join(DIRECTORY, "charges"), "a") as ledger:
        ledger.write(order_id + "\n")
    return f"ch_{order_id}"


def notify_shipping(order_id: str) -> None:
    """Fails the first time (a timeout after the charge went through)."""
    marker = os.path.join(DIRECTORY, f"notified-{order_id}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise ConnectionError("shipping service timed out")


def report() -> str:
    path = os.path.join(DIRECTORY, "charges")
    with open(path) as ledger:
        charges = ledger.read().split()
    retried = sum(1 for name in os.listdir(DIRECTORY) if name.startswith("notified-"))
    return f"engine retries: {retried}, charges made: {len(charges)}"
