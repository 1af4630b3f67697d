"""Idempotency records by key, for the people who settle them: what the command line
``retrysafe records`` runs, and the same from Python.

An UNKNOWN outcome's error names its record key (``idem:<64 hex digits>``) and the command
that settles it::

    from retrysafe import records
    from retrysafe.stores import resolve_store

    store = resolve_store("redis://localhost:6379/0")
    page = records.list(store, state="unknown")         # newest first; page.next: the rest
    seen = records.show(store, "idem:3f2a...")          # state, tool, identity, fence, owner
    records.resolve(store, "idem:3f2a...", applied={"charge": "ch_1"}, fence=seen.fence)
    records.resolve(store, "idem:3f2a...", not_applied=True)
    records.purge(store, dry_run=True)                  # what would go: expired, or chosen

:func:`resolve` makes the same transitions as ``fn.idempotency.resolve`` without the
exception object, and always fenced: it settles the record only while the claim that left
it (the fence shown, else the one it reads first) still holds it, so it never overwrites a
newer claim, nor a result its late owner stored meanwhile. A record whose owner's lease is
live is never settled by hand.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ._exceptions import RetrysafeError
from .stores._base import Store
from .stores._records import (
    CHANGED,
    COMPLETED,
    HELD,
    IN_PROGRESS,
    UNKNOWN,
    RecordView,
    claim_number,
)

__all__ = [
    "DEFAULT_TTL",
    "STATES",
    "Page",
    "Purged",
    "Record",
    "SettleRefusedError",
    "cache_entries",
    "drop_cache",
    "guard_stops",
    "list",
    "outcomes_by_hour",
    "purge",
    "record_key",
    "resolve",
    "show",
]

#: The states a record can be in, as ``list(state=...)`` takes them.
STATES = (IN_PROGRESS, COMPLETED, UNKNOWN)

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

    ``claim``: which claim of its key holds it (1 for the first; more: attempts taken over
    or run again after a settlement). ``tool``, ``tenant``, ``principal``,
    ``conversation``: what its claim said of itself (None for records written before
    version 0.4). ``created`` / ``updated``: epoch seconds of its first claim and last
    transition. ``lease_left``: seconds its owner's lease has left (in progress only).
    ``result``: the stored result of a COMPLETED record (None otherwise)."""

    key: str
    state: str
    fence: int
    claim: int
    owner: str | None
    fingerprint: str
    result: Any = None
    tool: str | None = None
    tenant: str | None = None
    principal: str | None = None
    conversation: str | None = None
    created: float | None = None
    updated: float | None = None
    lease_left: float | None = None
    #: Epoch seconds before which the server asked (429/503 with Retry-After) that the
    #: call not be sent again (read by :func:`show`; None in listings, or when none).
    not_before: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The record as JSON-ready values (``--json``)."""
        return {
            "key": self.key,
            "state": self.state,
            "fence": str(self.fence),
            "claim": self.claim,
            "owner": self.owner,
            "fingerprint": self.fingerprint,
            "tool": self.tool,
            "tenant": self.tenant,
            "principal": self.principal,
            "conversation": self.conversation,
            "created": self.created,
            "updated": self.updated,
            "lease_left": self.lease_left,
            "not_before": self.not_before,
            "result": self.result,
        }

    def identity(self) -> str:
        """``tenant=... principal=... conversation=...`` (the parts known), or ``-``."""
        parts = [
            f"{name}={value}"
            for name, value in (
                ("tenant", self.tenant),
                ("principal", self.principal),
                ("conversation", self.conversation),
            )
            if value is not None
        ]
        return " ".join(parts) or "-"

    @classmethod
    def of(cls, key: str, seen: RecordView) -> Record:
        """The operator's view of a stored record."""
        meta: dict[str, Any] = {}
        if seen.meta:
            try:
                found = json.loads(seen.meta)
            except ValueError:
                found = None
            meta = found if isinstance(found, dict) else {}
        return cls(
            key=key,
            state=seen.state,
            fence=seen.fence,
            claim=claim_number(seen.fence),
            owner=seen.owner,
            fingerprint=seen.fingerprint,
            result=seen.payload if seen.state == COMPLETED else None,
            tool=_text(meta.get("tool")),
            tenant=_text(meta.get("tenant")),
            principal=_text(meta.get("principal")),
            conversation=_text(meta.get("conversation")),
            created=seen.created,
            updated=seen.updated,
            lease_left=seen.lease_left,
        )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Page:
    """One page of :func:`list`: ``records`` newest first, and ``next``, the cursor of the
    page after it (None: this was the last). ``scanned``: how many records were read to
    fill it (filters on tool or identity read past the ones they skip)."""

    records: builtins.list[Record]
    next: str | None
    scanned: int = 0


