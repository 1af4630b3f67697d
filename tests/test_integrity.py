"""Nothing leaked, nothing returned that was not stored: tampered records, secrets in URLs
and log lines, TLS clients' asyncio twins."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from typing import Any

import pytest

from retrysafe import Effect, RetryConfig, RetryExhausted, StoreError, idempotent, session
from retrysafe import with_retry as with_retry_fn
from retrysafe.stores import Store
from retrysafe.stores._codec import HEADER
from retrysafe.testing import retries_disabled_waits

from .conftest import _make_store

SHARED = ["redis", "cluster", "sqlite", "postgres"]


def _tamper(store: Any, kind: str, key: str, request: pytest.FixtureRequest, **fields: Any) -> None:
    """Overwrite fields of a record behind the store's back, as a stray script would."""
    if kind == "sqlite":
        with sqlite3.connect(store.path) as conn:
            for name, value in fields.items():
                conn.execute(
                    f"UPDATE retrysafe_records SET {name} = ? WHERE key = ?", (value, store._k(key))
                )
        return
    if kind == "postgres":
        import psycopg

        with psycopg.connect(request.getfixturevalue("postgres_url"), autocommit=True) as conn:
            for name, value in fields.items():
                conn.execute(
                    f"UPDATE retrysafe_records SET {name} = %s WHERE key = %s",
                    (value, store._k(key)),
                )
        return
    for name, value in fields.items():
        store._sync.hset(store._record(key), name, value if value is not None else b"")


@pytest.mark.parametrize("kind", SHARED)
@pytest.mark.parametrize(
    "payload",
    [b"garbage", HEADER + b'{"unclosed', HEADER + b"[" * 5000 + b"]" * 5000, None],
    ids=["foreign", "bad-json", "too-deep", "null"],
)
def test_an_unreadable_completed_result_is_a_store_error(
    kind: str, payload: bytes | None, request: pytest.FixtureRequest
) -> None:
    """A COMPLETED record whose result cannot be read: StoreError naming the key, never the
    MISS sentinel as a result, never a second run of the write."""
    store: Any = _make_store(kind, request)
    ran: list[int] = []

    @idempotent(store=store, effect=Effect.WRITE, scope=f"pay-{uuid.uuid4().hex}")
    def pay(n: int) -> int:
        ran.append(n)
        return n

    try:
        with session("c"):
            assert 1 == pay(1)
            record_key = f"idem:{pay.idempotency.key_for(1).hex}"  # type: ignore[attr-defined]
            _tamper(store, kind, record_key, request, payload=payload)
            with pytest.raises(StoreError, match="unreadable") as caught:
                pay(1)
            assert record_key in str(caught.value)
        assert [1] == ran
    finally:
        _close(store)


@pytest.mark.parametrize("kind", SHARED)
def test_a_tampered_fence_is_a_store_error(kind: str, request: pytest.FixtureRequest) -> None:
    """A fence that is not a number: StoreError naming the key, not a raw ValueError."""
    store: Any = _make_store(kind, request)
    try:
        claim = store.claim("idem:k", "fp", "o", 30, 60, False)
        assert store.complete("idem:k", claim.fence, "done", 60)
        _tamper(store, kind, "idem:k", request, fence="not-a-number")
        with pytest.raises(StoreError, match=r"fence of record .*idem:k"):
            store.claim("idem:k", "fp", "o", 30, 60, False)
    finally:
        _close(store)


def _close(store: Store) -> None:
    store.clear("")
    closer = getattr(store, "close", None)
    if closer is not None:
        closer()


def test_passwords_in_redis_urls_are_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    """``user:pass@`` and ``?password=`` are redacted in the repr, in every StoreError and in
    the durability warning."""
    from retrysafe.stores import RedisStore

    url = "redis://ada:SEKRET1@127.0.0.1:1/0?password=SEKRET2&socket_timeout=0.2"
    store = RedisStore(url, prefix="p")
    assert "SEKRET" not in repr(store)
    assert "***" in repr(store)
    with pytest.raises(StoreError) as caught:
        store.get("k")
    assert "SEKRET" not in str(caught.value)

    @idempotent(store=store, effect=Effect.WRITE, scope="x")
    def write(n: int) -> int:
        return n

    with caplog.at_level("INFO", logger="retrysafe"), pytest.raises(StoreError) as again:
        write(1)
    assert "SEKRET" not in str(again.value)
    assert all("SEKRET" not in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError) as bad:
        RedisStore("http://u:SEKRET3@host/?token=SEKRET4")
    assert "SEKRET" not in str(bad.value)


