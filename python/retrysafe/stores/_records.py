"""The record types shared by the stores: what a claim returns, what a record holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Claim", "RecordView"]

# Record states (stored as these strings).
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a key.

    ``status``: ``"claimed"`` (run it; ``fence`` is yours, ``takeover`` if an expired owner
    was replaced), ``"completed"`` (``payload`` is the stored result), ``"in_progress"``
    (someone else runs it; ``lease_left`` seconds), ``"unknown"`` (a write was cut off;
    ``expired_now`` if this claim found the lease expired), or ``"mismatch"`` (the key was
    used with other arguments).
    """

    status: str
    fence: int = 0
    payload: Any = None
    lease_left: float = 0.0
    takeover: bool = False
    expired_now: bool = False


@dataclass(frozen=True)
class RecordView:
    """A record as stored, for inspection and tests."""

    state: str
    fingerprint: str
    fence: int
    owner: str | None
    payload: Any
