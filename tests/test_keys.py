"""IdempKey: stable, scoped, collision-free derivation; validated explicit keys."""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retrysafe import FingerprintTypeError, IdempKey, canonical_json

from .strategies import extended


def test_for_args_layout() -> None:
    """str(key) is ik_ + 32 hex of the 64-hex digest; the derivation is the documented one."""
    key = IdempKey.for_args(scope="charge:session-1", args={"amount": 1000, "currency": "eur"})
    assert re.fullmatch(r"ik_[0-9a-f]{32}", str(key))
    assert re.fullmatch(r"[0-9a-f]{64}", key.hex)
    assert str(key)[3:] == key.hex[:32]
    assert "charge:session-1" == key.scope
    scope = b"charge:session-1"
    expected = hashlib.sha256(
        b"retrysafe/idempotency-key/v1\0"
        + len(scope).to_bytes(8, "big")
        + scope
        + canonical_json({"amount": 1000, "currency": "eur"})
    ).hexdigest()
    assert expected == key.hex


def test_uuid_is_rfc9562_version_8() -> None:
    """key.uuid is a UUIDv8 (RFC 9562 variant) made of the digest's first 128 bits."""
    key = IdempKey.for_args(scope="s", args=[1, 2, 3])
    u = uuid.UUID(key.uuid)
    assert 8 == u.version
    assert uuid.RFC_4122 == u.variant
    assert key.uuid == str(u)
    assert key.uuid.replace("-", "")[:12] == key.hex[:12]


@given(st.text(max_size=10), st.text(max_size=10), st.text(max_size=10), st.text(max_size=10))
def test_scope_boundaries_never_collide(a: str, b: str, c: str, d: str) -> None:
    """Different (scope, args) pairs give different keys, whatever the separators inside."""
    k1 = IdempKey.for_args(scope="s" + a, args=b)
    k2 = IdempKey.for_args(scope="s" + c, args=d)
    assert (k1 == k2) == (("s" + a, b) == ("s" + c, d))


def test_separator_collision_example() -> None:
    """('a', 'b\\0c') and ('a\\0b', 'c') are different keys (length-prefixed scope)."""
    assert IdempKey.for_args(scope="a", args="b\0c") != IdempKey.for_args(scope="a\0b", args="c")


@given(extended)
def test_same_args_same_key(value: Any) -> None:
    """Deriving twice gives equal keys that hash alike."""
    k1 = IdempKey.for_args(scope="tool", args=value)
    k2 = IdempKey.for_args(scope="tool", args=value)
    assert k1 == k2
    assert hash(k1) == hash(k2)


def test_secret_changes_the_key() -> None:
    """With a secret the key is an HMAC: same args, different secret, different key."""
    args = {"email": "ada@example.com"}
    plain = IdempKey.for_args(scope="mail", args=args)
    k1 = IdempKey.for_args(scope="mail", args=args, secret=b"one")
    k2 = IdempKey.for_args(scope="mail", args=args, secret=b"two")
    assert len({plain, k1, k2}) == 3


def test_bad_scope_and_args() -> None:
    """An empty or non-str scope and uncanonicalizable args raise clear errors."""
    with pytest.raises(ValueError, match="scope must not be empty"):
        IdempKey.for_args(scope="", args={})
    with pytest.raises(TypeError, match="scope must be a str"):
        IdempKey.for_args(scope=1, args={})  # type: ignore[arg-type]
    with pytest.raises(FingerprintTypeError, match=r"at args\['x'\]"):
        IdempKey.for_args(scope="s", args={"x": object()})


def test_explicit_key_kept_as_given() -> None:
    """An explicit key is sent as given, with a digest for stores."""
    key = IdempKey.explicit("order-2024-0001")
    assert "order-2024-0001" == str(key)
    assert key.scope is None
    assert 64 == len(key.hex)
    assert key == IdempKey.explicit("order-2024-0001")
    assert "IdempKey('order-2024-0001', scope=None)" == repr(key)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("", "must not be empty"),
        ("x" * 256, "at most 255"),
        ("caf\u00e9", "printable ASCII: 'é' at index 3"),
        ("a\nb", r"printable ASCII: '\\n' at index 1"),
        (" padded", "start or end with a space"),
    ],
)
def test_explicit_key_validation(bad: str, message: str) -> None:
    """Explicit keys: 1 to 255 printable ASCII characters, the error says what is wrong."""
    with pytest.raises(ValueError, match=message):
        IdempKey.explicit(bad)
    IdempKey.explicit("x" * 255)