@dataclass(frozen=True)
class Purged:
    """What :func:`purge` removed (or, with ``dry_run``, would remove): ``expired``, the
    number of expired records (or index entries) dropped, and ``records``, the keys of
    the chosen records."""

    expired: int
    records: builtins.list[str] = field(default_factory=builtins.list)
    dry_run: bool = False


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
    made = Record.of(name, seen)
    # The server's Retry-After for this call, as the tool stored it (wall-clock seconds).
    until = store.get(name + ":not-before")
    if isinstance(until, (int, float)) and not isinstance(until, bool) and until > time.time():
        made = dataclasses.replace(made, not_before=float(until))
    return made


def guard_stops(
    store: Store, namespace: str = "guard", limit: int = 50
) -> builtins.list[dict[str, Any]]:
    """The loop guard's recent stops on ``store`` (its ``namespace``), newest first: each a
    dict of ``at`` (epoch seconds), ``tool``, ``reason``, ``count``, ``limit``, ``window`` and
    ``session`` (the session's identity, encoded; never the call's arguments)."""
    from ._guard import recent_stops

    return recent_stops(store, namespace, limit)


def outcomes_by_hour(store: Store, hours: int = 24) -> dict[int, dict[str, int]]:
    """What the swarm's processes published (``retrysafe.publish_outcomes``) over the last
    ``hours`` hours: ``{epoch hour: {outcome: n}}`` with the outcomes executed, cached,
    coalesced, replayed, unknown and refused."""
    from ._outcomes import outcomes_by_hour as read

    return read(store, hours)


def drop_cache(store: Store, namespace: str, *, dry_run: bool = False) -> int:
    """Drop every entry of the cache ``namespace`` (a ``cache_tool``'s ``namespace=``, by
    default its function's module and qualified name) from ``store``, every caller's;
    returns how many (with ``dry_run``, how many would go, at most 100,000 counted). The
    next calls run and fill it again. Records are never touched."""
    from ._identity import escape

    prefix = f"cache:{escape(namespace, 'a cache namespace')}:"
    if dry_run:
        lister = getattr(store, "keys", None)
        if lister is None:
            raise ValueError(f"{type(store).__name__} cannot list its keys")
        return len(lister(prefix, 100_000))
    return int(store.clear(prefix))


