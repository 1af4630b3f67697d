"""What the execution engines need of every store and decorated tool: nothing is opened at
import or decoration time (Temporal's workflow sandbox refuses it; a Celery module is
imported before the fork), a store pickles by its URL, and a tool defined in ``__main__``
travels by value (cloudpickle, as Ray sends it) and works in the process that loads it."""

from __future__ import annotations

import pickle
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from retrysafe import StoreError, idempotent, session, tool
from retrysafe.stores import MISS, MemoryStore, PostgresStore, RedisStore, SQLiteStore

from .conftest import _make_store


def _silent_port() -> int:
    """A loopback port that accepts TCP connections and never answers: a store that tried to
    talk to it at construction would hang or fail, and `accepted()` tells whether it did."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)
    _LISTENERS.append(listener)
    return int(listener.getsockname()[1])


_LISTENERS: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_listeners() -> Any:
    yield
    while _LISTENERS:
        _LISTENERS.pop().close()


def _accepted(port: int) -> int:
    listener = next(s for s in _LISTENERS if s.getsockname()[1] == port)
    count = 0
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


@pytest.mark.parametrize(
    "make",
    [
        lambda port, path: RedisStore(f"redis://127.0.0.1:{port}/0", command_timeout=0.5),
        lambda port, path: RedisStore(f"redis+cluster://127.0.0.1:{port}", command_timeout=0.5),
        lambda port, path: PostgresStore(f"postgresql://u@127.0.0.1:{port}/db", timeout=0.5),
        lambda port, path: SQLiteStore(path / "missing-dir" / "records.db"),
    ],
    ids=["redis", "cluster", "postgres", "sqlite"],
)
def test_building_a_store_and_decorating_with_it_opens_nothing(make: Any, tmp_path: Path) -> None:
    port = _silent_port()
    store = make(port, tmp_path)

    @tool.write(store=store)
    def charge(order: str) -> str:
        """Charge an order."""
        return order

    @idempotent(store=store, effect="write", scope="s")
    async def refund(order: str) -> str:
        return order

    assert 0 == _accepted(port)  # no connection was made
    assert not (tmp_path / "missing-dir").exists()  # no file was made
    with session("c"), pytest.raises(StoreError):  # the first use reaches the store
        charge("o-1")
    close = getattr(store, "close", None)
    if close is not None:
        close()


@pytest.mark.parametrize("kind", ["redis", "cluster", "postgres", "sqlite"])
def test_a_store_pickles_by_its_url_and_works_where_it_is_loaded(
    kind: str, request: pytest.FixtureRequest
) -> None:
    store: Any = _make_store(kind, request)
    store.set("k", {"v": 1}, None)
    copy = pickle.loads(pickle.dumps(store))
    assert type(copy) is type(store) and copy is not store
    assert copy.prefix == store.prefix
    assert {"v": 1} == copy.get("k")  # the same data, through its own connections
    assert "password" not in repr(copy)
    copy.close()
    store.close()


def test_a_store_built_on_a_client_says_why_it_cannot_travel(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    with pytest.raises(TypeError, match="URL"):
        pickle.dumps(RedisStore(client))
    client.close()


def test_a_memory_store_arrives_empty_with_its_settings() -> None:
    store = MemoryStore(max_size=7)
    store.set("k", 1, None)
    copy = pickle.loads(pickle.dumps(store))
    assert isinstance(copy, MemoryStore) and 7 == copy.max_size
    assert MISS is copy.get("k")  # nothing of this process's entries
    assert 1 == store.get("k")


_MAIN = textwrap.dedent(
    """
    import sys
    from ray import cloudpickle
    from retrysafe import LoopGuard, RetryBudget, RetryConfig, cache_tool, idempotent, tool

    STORE, LEDGER = sys.argv[1], sys.argv[3]  # globals of __main__: they travel by value

    @tool.write(store=STORE)
    async def charge(order: str) -> str:
        \"\"\"Charge an order.\"\"\"
        with open(LEDGER, "a") as ledger:
            ledger.write(order + "\\n")
        return "charged " + order

    @tool.read(store=STORE, guard=LoopGuard(max_identical=2),
               retry=RetryConfig(budget=RetryBudget()))
    def weather(city: str) -> str:
        \"\"\"The weather in a city.\"\"\"
        return "sunny in " + city

    @cache_tool
    async def double(x: int) -> int:
        return 2 * x

    @idempotent(store=STORE, effect="write", scope="refund")
    def refund(order: str) -> str:
        with open(LEDGER, "a") as ledger:
            ledger.write("refund " + order + "\\n")
        return "refunded " + order

    with open(sys.argv[2], "wb") as out:
        cloudpickle.dump((charge, weather, double, refund), out)
    """
)

_WORKER = textwrap.dedent(
    """
    import pickle, sys
    import anyio
    from retrysafe import session

    with open(sys.argv[1], "rb") as f:
        charge, weather, double, refund = pickle.load(f)

    async def main():
        with session("conv-1"):
            print(await charge("o-1"), await charge("o-1"))
        print(weather("Paris"), weather("Paris"), weather.cache.stats()["hits"])
        print(await double(4), await double(4), double.cache.stats()["hits"])
        print(refund("o-9"))

    anyio.run(main)
    """
)


def test_tools_defined_in_main_travel_by_value_and_run_once(tmp_path: Path) -> None:
    """A script's tools, pickled by cloudpickle (as Ray does for ``__main__``), loaded by two
    worker processes in turn: each works there, and the second replays the first's records."""
    store = f"sqlite:///{tmp_path / 'records.db'}"
    blob, ledger = tmp_path / "tools.pkl", tmp_path / "ledger"
    (tmp_path / "main.py").write_text(_MAIN)
    (tmp_path / "worker.py").write_text(_WORKER)
    subprocess.run(
        [sys.executable, str(tmp_path / "main.py"), store, str(blob), str(ledger)],
        check=True,
        cwd=tmp_path,
    )
    outputs = [
        subprocess.run(
            [sys.executable, str(tmp_path / "worker.py"), str(blob)],
            check=True,
            capture_output=True,
            text=True,
            cwd=tmp_path,
        ).stdout.split("\n")
        for _ in range(2)
    ]
    for lines in outputs:
        assert "charged o-1 charged o-1" == lines[0]
        assert lines[1].startswith("sunny in Paris sunny in Paris")
        assert "8 8 1" == lines[2]
        assert "refunded o-9" == lines[3]
    assert ["o-1", "refund o-9"] == ledger.read_text().split("\n")[:-1]  # once, across both


