"""Call identity: distinct identities never share a record, a cache entry, a guard budget or
an explicit key, whatever characters their parts hold; deleting one never reaches another;
the attacks of the security review, each as a regression test, on every store."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrysafe import (
    Effect,
    IdempotencyKeyMismatchError,
    LoopGuard,
    SessionRequiredError,
    cache_tool,
    idempotent,
    session,
)
from retrysafe.stores import MISS, Store

from .conftest import _make_store

# Parts made of the characters that broke the old encoding ("/" and ":" its separators, glob
# and LIKE metacharacters, braces of Redis hash tags, NUL), plus any other text.
NASTY = st.sampled_from(list("ab/:{}*?%_[]\\=\x00 é-"))
PART = st.text(alphabet=NASTY, min_size=1, max_size=5) | st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=5
)
IDENTITY = st.tuples(st.none() | PART, st.none() | PART, PART)  # principal, tenant, conversation

EXAMPLES = {"memory": 150, "sqlite": 20, "redis": 30, "cluster": 20, "postgres": 20}


def _bind(identity: tuple[str | None, str | None, str]) -> session:
    principal, tenant, conversation = identity
    return session(conversation, tenant=tenant, principal=principal)


def _partition(identity: tuple[str | None, str | None, str]) -> tuple[str | None, str | None]:
    return identity[0], identity[1]


def test_distinct_identities_never_meet(store: Store, store_kind: str) -> None:
    """For any two distinct identities: a write's record, an explicit key's record, a cache
    entry and a guard budget of one are never the other's; a cache's clear() and a guard's
    reset() in one never change the other's."""

    @settings(
        max_examples=EXAMPLES[store_kind],
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(a=IDENTITY, b=IDENTITY)
    def check(a: tuple[Any, Any, Any], b: tuple[Any, Any, Any]) -> None:
        if a == b:
            return
        nonce = uuid.uuid4().hex  # keeps examples apart on a store that outlives them
        runs: list[str] = []

        @idempotent(store=store, effect=Effect.WRITE, scope=f"charge-{nonce}")
        def charge(amount: int, idempotency_key: str | None = None) -> int:
            runs.append("charge")
            return amount

        @cache_tool(store=store, namespace=f"balance-{nonce}", ttl_seconds=60)
        def balance() -> int:
            runs.append("balance")
            return len(runs)

        guard = LoopGuard(max_identical=1, store=store, namespace=f"g-{nonce}", mode="message")

        with _bind(a):
            charge(5)
            charge(5, idempotency_key="order-1")
            balance()
            assert guard.record("lookup", {"q": 1}) is None
        with _bind(b):
            charge(5)  # a's record is not b's: it runs
            # a's explicit key is b's only within one principal and tenant
            same_partition = _partition(a) == _partition(b)
            if same_partition:
                with pytest.raises(IdempotencyKeyMismatchError):
                    charge(6, idempotency_key="order-1")
            else:
                charge(6, idempotency_key="order-1")
            balance()
            cached_for_b = balance.cache.contains()
            assert guard.record("lookup", {"q": 1}) is None  # b's own budget
        expected_charges = 3 if same_partition else 4
        assert expected_charges == runs.count("charge")
        assert (1 if same_partition else 2) == runs.count("balance")
        # Deleting in a reaches nothing of b's.
        with _bind(a):
            balance.cache.clear()
            guard.reset()
        with _bind(b):
            if not same_partition:  # (within one, the entry is shared on purpose)
                assert cached_for_b == balance.cache.contains()
            assert guard.record("lookup", {"q": 1}) is not None  # b's count survived
            assert 5 == charge(5)  # b's record survived: a replay
        assert expected_charges == runs.count("charge")

    check()


def test_session_parts_are_checked() -> None:
    """A part that no store can keep gets a clear ValueError naming it, never a raw
    UnicodeEncodeError; empty parts and non-strings are refused."""
    with pytest.raises(ValueError, match="session id holds a lone surrogate"):
        session("chat-\ud800")
    with pytest.raises(ValueError, match="principal holds a lone surrogate"):
        session("chat", principal="\udfff")
    with pytest.raises(ValueError, match="tenant must be a non-empty str"):
        session("chat", tenant="")
    with pytest.raises(ValueError, match="session id must be a non-empty str"):
        session(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="session id must be a non-empty str, got list"):
        session(["chat"])  # type: ignore[arg-type]


def test_the_old_scope_collisions_are_gone() -> None:
    """session("acme/chat-9") is not session("chat-9", tenant="acme"), nor tenant "a" with id
    "b/c" tenant "a/b" with id "c"; scopes hold no raw separator."""
    pairs = [
        (session("acme/chat-9"), session("chat-9", tenant="acme")),
        (session("b/c", tenant="a"), session("c", tenant="a/b")),
        (session("x", principal="p/t=y"), session("x", principal="p", tenant="y")),
    ]
    for left, right in pairs:
        assert left.value.scope != right.value.scope
    assert ":" not in session("a:b", tenant="c:d", principal="e:f").value.scope


def test_the_key_spaces_are_spelled_as_stored() -> None:
    """Records, cache entries and guard budgets already stored are found by these strings:
    their spelling is pinned (each combination of parts, escaped)."""
    from retrysafe.framework import Session

    cases = {
        ("chat-9", None, None, None): ("-", "c=chat-9", "c=chat-9"),
        ("chat-9", "acme", None, "3"): ("t=acme", "t=acme/c=chat-9", "t=acme/c=chat-9/n=3"),
        ("chat-9", None, "alice", None): ("p=alice", "p=alice/c=chat-9", "p=alice/c=chat-9"),
        ("c/9", "a:b", "al=ice", "n 1"): (
            "p=al%3Dice/t=a%3Ab",
            "p=al%3Dice/t=a%3Ab/c=c%2F9",
            "p=al%3Dice/t=a%3Ab/c=c%2F9/n=n%201",
        ),
    }
    for (id_, tenant, principal, turn), expected in cases.items():
        made = Session(id_, tenant=tenant, principal=principal, turn=turn)
        assert (made.partition, made.scope, made.turn_scope) == expected


def test_a_nested_session_cannot_change_who_is_calling() -> None:
    """Tool code inside an integration's session keeps its principal and tenant."""
    with session("c", principal="alice", tenant="acme"):
        with session("other") as inner:
            assert ("alice", "acme") == (inner.principal, inner.tenant)
        with pytest.raises(ValueError, match="cannot change the principal"):
            session("other", principal="bob")
        with pytest.raises(ValueError, match="cannot change the tenant"):
            session("other", tenant="globex")


def test_an_explicit_key_of_another_tenant_neither_replays_nor_blocks(store: Store) -> None:
    """globex passing acme's idempotency_key="order-1": with the same arguments its own refund
    runs (no replay of acme's); with others, no mismatch error tells it the key exists."""
    refunds: list[str] = []

    @idempotent(store=store, effect=Effect.WRITE, scope=f"refund-{uuid.uuid4().hex}")
    def refund(order: str, idempotency_key: str | None = None) -> str:
        refunds.append(order)
        return f"re_{len(refunds)}"

    with session("c1", tenant="acme"):
        acme = refund("o-1", idempotency_key="order-1")
        assert acme == refund("o-1", idempotency_key="order-1")  # acme's own retry replays
    with session("c9", tenant="globex"):
        globex = refund("o-1", idempotency_key="order-1")
        other = refund("o-2", idempotency_key="order-2")
        refund("o-3", idempotency_key="order-2-other")
    assert acme != globex
    assert ["o-1", "o-1", "o-2", "o-3"] == refunds
    with session("c2", tenant="acme"), pytest.raises(IdempotencyKeyMismatchError):
        refund("o-9", idempotency_key="order-1")  # within acme, reuse is still an error
    assert other == "re_3"


def test_a_cached_read_of_one_tenant_is_not_served_to_another(store: Store) -> None:
    """my_balance() cached for acme is never globex's; a tool opting into sharing (data the
    same for everyone) has one entry for all."""
    calls: list[str] = []
    namespace = f"bal-{uuid.uuid4().hex}"

    @cache_tool(store=store, namespace=namespace, ttl_seconds=60)
    def my_balance() -> int:
        calls.append("balance")
        return len(calls)

    @cache_tool(store=store, namespace=namespace + "-w", ttl_seconds=60, same_for_everyone=True)
    def weather(city: str) -> str:
        calls.append("weather")
        return city

    with session("c", tenant="acme"):
        acme = my_balance()
        weather("Oslo")
    with session("c", tenant="globex"):
        assert acme != my_balance()
        weather("Oslo")
    with session("c2", tenant="acme"):
        assert acme == my_balance()  # acme's other conversation shares acme's entry
    assert ["balance", "weather", "balance"] == calls


def test_clearing_a_cache_named_like_the_records_leaves_them(store: Store) -> None:
    """cache_tool(namespace="idem").cache.clear() deletes no write record (the write would
    then run twice), and namespace "q" does not clear "q:y"."""
    runs: list[int] = []

    @idempotent(store=store, effect=Effect.WRITE, scope="pay")
    def pay(n: int) -> int:
        runs.append(n)
        return n

    @cache_tool(store=store, namespace="idem", ttl_seconds=60)
    def idem_named(n: int) -> int:
        return n

    @cache_tool(store=store, namespace="q", ttl_seconds=60)
    def q(n: int) -> int:
        return n

    @cache_tool(store=store, namespace="q:y", ttl_seconds=60)
    def qy(n: int) -> int:
        return n

    with session(f"conv-{uuid.uuid4().hex}"):
        pay(1)
        idem_named(1), q(1), qy(1)
        idem_named.cache.clear(every_caller=True)
        q.cache.clear(every_caller=True)
        pay(1)
        assert qy.cache.contains(1)
        assert not q.cache.contains(1)
    assert [1] == runs


def test_resetting_a_guard_session_leaves_its_prefix_mates(store: Store) -> None:
    """LoopGuard.reset() in session "chat" leaves "chat:1" (and "chat/1") counted."""
    guard = LoopGuard(max_identical=1, store=store, namespace=f"g-{uuid.uuid4().hex}")
    for sid in ("chat", "chat:1", "chat/1"):
        guard.record("t", {"a": 1}, session_id=sid)
    guard.reset(session_id="chat")
    assert guard.check("t", {"a": 1}, session_id="chat") is None
    for sid in ("chat:1", "chat/1"):
        assert guard.check("t", {"a": 1}, session_id=sid) is not None


@pytest.mark.parametrize("backend", ["redis", "cluster", "sqlite", "postgres"])
@pytest.mark.parametrize(
    ("mine", "theirs"),
    [("prod", "prod:eu"), ("app", "app%3Aeu"), ("*", "victim"), ("vic*", "victim"), ("a_", "ab")],
)
def test_a_store_prefix_never_clears_another_stores_keys(
    backend: str, request: pytest.FixtureRequest, mine: str, theirs: str
) -> None:
    """Two stores on one backend with prefixes that are glob, LIKE or separator neighbours:
    clear("") of one leaves the other's values, records and fences."""
    made = [_make_store(backend, request, prefix=p) for p in (mine, theirs)]
    try:
        mine_store, their_store = made
        their_store.set("cache:x:-:k", "theirs", 60)
        claim = their_store.claim("idem:r", "fp", "o", 30, 60, False)
        assert their_store.complete("idem:r", claim.fence, "done", 60)
        mine_store.set("cache:x:-:k", "mine", 60)
        mine_store.clear("")
        assert MISS == mine_store.get("cache:x:-:k")
        assert "theirs" == their_store.get("cache:x:-:k")
        assert "completed" == their_store.claim("idem:r", "fp", "o", 30, 60, False).status
    finally:
        for s in made:
            s.clear("")
            if hasattr(s, "close"):
                s.close()


async def test_identity_binds_on_asyncio_and_trio(anyio_backend: str) -> None:
    """The identity is context-local under both event loops: concurrent tasks of two
    principals naming one conversation never share a record."""
    runs: list[str] = []

    @idempotent(effect=Effect.WRITE, scope="t")
    async def charge(amount: int) -> str:
        await anyio.sleep(0.01)
        runs.append("x")
        return str(len(runs))

    results: dict[str, str] = {}

    async def call(principal: str) -> None:
        async with session("same-conversation", principal=principal):
            results[principal] = await charge(1)

    async with anyio.create_task_group() as tg:
        for principal in ("alice", "bob"):
            tg.start_soon(call, principal)
    assert 2 == len(runs) and results["alice"] != results["bob"]
    with pytest.raises(SessionRequiredError):
        await idempotent(effect=Effect.WRITE)(charge.__wrapped__)(1)
