"""The demo: what the fingerprint and idempotency keys give an agent's tool calls."""

from __future__ import annotations

import datetime
import decimal
import time

from . import IdempKey, canonical_json, fingerprint
from ._exceptions import FingerprintError


def _line(label: str, value: object) -> None:
    print(f"  {label:<34} {value}")


def run() -> int:
    """Print a short, self-checking tour; returns 0 when every claim held."""
    print("retrysafe: canonical fingerprints and idempotency keys for agent tool calls\n")

    # The model sends the same arguments twice, in a different order and with 1000.0.
    first = {"amount": 1000, "currency": "eur", "customer": "cus_42", "tags": {"vip", "eu"}}
    retry = {"tags": {"eu", "vip"}, "customer": "cus_42", "currency": "eur", "amount": 1000.0}
    other = {**first, "amount": 1001}
    print("1. The model retries a charge with the same arguments, reordered:")
    _line("canonical JSON", canonical_json(first).decode())
    _line("fingerprint (first call)", fingerprint(first))
    _line("fingerprint (retry)", fingerprint(retry))
    _line("fingerprint (amount 1001)", fingerprint(other))
    same = fingerprint(first) == fingerprint(retry) != fingerprint(other)

    print("\n2. An idempotency key scoped to the session, sent to the payments API:")
    k1 = IdempKey.for_args(scope="charge:session-7", args=first)
    k2 = IdempKey.for_args(scope="charge:session-7", args=retry)
    k3 = IdempKey.for_args(scope="charge:session-8", args=first)
    _line("Idempotency-Key (first call)", k1)
    _line("Idempotency-Key (retry)", k2)
    _line("Idempotency-Key (another session)", k3)
    _line("as a UUIDv8", k1.uuid)
    keys_ok = k1 == k2 != k3

    print("\n3. Values beyond JSON have one documented form:")
    rich = {
        "when": datetime.datetime(2026, 11, 28, 9, 30, tzinfo=datetime.timezone.utc),
        "price": decimal.Decimal("19.90"),
        "blob": b"\x00\x01",
    }
    _line("canonical JSON", canonical_json(rich).decode())

    print("\n4. Bad input gets an error that says what and where:")
    try:
        fingerprint({"items": [1, 2, {"price": float("nan")}]})
        errors_ok = False
    except FingerprintError as err:
        _line(type(err).__name__, err)
        errors_ok = True

    payload = {"records": [{"id": i, "name": f"item {i}", "score": i / 7} for i in range(1000)]}
    start = time.perf_counter()
    for _ in range(20):
        fingerprint(payload)
    per_call = (time.perf_counter() - start) / 20
    print(f"\n5. Speed: a 1,000-record payload fingerprints in {per_call * 1e6:.0f} µs.")

    ok = same and keys_ok and errors_ok
    print("\nAll claims held." if ok else "\nA claim did not hold: please report it.")
    return 0 if ok else 1
