"""The charge units every engine runs (the issue's scenario), and how a run is judged.

40 units; each charges once through a write tool that appends to a ledger (one line per
side effect, ``O_APPEND``). Units 0-7: the worker is SIGKILLed right after the charge,
inside the tool (its record cannot complete: the retry must not charge again; the unit ends
UNKNOWN, as a non-retryable failure naming its key). Units 8-15: a transient error right
after the tool returned (the engine retries the unit; the retry replays the charge). Units
16-17, where a test sets ``ENGINE_PRE_KILL``: the worker is SIGKILLed inside the tool
before its checkpoint (nothing can have been charged: the retry takes the record over and
charges). Each fault happens on a unit's first attempt only (a marker file says it happened).
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

UNITS = 40
KILLED = range(0, 8)
TRANSIENT = range(8, 16)
PRE_KILLED = range(16, 18)


class Transient(ConnectionError):
    """What a flaky follow-up call raises (the engines retry it)."""


def _once(directory: str, what: str, unit: int) -> bool:
    """True the first time ``what`` happens to ``unit`` (a marker file, atomically made)."""
    try:
        os.close(os.open(os.path.join(directory, f"{what}-{unit}"), os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


def note(directory: str, name: str, line: str) -> None:
    fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def charge_body(directory: str, unit: int, checkpoint: bool = False) -> str:
    """The side effect, then the kill for units 0-7 (first attempt). ``checkpoint``: inside
    an ``@idempotent(checkpoint=True)`` tool, mark the start first (a worker killed before it
    leaves a record the retry takes over: units 16-17 under ``ENGINE_PRE_KILL``)."""
    if checkpoint:
        from retrysafe import side_effect_started

        if (
            unit in PRE_KILLED
            and os.environ.get("ENGINE_PRE_KILL")
            and _once(directory, "pre-killed", unit)
        ):
            os.kill(os.getpid(), signal.SIGKILL)
        note(directory, "marks", str(unit))  # inside the tool: the record was ours
        side_effect_started()
        note(directory, "checkpoints", str(unit))  # the start is recorded in the store
    note(directory, "ledger", str(unit))
    if unit in KILLED and not os.environ.get("ENGINE_NO_KILL") and _once(directory, "killed", unit):
        os.kill(os.getpid(), signal.SIGKILL)
    return f"charged {unit}"


def after_charge(directory: str, unit: int) -> None:
    """The follow-up that fails once for units 8-15."""
    if unit in TRANSIENT and _once(directory, "failed", unit):
        raise Transient("connection reset by peer")


def ledger(directory: str | Path) -> Counter[int]:
    path = Path(directory) / "ledger"
    lines = path.read_text().split() if path.exists() else []
    return Counter(int(line) for line in lines)


def check_once(directory: str | Path, outcomes: dict[int, Any]) -> None:
    """What must hold with retrysafe, whatever a kill hit: no unit charged twice; a unit that
    completed was charged; a unit not charged ended UNKNOWN (killed between its checkpoint
    and its charge: retrysafe cannot know, and says so), never silently dropped; the units
    killed inside their own tool ended UNKNOWN, naming their key."""
    charges = ledger(directory)
    assert [] == [u for u, n in charges.items() if n > 1], charges
    for unit in range(UNITS):
        outcome = outcomes[unit]
        if outcome == "ok":
            assert 1 == charges[unit], (unit, charges[unit])
        else:
            assert "OutcomeUnknownError" == outcome[0] and "ik_" in outcome[1], (unit, outcome)
        if unit in KILLED:
            assert outcome != "ok", (unit, outcome)


def judge(directory: str | Path, outcomes: dict[int, Any]) -> dict[str, Any]:
    """The report of one run: duplicate charges, units never charged, and how each unit
    ended (``ok``, or the error's type name)."""
    charges = ledger(directory)
    return {
        "duplicates": sum(n - 1 for n in charges.values() if n > 1),
        "never_charged": sorted(u for u in range(UNITS) if charges[u] == 0),
        "outcomes": dict(Counter(o if isinstance(o, str) else o[0] for o in outcomes.values())),
    }