def test_retry_log_lines_and_errors_carry_no_error_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A retried error's message often holds an argument (a token): the log lines and
    RetryExhausted say its type (and status), never its text."""

    def lookup(token: str) -> str:
        raise TimeoutError(f"upstream timed out for token={token}")

    retried = with_retry_fn(lookup, config=RetryConfig(max_attempts=3, base_delay=0.01))
    with retries_disabled_waits(), caplog.at_level(logging.WARNING, logger="retrysafe"):
        with pytest.raises(RetryExhausted) as caught:
            retried("SEKRET-123")
    lines = [r.getMessage() for r in caplog.records]
    assert lines and all("SEKRET" not in line for line in lines)
    assert any("TimeoutError" in line for line in lines)
    assert "SEKRET" not in str(caught.value)
    assert isinstance(caught.value.last_error, TimeoutError)  # the error itself is kept


def test_an_ssl_redis_client_gets_an_asyncio_twin() -> None:
    """redis.Redis(ssl=True) carries OCSP settings redis.asyncio refuses: the twin is built
    with those it takes."""
    import redis

    from retrysafe.stores import RedisStore

    store = RedisStore(redis.Redis(host="127.0.0.1", port=1, ssl=True))
    client = store._build_async()
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"


class Receipt:
    """A result no store can serialize."""


def _generator() -> Any:
    yield 1


UNSTORABLE = [
    ({"a", "b"}, "set"),
    (b"\x00bytes", "bytes"),
    (Receipt(), "object"),
    ({1: "int key"}, "int-keys"),
    (2**70, "big-int"),
    (_generator(), "generator"),
]


@pytest.mark.parametrize(("value", "what"), UNSTORABLE, ids=[w for _, w in UNSTORABLE])
def test_a_result_no_store_can_keep_is_never_lost(store: Store, value: Any, what: str) -> None:
    """A write that ran and returned what the store cannot keep: OutcomeUnknownError with
    the value on it (every store alike, memory included), the record UNKNOWN at once (not
    IN_PROGRESS until the lease ends), and resolve() settles it from the error."""
    from retrysafe import OutcomeUnknownError, resolve

    charges: list[int] = []

    @idempotent(store=store, effect=Effect.WRITE, scope=f"w-{uuid.uuid4().hex}")
    def charge(n: int) -> Any:
        charges.append(n)
        return value

    with session("c"):
        with pytest.raises(OutcomeUnknownError) as caught:
            charge(1)
        assert caught.value.result is value
        assert isinstance(caught.value.__cause__, StoreError)
        with pytest.raises(OutcomeUnknownError) as again:  # UNKNOWN now, not in progress
            charge(1)
        assert again.value.result is None
        resolve(caught.value, applied={"receipt": what})
        assert {"receipt": what} == charge(1)
    assert [1] == charges


def test_results_round_trip_alike_on_every_store(store: Store) -> None:
    """A tuple comes back a list from every store (memory included), a nested dict as is."""

    @idempotent(store=store, effect=Effect.WRITE, scope=f"t-{uuid.uuid4().hex}")
    def made(n: int) -> Any:
        return (n, {"k": [1.5, None, True]})

    with session("c"):
        first = made(1)
        assert (1, {"k": [1.5, None, True]}) == first  # the caller gets what ran
        assert [1, {"k": [1.5, None, True]}] == made(1)  # a replay: what the store kept


async def test_an_async_write_whose_result_is_not_stored_keeps_it(
    astore: Store, anyio_backend: str
) -> None:
    """The async path alike: OutcomeUnknownError carrying the value, the record UNKNOWN."""
    from retrysafe import OutcomeUnknownError

    @idempotent(store=astore, effect=Effect.WRITE, scope=f"a-{uuid.uuid4().hex}")
    async def charge(n: int) -> Any:
        return {n, n + 1}

    async with session("c"):
        with pytest.raises(OutcomeUnknownError) as caught:
            await charge(1)
        assert {1, 2} == caught.value.result
        with pytest.raises(OutcomeUnknownError):
            await charge(1)


def test_postgres_connection_failures_say_which(postgres_url: str) -> None:
    """An unreachable server, a refused login and a TLS demand the server cannot meet are
    each named, not hidden behind the pool's PoolTimeout; no password is shown."""
    from urllib.parse import urlsplit

    from retrysafe.stores import PostgresStore

    parts = urlsplit(postgres_url)
    host, port = parts.hostname, parts.port
    cases = {
        "server unreachable": "postgresql://postgres:SEKRET@127.0.0.1:1/none",
        "authentication failed": f"postgresql://no_such_role:SEKRET@{host}:{port}/postgres",
        "TLS failed": f"postgresql://postgres:SEKRET@{host}:{port}/postgres?sslmode=require",
    }
    for kind, url in cases.items():
        store = PostgresStore(url, prefix="x", timeout=0.5)  # connects at first use
        with pytest.raises(StoreError) as caught:
            store.get("k")
        store.close()  # its pool's threads stop here, not in a later test's collection
        assert kind in str(caught.value), str(caught.value)
        assert "SEKRET" not in str(caught.value)


def _self_signed(directory: Any) -> tuple[str, str]:
    """A certificate and key for 127.0.0.1 (cryptography, from the test extras)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


def test_a_tls_redis_works_from_sync_asyncio_and_trio(tmp_path: Any) -> None:
    """A real redis-server speaking only TLS: a store built from redis.Redis(ssl=True) and
    one from a rediss:// URL read and write from sync code, asyncio and trio."""
    import os
    import socket
    import subprocess
    import time

    import anyio
    import redis

    from retrysafe.stores import RedisStore

    cert, key = _self_signed(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            os.environ.get("REDIS_SERVER") or "redis-server",
            "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", cert,
            "--tls-auth-clients", "no", "--save", "", "--appendonly", "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=cert)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        stores = [
            RedisStore(client, prefix="tls"),
            RedisStore(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}", prefix="tls"),
        ]
        for i, store in enumerate(stores):
            store.set(f"k{i}", {"v": i}, 60)
            assert {"v": i} == store.get(f"k{i}")

            async def read(store: Any = store, i: int = i) -> Any:
                return await store.aget(f"k{i}")

            assert {"v": i} == anyio.run(read)
            assert {"v": i} == anyio.run(read, backend="trio")
            store.close()
        client.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
