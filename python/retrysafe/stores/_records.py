"""The record types shared by the stores: what a claim returns, what a record holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Claim", "Cursor", "RecordView", "claim_number"]

# Record states (stored as these strings).
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
UNKNOWN = "unknown"
#: What ``resolve`` returns, changing nothing, for a record whose owner's lease is live.
HELD = "held"
#: What a fenced ``resolve`` returns, changing nothing, when another claim holds the record.
CHANGED = "changed"


class Claim:
    """The outcome of claiming a key.

    ``status``: ``"claimed"`` (run it; ``fence`` is yours, ``takeover`` if an expired owner
    was replaced), ``"completed"`` (``payload`` is the stored result), ``"in_progress"``
    (someone else runs it; ``lease_left`` seconds), ``"unknown"`` (a write was cut off;
    ``expired_now`` if this claim found the lease expired), or ``"mismatch"`` (the key was
    used with other arguments).
    """

    # A plain slotted class: claims are made on every replay, and a frozen dataclass costs
    # a microsecond to build.
    __slots__ = ("expired_now", "fence", "lease_left", "payload", "status", "takeover")

    def __init__(
        self,
        status: str,
        fence: int = 0,
        payload: Any = None,
        lease_left: float = 0.0,
        takeover: bool = False,
        expired_now: bool = False,
    ) -> None:
        self.status = status
        self.fence = fence
        self.payload = payload
        self.lease_left = lease_left
        self.takeover = takeover
        self.expired_now = expired_now

    def __repr__(self) -> str:
        return (
            f"Claim({self.status!r}, fence={self.fence}, payload={self.payload!r}, "
            f"lease_left={self.lease_left:.3f}, takeover={self.takeover}, expired_now={self.expired_now})"
        )


def claim_number(fence: int) -> int:
    """Which claim of its key a fence belongs to (1 for the first): a shared store's token is
    that counter followed by 12 random digits, MemoryStore's the counter itself."""
    return fence // 10**12 if fence >= 10**12 else fence


@dataclass(frozen=True)
class RecordView:
    """A record as stored, for inspection, the operators' tools and tests.

    ``meta``: what the claim said of itself (JSON text: the tool's name and the identity it
    ran under; never an argument value), ``created`` / ``updated``: epoch seconds of its
    first claim and last transition, ``lease_left``: seconds left on its owner's lease (in
    progress only), ``key``: the record key (set by listings). None where a store (or a
    record written by an earlier version) does not know."""

    state: str
    fingerprint: str
    fence: int
    owner: str | None
    payload: Any
    meta: str | None = None
    created: float | None = None
    updated: float | None = None
    lease_left: float | None = None
    key: str | None = None


#: A listing's place: (created, record key) of the last record shown; the next page starts
#: after it, newest first.
Cursor = tuple[float, str]
