"""Idempotency records by key, for the people who settle them: what the command line
``retrysafe records`` runs, and the same from Python.

An UNKNOWN outcome's error names its record key (``idem:<64 hex digits>``) and the command
that settles it::

    from retrysafe import records
    from retrysafe.stores import resolve_store

    store = resolve_store("redis://localhost:6379/0")
    seen = records.show(store, "idem:3f2a...")          # state, fence, owner, fingerprint
    records.resolve(store, "idem:3f2a...", applied={"charge": "ch_1"}, fence=seen.fence)
    records.resolve(store, "idem:3f2a...", not_applied=True)

:func:`resolve` makes the same transitions as ``fn.idempotency.resolve`` without the
exception object, and always fenced: it settles the record only while the claim that left
it (the fence shown, else the one it reads first) still holds it, so it never overwrites a
newer claim, nor a result its late owner stored meanwhile. A record whose owner's lease is
live is never settled by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ._exceptions import RetrysafeError
from .stores._base import Store
from .stores._records import CHANGED, COMPLETED, HELD, claim_number

__all__ = ["DEFAULT_TTL", "Record", "SettleRefusedError", "record_key", "resolve", "show"]

#: How long a result settled by hand is kept (seconds): a day, as ``@idempotent``'s default.
DEFAULT_TTL = 86_400.0

_HEX = re.compile(r"[0-9a-f]{64}")


class SettleRefusedError(RetrysafeError):
    """A record was not settled; ``reason`` says why: ``"missing"`` (no such record, or it
    expired), ``"held"`` (its owner's lease is live: it is running), ``"changed"`` (another
    claim holds it now) or ``"completed"`` (it has a result: its late owner stored one)."""

    def __init__(self, message: str, *, reason: str, key: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.key = key


@dataclass(frozen=True)
class Record:
    """A record as an operator sees it: never the call's arguments, only their fingerprint.
    ``result`` is the stored result of a COMPLETED record (None otherwise)."""

    key: str
    state: str
    fence: int
    claim: int
    owner: str | None
    fingerprint: str
    result: Any = None

    def as_dict(self) -> dict[str, Any]:
        """The record as JSON-ready values (``--json``)."""
        return {
            "key": self.key,
            "state": self.state,
            "fence": str(self.fence),
            "claim": self.claim,
            "owner": self.owner,
            "fingerprint": self.fingerprint,
            "result": self.result,
        }


def record_key(text: str) -> str:
    """The record key an operator names: ``idem:<64 hex>``, or the 64 hex digits alone.
    A ``ValueError`` says what is wrong with anything else (the ``ik_...`` key of an error
    message is shortened: its record key is named beside it)."""
    value = text.strip()
    digits = value[5:] if value.startswith("idem:") else value
    if not _HEX.fullmatch(digits):
        raise ValueError(
            f"not a record key: {text!r} (expected idem: followed by 64 lowercase hex digits, "
            "as an UNKNOWN outcome's error names it)"
        )
    return "idem:" + digits


def show(store: Store, key: str) -> Record | None:
    """The record under ``key`` (see :func:`record_key`), or None."""
    name = record_key(key)
    seen = store.record(name)
    if seen is None:
        return None
    return Record(
        key=name,
        state=seen.state,
        fence=seen.fence,
        claim=claim_number(seen.fence),
        owner=seen.owner,
        fingerprint=seen.fingerprint,
        result=seen.payload if seen.state == COMPLETED else None,
    )


_UNSET: Any = object()


def resolve(
    store: Store,
    key: str,
    *,
    applied: Any = _UNSET,
    not_applied: bool = False,
    fence: int | None = None,
    ttl: float = DEFAULT_TTL,
) -> str:
    """Settle the record under ``key``: ``applied=result`` (it happened; the next call
    replays ``result``) or ``not_applied=True`` (it did not; the next call runs). Fenced on
    ``fence`` (the one an operator saw; by default the record's current one). Returns the
    state it had; :class:`SettleRefusedError` when nothing changed."""
    if (applied is _UNSET) == (not not_applied):
        raise ValueError("resolve() takes exactly one of applied=... or not_applied=True")
    name = record_key(key)
    if fence is None:
        seen = store.record(name)
        if seen is None:
            raise _refused("missing", name)
        fence = seen.fence
    before = store.resolve(name, None if not_applied else applied, not not_applied, ttl, fence)
    if before is None or before in (HELD, CHANGED) or before == COMPLETED:
        raise _refused(before or "missing", name)
    return before


_WHY = {
    "missing": "there is no record under this key (it was settled, or it expired)",
    HELD: "its owner's lease is live: the call is running; wait for it, or for its lease",
    CHANGED: "another claim holds it now (it was settled, and the call ran again): look again",
    COMPLETED: "it has a result already (settled, or stored late by its owner): nothing to settle",
}


def _refused(reason: str, key: str) -> SettleRefusedError:
    return SettleRefusedError(
        f"record {key} was not settled: {_WHY[reason]}", reason=reason, key=key
    )