def cache_entries(store: Store, max_keys: int = 100_000) -> dict[str, int]:
    """Live cache entries on ``store`` by cache namespace (as ``cache_tool`` named it), most
    first, counting at most ``max_keys`` keys. Hits and misses are each process's own:
    ``fn.cache.stats()``."""
    from urllib.parse import unquote  # the inverse of the keys' %XX escaping

    lister = getattr(store, "keys", None)
    if lister is None:
        raise ValueError(f"{type(store).__name__} cannot list its keys")
    counts: dict[str, int] = {}
    for key in lister("cache:", max_keys):
        namespace = unquote(key.split(":", 2)[1]) if key.count(":") >= 2 else key
        counts[namespace] = counts.get(namespace, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _cursor(text: str) -> tuple[float, str]:
    created, _, key = text.partition("/")
    try:
        return float(created), record_key(key)
    except ValueError:
        raise ValueError(
            f"not a cursor: {text!r} (pass the `next` of the page before, as it was given)"
        ) from None


def _lister(store: Any) -> Any:
    lister = getattr(store, "list_records", None)
    if lister is None:
        raise ValueError(f"{type(store).__name__} cannot list its records")
    return lister


def list(  # records.list: the module's verb (builtins.list is named so within)
    store: Store,
    *,
    state: str | None = None,
    tool: str | None = None,
    tenant: str | None = None,
    principal: str | None = None,
    conversation: str | None = None,
    older_than: float | None = None,
    newer_than: float | None = None,
    after: str | None = None,
    limit: int = 50,
    max_scan: int = 100_000,
) -> Page:
    """Records newest first (by first claim): ``state`` one of :data:`STATES`; ``tool``,
    ``tenant``, ``principal``, ``conversation`` as the claim named them; ``older_than`` /
    ``newer_than`` seconds of age; ``after`` the ``next`` of the page before. Age and state
    are read from the store's indexes (a page of a million records costs what a page of ten
    does; on Redis only UNKNOWN has an index of its own, other states are filtered as the
    pages are read); the other filters read on through at most ``max_scan`` records per
    page."""
    if state is not None and state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10_000:
        raise ValueError(f"limit must be an int from 1 to 10000, got {limit!r}")
    lister = _lister(store)
    now = time.time()
    cursor = _cursor(after) if after is not None else None
    if older_than is not None and (cursor is None or cursor[0] > now - older_than):
        cursor = (now - older_than, "idem:" + "f" * 64 + "~")  # everything claimed before
    wanted = {"tool": tool, "tenant": tenant, "principal": principal, "conversation": conversation}
    wanted = {name: value for name, value in wanted.items() if value is not None}
    found: builtins.list[Record] = []
    scanned = 0
    batch = limit if not wanted else max(limit, 500)
    while len(found) < limit and scanned < max_scan:
        views = lister(state, cursor, batch)
        scanned += len(views)
        for view in views:
            cursor = (view.created or 0.0, view.key)
            if newer_than is not None and (view.created or 0.0) < now - newer_than:
                return Page(found, None, scanned)  # newest first: the rest are older
            made = Record.of(record_key(view.key), view)
            if all(getattr(made, name) == value for name, value in wanted.items()):
                found.append(made)
                if len(found) == limit:
                    break
        if len(found) == limit:
            break  # the page is full: the rest, if any, come after its cursor
        if len(views) < batch:
            return Page(found, None, scanned)
    assert cursor is not None
    return Page(found, f"{cursor[0]!r}/{cursor[1]}", scanned)


def purge(
    store: Store,
    *,
    completed: bool = False,
    tool: str | None = None,
    older_than: float | None = None,
    dry_run: bool = False,
    max_records: int = 100_000,
) -> Purged:
    """Drop what has expired (rows a SQL store keeps until they are claimed again, a Redis
    index's entries for records Redis expired); with ``completed=True`` also the COMPLETED
    records chosen by ``tool`` and ``older_than`` (their next identical call runs again).
    UNKNOWN and running records are never purged: settle them with :func:`resolve`.
    ``dry_run``: nothing changes; the report says what would."""
    chosen: builtins.list[Record] = []
    if completed:
        after = None
        while len(chosen) < max_records:
            page = list(
                store, state=COMPLETED, tool=tool, older_than=older_than, after=after, limit=1000
            )
            chosen.extend(page.records)
            if page.next is None:
                break
            after = page.next
    if dry_run:
        return Purged(0, [r.key for r in chosen], dry_run=True)
    expired = int(getattr(store, "purge_expired", lambda: 0)())
    gone = []
    for seen in chosen:
        # Only while it is still this claim's result (read again just before).
        again = store.record(seen.key)
        if again is None or again.state != COMPLETED or again.fence != seen.fence:
            continue
        if store.resolve(seen.key, None, False, DEFAULT_TTL) == COMPLETED:
            gone.append(seen.key)
    return Purged(expired, gone)


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
