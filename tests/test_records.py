"""The record state machine of every store against a simple model (hypothesis)."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from retrysafe.stores import MemoryStore, PostgresStore, RedisStore, SQLiteStore, Store

KEYS = ["k1", "k2"]
FPS = ["fp-a", "fp-b"]
LEASE = 0.3  # short enough to expire within a run, long next to a step (a few ms)


class RecordMachine(RuleBasedStateMachine):
    """Each rule performs a transition on the real store and on the model; they must agree.

    Model per key: None (absent) or {state, fp, fence, payload, lease_until}. Lease expiry is
    modelled by the rule `wait` sleeping past LEASE and marking every lease expired.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stores: list[Store] = [MemoryStore()]
        for variable in ("REDIS_URL", "REDIS_CLUSTER_URL"):
            url = os.environ.get(variable)
            if url:
                self.stores.append(RedisStore(url, prefix=f"sm-{uuid.uuid4().hex[:8]}"))
        self._directory = tempfile.TemporaryDirectory()
        self.stores.append(SQLiteStore(os.path.join(self._directory.name, "records.db")))
        postgres = os.environ.get("POSTGRES_URL")
        if postgres:
            self.stores.append(PostgresStore(postgres, prefix=f"sm-{uuid.uuid4().hex[:8]}"))
        self.model: dict[str, dict[str, Any] | None] = {k: None for k in KEYS}
        self.fences: dict[str, int] = {k: 0 for k in KEYS}
        self.expired: set[str] = set()
        # When each key's lease began: before its claim reached the first store, and after
        # it left the last one (the stores' leases began in between).
        self.leased: dict[str, tuple[float, float]] = {}
        self.nonces = 0

    def teardown(self) -> None:
        for store in self.stores:
            store.clear("")
            close = getattr(store, "close", None)
            if close is not None:
                close()
        self._directory.cleanup()

    def _all(self, op: str, *args: Any) -> list[Any]:
        results = [getattr(store, op)(*args) for store in self.stores]
        assert all(r == results[0] for r in results), f"stores disagree on {op}{args}: {results}"
        return results

    def _settle_old_leases(self) -> None:
        """A lease the model holds live that began over half a lease ago might run out in
        the middle of this rule's calls (five stores one after another, on a loaded machine:
        a CI run saw a `resolve` find it already expired): it is let run out first, as `wait`
        does, so that every store sees what the model says."""
        now = time.monotonic()
        old = [
            key
            for key, (first, _) in self.leased.items()
            if now - first > LEASE / 2
            and key not in self.expired
            and (rec := self.model[key]) is not None
            and rec["state"] == "in_progress"
        ]
        if old:
            time.sleep(max(0.0, max(self.leased[k][1] for k in old) + LEASE + 0.02 - now))
            self.expired.update(old)

    def _fenced(self, op: str, key: str, stale: bool, *rest: Any) -> bool:
        """``op`` on every store with that store's own fence of the key (a RedisStore's is a
        token: its counter and a random tail), or one that is stale (any other value)."""
        rec = self.model[key]
        results = []
        for i, store in enumerate(self.stores):
            fence = rec["fences"][i] if rec else 0
            results.append(getattr(store, op)(key, fence - (1 if stale else 0), *rest))
        assert all(r == results[0] for r in results), f"stores disagree on {op}: {results}"
        return bool(results[0])

    @rule(
        key=st.sampled_from(KEYS),
        fp=st.sampled_from(FPS),
        takeover=st.booleans(),
        checkpoint=st.booleans(),
    )
    def claim(self, key: str, fp: str, takeover: bool, checkpoint: bool) -> None:
        self._settle_old_leases()
        self.nonces += 1
        nonce = f"{self.nonces:012d}"
        began = time.monotonic()
        outcomes = [
            store.claim(key, fp, "owner", LEASE, 60, takeover, nonce, checkpoint)
            for store in self.stores
        ]
        rec = self.model[key]
        for claim in outcomes:
            if rec is None:
                assert "claimed" == claim.status
            elif rec["fp"] != fp:
                assert "mismatch" == claim.status
            elif rec["state"] == "completed":
                assert ("completed", rec["payload"]) == (claim.status, claim.payload)
            elif rec["state"] == "unknown":
                assert "unknown" == claim.status
            elif key not in self.expired:
                assert "in_progress" == claim.status
            elif takeover or rec["unstarted"]:  # a checkpoint never reached: it did not act
                assert "claimed" == claim.status and claim.takeover
            else:
                assert "unknown" == claim.status and claim.expired_now
        # the model follows
        claim = outcomes[0]
        if claim.status == "claimed":
            self.fences[key] += 1
            assert self.fences[key] == claim.fence  # MemoryStore: the counter itself
            for other in outcomes[1:]:  # the shared stores: the counter, then 12 random digits
                assert self.fences[key] == other.fence // 10**12
            self.model[key] = {
                "state": "in_progress",
                "fp": fp,
                "fences": [c.fence for c in outcomes],
                "payload": None,
                "nonce": nonce,
                "unstarted": checkpoint and not takeover,
            }
            self.expired.discard(key)
            self.leased[key] = (began, time.monotonic())
        elif claim.status == "unknown" and rec is not None and rec["state"] == "in_progress":
            rec["state"] = "unknown"

    @precondition(lambda self: any(r is not None for r in self.model.values()))
    @rule(key=st.sampled_from(KEYS), stale=st.booleans(), payload=st.integers(0, 9))
    def complete(self, key: str, stale: bool, payload: int) -> None:
        rec = self.model[key]
        ok = self._fenced("complete", key, stale, payload, 60)
        # A completed record reports its own fence's completion again (a resend), unchanged.
        expect = rec is not None and not stale
        assert expect == ok
        if ok and rec is not None and rec["state"] != "completed":
            rec.update(state="completed", payload=payload)

    @precondition(lambda self: any(r is not None for r in self.model.values()))
    @rule(key=st.sampled_from(KEYS), stale=st.booleans())
    def release(self, key: str, stale: bool) -> None:
        rec = self.model[key]
        ok = self._fenced("release", key, stale)
        # From UNKNOWN too: the owner knows it did not act.
        assert (rec is not None and not stale and rec["state"] != "completed") == ok
        if ok:
            self.model[key] = None

    @precondition(lambda self: any(r is not None for r in self.model.values()))
    @rule(key=st.sampled_from(KEYS), stale=st.booleans())
    def mark_started(self, key: str, stale: bool) -> None:
        """The owner's checkpoint: from now on its expired lease means UNKNOWN."""
        rec = self.model[key]
        ok = self._fenced("mark_started", key, stale)
        assert (rec is not None and not stale and rec["state"] == "in_progress") == ok
        if ok and rec is not None:
            rec["unstarted"] = False

    @precondition(lambda self: any(r is not None for r in self.model.values()))
    @rule(key=st.sampled_from(KEYS), stale=st.booleans())
    def mark_unknown(self, key: str, stale: bool) -> None:
        rec = self.model[key]
        ok = self._fenced("mark_unknown", key, stale, 60)
        assert (rec is not None and not stale and rec["state"] == "in_progress") == ok
        if ok and rec is not None:
            rec["state"] = "unknown"

    @precondition(lambda self: any(r is not None for r in self.model.values()))
    @rule(key=st.sampled_from(KEYS), stale=st.booleans())
    def abandon(self, key: str, stale: bool) -> None:
        """A claim given up by its nonce (its reply was lost): gone if it is still that claim's."""
        rec = self.model[key]
        nonce = "999999999999" if stale or rec is None else rec["nonce"]
        [ok] = set(self._all("abandon", key, nonce))
        assert (rec is not None and not stale and rec["state"] != "completed") == ok
        if ok:
            self.model[key] = None

    @rule(key=st.sampled_from(KEYS), applied=st.booleans())
    def resolve(self, key: str, applied: bool) -> None:
        self._settle_old_leases()
        rec = self.model[key]
        [before] = set(self._all("resolve", key, 7, applied, 60))
        if rec is not None and rec["state"] == "in_progress" and key not in self.expired:
            assert before == "held"  # a live owner's record is not settled by hand
            return
        assert (rec["state"] if rec else None) == before
        if rec is not None:
            if applied:
                rec.update(state="completed", payload=7)
            else:
                self.model[key] = None

    @rule()
    def wait(self) -> None:
        time.sleep(LEASE + 0.02)
        self.expired.update(k for k, r in self.model.items() if r and r["state"] == "in_progress")

    @invariant()
    def records_match(self) -> None:
        for key in KEYS:
            rec = self.model[key]
            for i, store in enumerate(self.stores):
                view = store.record(key)
                if rec is None:
                    assert view is None
                else:
                    assert view is not None
                    assert (rec["state"], rec["fp"], rec["fences"][i]) == (
                        view.state,
                        view.fingerprint,
                        view.fence,
                    )


TestRecordMachine = RecordMachine.TestCase
TestRecordMachine.settings = settings(max_examples=30, stateful_step_count=12, deadline=None)


def test_a_takeover_claim_records_no_checkpoint(store: Store) -> None:
    """`checkpoint` counts only for a claim without `takeover` (the core never asks for both:
    READ/IDEMPOTENT tools take over any expired lease): the record of a claim that asked for
    both is a plain one, so a later claim without takeover of its expired lease turns it
    UNKNOWN on every store. (MemoryStore kept the checkpoint and took such a record over where
    the shared stores said UNKNOWN: a fresh clone's run of the state machine above.)"""
    first = store.claim("k", "fp", "owner-a", 0.2, 60, True, None, True)
    assert ("claimed", False) == (first.status, first.takeover)
    time.sleep(0.3)
    later = store.claim("k", "fp", "owner-b", 0.2, 60, False)
    assert ("unknown", True) == (later.status, later.expired_now)