def test_an_unpickled_handle_keeps_its_options() -> None:
    @idempotent(store=MemoryStore(), effect="write", scope=f"s-{uuid.uuid4().hex}", lease_seconds=7)
    def pay(amount: int) -> int:
        return amount

    from ray import cloudpickle  # a local function travels by value

    copy: Any = pickle.loads(cloudpickle.dumps(pay.idempotency))
    assert 7 == copy.lease and pay.idempotency.scope == copy.scope
    assert copy.effect is pay.idempotency.effect


_CRASH = textwrap.dedent(
    """
    import os, sys
    from retrysafe import idempotent, session, side_effect_started

    store, scope, where, ledger = sys.argv[1:5]

    @idempotent(store=store, effect="write", scope=scope, checkpoint=True, lease_seconds=1)
    def charge(order: str) -> str:
        if where == "before":
            os._exit(9)  # the process dies before its side effect could start
        side_effect_started()
        with open(ledger, "a") as f:
            f.write(order + "\\n")
        if where == "after":
            os._exit(9)  # ... or right after it
        return "charged " + order

    with session("conv-1"):
        print(charge("o-1"))
    """
)


@pytest.mark.parametrize("kind", ["redis", "cluster", "postgres", "sqlite"])
@pytest.mark.parametrize("where", ["before", "after"])
def test_a_write_whose_owner_died_before_its_checkpoint_runs_again(
    kind: str, where: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """An owner killed before ``side_effect_started()`` cannot have acted: once its lease runs
    out the next call takes the record over and charges (it was left UNKNOWN for ever, and
    a Temporal activity killed beside another never charged). Killed after it: UNKNOWN."""
    import time

    from retrysafe import OutcomeUnknownError

    store: Any = _make_store(kind, request)
    url = {
        "redis": lambda: request.getfixturevalue("redis_url"),
        "cluster": lambda: request.getfixturevalue("redis_cluster_url"),
        "postgres": lambda: request.getfixturevalue("postgres_url"),
        "sqlite": lambda: f"sqlite:///{store.path}",
    }[kind]()
    script, ledger = tmp_path / "crash.py", tmp_path / "ledger"
    script.write_text(_CRASH)
    scope = f"crash-{uuid.uuid4().hex[:8]}"
    crashed = subprocess.run([sys.executable, str(script), url, scope, where, str(ledger)])
    assert 9 == crashed.returncode
    time.sleep(1.2)  # past the dead owner's lease

    @idempotent(store=url, effect="write", scope=scope, checkpoint=True, lease_seconds=1)
    def charge(order: str) -> str:
        from retrysafe import side_effect_started

        side_effect_started()
        with open(ledger, "a") as f:
            f.write(order + "\n")
        return "charged " + order

    with session("conv-1"):
        if where == "before":
            assert "charged o-1" == charge("o-1")  # taken over: it runs, once
            assert "charged o-1" == charge("o-1")  # and replays
        else:
            with pytest.raises(OutcomeUnknownError):
                charge("o-1")
    assert ["o-1"] == ledger.read_text().split()
    store.close()


@given(
    st.lists(st.text(max_size=6), min_size=1, max_size=4),
    st.lists(st.text(max_size=6), min_size=1, max_size=4),
)
def test_unit_ids_are_injective(a: list[str], b: list[str]) -> None:
    """Two engines' units, or two units of one engine, never share an identity, whatever
    their ids hold (``|``, ``%``, ``/``...)."""
    from retrysafe.framework import unit_id

    assume(a != b)
    assert unit_id("x", *a) != unit_id("x", *b)
    assert unit_id("temporal", *a) != unit_id("temporal-activity", *a)


_ID_TEXT = st.text(
    st.sampled_from([*"ab09-._|%/:=*?[]{}\\ ", "\x00", "\x1f", "\x7f", "é", "€", "😀"]),
    max_size=8,
)


@given(st.lists(_ID_TEXT, max_size=4))
def test_unit_id_is_its_parts_escaped_and_joined(parts: list[str]) -> None:
    """Escaping the joined parts at once (where no part holds a "|") gives exactly what
    escaping each part does: the definition, over parts with and without delimiters,
    controls and non-ASCII characters."""
    from retrysafe._identity import _UNSAFE, _percent
    from retrysafe.framework import escape, unit_id

    expected = "|".join(
        ["celery", *(_UNSAFE.sub(_percent, part).replace("|", "%7C") for part in parts)]
    )
    assert unit_id("celery", *parts) == expected
    for part in parts:
        assert escape(part) == _UNSAFE.sub(_percent, part)


def test_unit_id_refuses_what_has_no_text() -> None:
    from retrysafe.framework import unit_id

    with pytest.raises(ValueError, match="a unit id must be a str, got int"):
        unit_id("ray", "job", 7)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a unit id holds a lone surrogate at index 1"):
        unit_id("ray", "job", "a\ud800")


def test_an_engine_unit_id_needs_no_escaping_by_the_session() -> None:
    """Hex, UUIDs and dotted task names: the session's encoding leaves the id as it is (no
    second escaping on every unit: the cost the engine bench measures)."""
    from retrysafe.framework import escape, unit_id

    made = unit_id("celery", "billing.tasks.charge_order", str(uuid.uuid4()))
    assert escape(made) == made
    made = unit_id("ray", "01000000", uuid.uuid4().hex)
    assert escape(made) == made
