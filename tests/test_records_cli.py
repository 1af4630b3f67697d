"""Settling records by key, without the exception object: ``retrysafe.records`` and the
``retrysafe records`` command, on a real Redis, Redis Cluster, SQLite file and PostgreSQL
(and the memory store, for the store-level rules)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from retrysafe import Effect, OutcomeUnknownError, idempotent, records, session
from retrysafe._records_cli import open_store
from retrysafe.stores import Store

ROOT = Path(__file__).resolve().parent.parent
KEY = re.compile(r"retrysafe records resolve (idem:[0-9a-f]{64})")

# One owner: claims the charge of cus_1 in session "ops", says so, then hangs until killed.
OWNER = textwrap.dedent(
    """
    import sys, anyio
    from retrysafe import Effect, idempotent, session
    from retrysafe._records_cli import open_store

    url, prefix, started = sys.argv[1:4]
    customer = sys.argv[4] if len(sys.argv) > 4 else "cus_1"
    store = open_store(url, prefix)

    @idempotent(store=store, scope="payments.charge", effect=Effect.WRITE, lease_seconds=1.0)
    async def charge(customer: str, amount: int) -> dict:
        open(started, "w").close()
        await anyio.sleep(3600)
        return {}

    async def main() -> None:
        async with session("ops", tenant="acme"):
            await charge(customer, 500)

    anyio.run(main)
    """
)


@pytest.fixture(params=["redis", "cluster", "sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(store URL, a fresh prefix) of a real shared store."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'records.db'}"
    else:
        fixture = {"redis": "redis_url", "cluster": "redis_cluster_url"}.get(
            request.param, "postgres_url"
        )
        url = str(request.getfixturevalue(fixture))
    prefix = f"ops-{uuid.uuid4().hex[:10]}"
    yield url, prefix
    store = open_store(url, prefix)
    store.clear("")
    store.close()  # type: ignore[attr-defined]


def cli(url: str, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "retrysafe", "records", "--store", url, "--prefix", prefix, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def killed_mid_write(url: str, prefix: str, tmp_path: Path, *customers: str) -> None:
    """Owners (one per customer, cus_1 by default) SIGKILLed while their charge runs (their
    lease is 1 s)."""
    owners = []
    for customer in customers or ("cus_1",):
        started = tmp_path / f"started-{uuid.uuid4().hex[:6]}"
        command = [sys.executable, "-c", OWNER, url, prefix, str(started), customer]
        owners.append((subprocess.Popen(command, cwd=ROOT), started))
    deadline = time.monotonic() + 60
    for owner, started in owners:
        while not started.exists():
            assert owner.poll() is None and time.monotonic() < deadline, "an owner never started"
            time.sleep(0.05)
    for owner, _ in owners:
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
    time.sleep(1.2)  # their leases run out


def the_tool(store: Store, effects: list[str]) -> Any:
    @idempotent(store=store, scope="payments.charge", effect=Effect.WRITE, lease_seconds=1.0)
    def charge(customer: str, amount: int) -> dict[str, Any]:
        effects.append(customer)
        return {"charge": f"ch_{len(effects)}"}

    return charge


class Unknown:
    """A charge left UNKNOWN by an owner killed mid-write, as the next caller meets it."""

    def __init__(self, url: str, prefix: str, store: Store) -> None:
        self.url, self.prefix, self.store = url, prefix, store
        self.effects: list[str] = []
        self.charge = the_tool(store, self.effects)
        with session("ops", tenant="acme"), pytest.raises(OutcomeUnknownError) as caught:
            self.charge("cus_1", 500)
        found = KEY.search(str(caught.value))
        assert found, str(caught.value)  # the error names the record and the command
        self.key = found.group(1)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return cli(self.url, self.prefix, *args)

    def call(self) -> Any:
        with session("ops", tenant="acme"):
            return self.charge("cus_1", 500)


@pytest.fixture
def unknown(where: tuple[str, str], tmp_path: Path) -> Iterator[Unknown]:
    url, prefix = where
    killed_mid_write(url, prefix, tmp_path)
    store = open_store(url, prefix)
    try:
        yield Unknown(url, prefix, store)
    finally:
        store.close()  # type: ignore[attr-defined]


def test_an_unknown_record_is_shown_and_settled_applied(unknown: Unknown) -> None:
    """The error names the command; ``show`` reads UNKNOWN; ``resolve --applied`` makes the
    next call replay that result without running."""
    key = unknown.key
    shown = unknown.cli("show", key)
    assert 0 == shown.returncode, shown.stderr
    assert re.search(r"^state\s+UNKNOWN$", shown.stdout, re.M), shown.stdout
    assert f"retrysafe records resolve {key}" in shown.stdout
    as_json = json.loads(unknown.cli("--json", "show", key).stdout)
    assert ("unknown", 1) == (as_json["state"], as_json["claim"])
    settled = unknown.cli("resolve", key, "--applied", '{"charge": "ch_manual"}')
    assert 0 == settled.returncode, settled.stderr
    assert "UNKNOWN -> applied" in settled.stdout
    assert {"charge": "ch_manual"} == unknown.call()
    assert [] == unknown.effects
    again = unknown.cli("resolve", key, "--not-applied")
    assert 1 == again.returncode and "has a result already" in again.stderr


def test_an_unknown_record_settled_not_applied_runs_once(unknown: Unknown) -> None:
    settled = unknown.cli("--json", "resolve", unknown.key, "--not-applied")
    assert 0 == settled.returncode, settled.stderr
    assert {"key": unknown.key, "settled": True, "was": "unknown"} == {
        k: v for k, v in json.loads(settled.stdout).items() if k != "now"
    }
    first = unknown.call()
    assert first == unknown.call()
    assert ["cus_1"] == unknown.effects


def test_bad_input_is_named(where: tuple[str, str]) -> None:
    url, prefix = where
    missing = "idem:" + "0" * 64
    assert 1 == cli(url, prefix, "show", missing).returncode
    gone = cli(url, prefix, "resolve", missing, "--not-applied")
    assert 1 == gone.returncode and "there is no record" in gone.stderr
    bad_key = cli(url, prefix, "show", "ik_123")
    assert 2 == bad_key.returncode and "not a record key" in bad_key.stderr
    bad_json = cli(url, prefix, "resolve", missing, "--applied", "{nope")
    assert 2 == bad_json.returncode and "--applied is not JSON" in bad_json.stderr
    both = cli(url, prefix, "resolve", missing)
    assert 2 == both.returncode
    nowhere = subprocess.run(
        [sys.executable, "-m", "retrysafe", "records", "show", missing],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "RETRYSAFE_STORE"},
        cwd=ROOT,
    )
    assert 2 == nowhere.returncode and "--store URL or $RETRYSAFE_STORE" in nowhere.stderr


# --- the store's rule, on every store: a fenced resolve never overwrites a newer claim -------


def unknown_record(store: Store, key: str) -> int:
    """A record claimed and left UNKNOWN; its fence."""
    claim = store.claim(key, "fp", "owner-1", 30.0, 600.0, False)
    assert "claimed" == claim.status
    assert store.mark_unknown(key, claim.fence, 600.0)
    return claim.fence


def test_a_fenced_resolve_settles_only_the_claim_it_saw(store: Store) -> None:
    key = "idem:" + uuid.uuid4().hex * 2
    old = unknown_record(store, key)
    assert "unknown" == records.resolve(store, key, not_applied=True, fence=old)
    fresh = store.claim(key, "fp", "owner-2", 30.0, 600.0, False)
    assert "claimed" == fresh.status and fresh.fence != old
    with pytest.raises(records.SettleRefusedError) as held:
        records.resolve(store, key, applied="stale", fence=old)
    assert "held" == held.value.reason  # its owner's lease is live
    assert store.mark_unknown(key, fresh.fence, 600.0)
    with pytest.raises(records.SettleRefusedError) as changed:
        records.resolve(store, key, applied="stale", fence=old)
    assert "changed" == changed.value.reason  # another claim's UNKNOWN, not the one seen
    assert store.complete(key, fresh.fence, "late owner's", 600.0)
    with pytest.raises(records.SettleRefusedError) as completed:
        records.resolve(store, key, applied="stale", fence=fresh.fence)
    assert "completed" == completed.value.reason
    seen = records.show(store, key)
    assert seen is not None and ("completed", "late owner's") == (seen.state, seen.result)


def test_a_resolve_racing_a_new_claim_never_overwrites_it(store: Store) -> None:
    """Stale resolves (the fence an operator saw before the record was settled and claimed
    again) keep coming while a new claim runs and completes: its result stands."""
    key = "idem:" + uuid.uuid4().hex * 2
    old = unknown_record(store, key)
    records.resolve(store, key, not_applied=True, fence=old)
    done = threading.Event()
    outcomes: list[str] = []

    def operator() -> None:
        while not done.is_set():
            try:
                outcomes.append(records.resolve(store, key, applied="stale", fence=old))
            except records.SettleRefusedError as exc:
                outcomes.append(exc.reason)

    racer = threading.Thread(target=operator)
    racer.start()
    try:
        for _ in range(20):
            claim = store.claim(key, "fp", "owner-2", 30.0, 600.0, False)
            if claim.status == "claimed":
                assert store.complete(key, claim.fence, "real", 600.0)
                break
            time.sleep(0.01)
        time.sleep(0.05)
    finally:
        done.set()
        racer.join()
    seen = records.show(store, key)
    assert seen is not None and ("completed", "real") == (seen.state, seen.result)
    assert outcomes and set(outcomes) <= {"missing", "held", "changed", "completed"}


def test_a_swarm_s_unknown_records_are_listed_exactly_and_settled(
    where: tuple[str, str], tmp_path: Path
) -> None:
    """Three owners SIGKILLed mid-write beside two completed charges and one refund:
    ``list --state unknown`` names exactly the three, with their tool and identity (never an
    argument); pages follow the cursor; filters by tool and tenant hold; settling one takes
    it off the list; ``purge --completed --dry-run`` changes nothing."""
    url, prefix = where
    killed_mid_write(url, prefix, tmp_path, "cus_a", "cus_b", "cus_c")
    dropped = cli(url, prefix, "purge", "--cache", "nothing.here", "--dry-run")
    assert (
        0 == dropped.returncode and "would drop 0 entries of cache nothing.here" in dropped.stdout
    )
    store = open_store(url, prefix)
    try:
        effects: list[str] = []
        charge = the_tool(store, effects)
        unknown_keys = set()
        for customer in ("cus_a", "cus_b", "cus_c"):
            with session("ops", tenant="acme"), pytest.raises(OutcomeUnknownError) as caught:
                charge(customer, 500)  # the next caller turns each UNKNOWN
            found = KEY.search(str(caught.value))
            assert found
            unknown_keys.add(found.group(1))
        with session("ops", tenant="acme"):
            charge("cus_d", 100)
            charge("cus_e", 100)

        @idempotent(store=store, scope="payments.refund", effect=Effect.WRITE)
        def refund(customer: str) -> str:
            return "re_1"

        with session("support", tenant="globex"):
            refund("cus_a")
        assert ["cus_d", "cus_e"] == effects

        listed = cli(url, prefix, "--json", "list", "--state", "unknown")
        assert 0 == listed.returncode, listed.stderr
        page = json.loads(listed.stdout)
        assert unknown_keys == {r["key"] for r in page["records"]} and page["next"] is None
        for made in page["records"]:
            assert made["state"] == "unknown" and made["tenant"] == "acme"
            assert made["conversation"] == "ops" and made["tool"].endswith("charge")
            assert made["created"] and made["updated"] >= made["created"]
        assert "cus_" not in listed.stdout  # no argument value, only the fingerprint

        table = cli(url, prefix, "list")
        assert 0 == table.returncode, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].split()[:4] == ["KEY", "STATE", "TOOL", "IDENTITY"]
        assert 6 == sum(1 for line in lines if line.startswith("idem:"))
        assert 3 == table.stdout.count("UNKNOWN") and "\x1b[" not in table.stdout  # no tty

        seen: list[str] = []
        after: list[str] = []
        for _ in range(4):  # pages of 4: every record once, newest first
            got = json.loads(cli(url, prefix, "--json", "list", "--limit", "4", *after).stdout)
            seen += [r["key"] for r in got["records"]]
            if got["next"] is None:
                break
            after = ["--after", got["next"]]
        assert 6 == len(seen) == len(set(seen))

        # Filtered pages too: 2 at a time over the 5 records of tenant acme, each once.
        acme: list[str] = []
        after_acme: str | None = None
        for _ in range(4):
            got_acme = records.list(store, tenant="acme", limit=2, after=after_acme)
            acme += [r.key for r in got_acme.records]
            after_acme = got_acme.next
            if after_acme is None:
                break
        assert 5 == len(acme) == len(set(acme))

        by_tenant = json.loads(cli(url, prefix, "--json", "list", "--tenant", "globex").stdout)
        assert ["completed"] == [r["state"] for r in by_tenant["records"]]
        refunds = records.list(store, tool=by_tenant["records"][0]["tool"])
        assert [r.key for r in refunds.records] == [by_tenant["records"][0]["key"]]
        assert 6 == len(records.list(store, newer_than=3600).records)
        assert [] == records.list(store, older_than=3600).records
        oldest = records.list(store).records[-1]
        assert oldest.created is not None
        aged = records.list(store, older_than=time.time() - oldest.created - 0.001)
        assert oldest.key in [r.key for r in aged.records]

        settled = sorted(unknown_keys)[0]
        done = cli(url, prefix, "resolve", settled, "--not-applied")
        assert 0 == done.returncode, done.stderr
        left = {r.key for r in records.list(store, state="unknown").records}
        assert unknown_keys - {settled} == left

        dry = json.loads(cli(url, prefix, "--json", "purge", "--completed", "--dry-run").stdout)
        assert 3 == len(dry["records"]) and dry["dry_run"]
        assert 3 == len(records.list(store, state="completed").records)  # nothing went
        gone = records.purge(store, completed=True, tool=by_tenant["records"][0]["tool"])
        assert [by_tenant["records"][0]["key"]] == gone.records
        assert 2 == len(records.list(store, state="completed").records)
        with session("support", tenant="globex"):
            assert "re_1" == refund("cus_a")  # purged: it runs again (a new record)
    finally:
        store.close()  # type: ignore[attr-defined]


def test_a_bad_listing_is_a_usage_error(where: tuple[str, str]) -> None:
    url, prefix = where
    for args, said in (
        (["list", "--state", "lost"], "invalid choice"),
        (["list", "--older-than", "soon"], "not an age"),
        (["list", "--after", "nowhere"], "not a cursor"),
        (["purge", "--tool", "x"], "add --completed"),
        (["purge", "--cache", "x", "--completed"], "a cache alone"),
    ):
        done = cli(url, prefix, *args)
        assert 2 == done.returncode and said in done.stderr, (args, done.stderr)


def test_cache_entries_are_counted_per_namespace(store: Store) -> None:
    """Live cache entries by namespace, most first, on every store; keys only (a namespace
    with a colon is escaped, so it never splits into another's)."""
    from retrysafe import cache_tool

    @cache_tool(store=store, namespace="geo:lookup")
    def where(city: str) -> str:
        return "here"

    @cache_tool(store=store, namespace="weather")
    def weather(city: str) -> str:
        return "sunny"

    for city in ("a", "b", "c"):
        where(city)
    weather("a")
    counts = records.cache_entries(store)
    assert [3, 1] == list(counts.values())
    assert ["geo:lookup", "weather"] == list(counts)  # as named, though stored escaped
    assert 3 == records.drop_cache(store, "geo:lookup", dry_run=True)
    assert counts == records.cache_entries(store)  # a dry run drops nothing
    assert 3 <= records.drop_cache(store, "geo:lookup")  # (a shared store's leases too)
    assert {"weather": 1} == records.cache_entries(store)
    calls: list[str] = []

    @cache_tool(store=store, namespace="weather")
    def weather_again(city: str) -> str:
        calls.append(city)
        return "sunny"

    assert "sunny" == weather_again("a") and [] == calls  # the other cache is untouched
    assert {"weather": 1} == {
        k: v for k, v in records.cache_entries(store).items() if k == "weather"
    }


def test_published_outcomes_add_up_per_hour(store: Store) -> None:
    """A process's outcome counts reach the store by hour (one incr per outcome that moved),
    and only what moved since the last flush: exactly the calls made in between."""
    from retrysafe import session, tool
    from retrysafe._outcomes import OutcomePublisher

    @tool.write(registry=None, store=store)
    def charge(order: str) -> str:
        """Charge an order."""
        return f"ch_{order}"

    @tool.read(registry=None, store=store, cache_ttl=60)
    def price(sku: str) -> int:
        """A price."""
        return 5

    def summed() -> dict[str, int]:
        total: dict[str, int] = {}
        for row in records.outcomes_by_hour(store).values():
            for outcome, n in row.items():
                total[outcome] = total.get(outcome, 0) + n
        return total

    publisher = OutcomePublisher(store, every=3600)  # flushed by hand here
    try:
        publisher.flush()
        before = summed()
        with session("outcomes"):
            charge("o-1")
            charge("o-2")
            charge("o-1")  # replayed
            price("a")
            price("a")  # cached
        moved = publisher.flush()
        assert {"executed": 3, "replayed": 1, "cached": 1} == moved
        after = summed()
        assert {
            k: after.get(k, 0) - before.get(k, 0)
            for k in after
            if after.get(k, 0) != before.get(k, 0)
        } == moved
        assert {} == publisher.flush()  # nothing moved since
    finally:
        publisher.stop()
