"""Properties of the canonical form, checked against an independent reference encoder."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from retrysafe import canonical_json, fingerprint

from . import reference
from .strategies import SAFE_INT, extended, floats, plain_json


@given(plain_json)
def test_plain_json_matches_rfc8785(value: Any) -> None:
    """On plain JSON values the bytes are exactly those of the rfc8785 package."""
    assert rfc8785.dumps(value) == canonical_json(value)


@given(extended)
def test_matches_reference_encoder(value: Any) -> None:
    """The Rust encoder and the pure-Python reference agree byte for byte on every type."""
    assert reference.canonical(value) == canonical_json(value)


@given(floats)
def test_every_float_matches_reference_and_round_trips(value: float) -> None:
    """Across the whole double range: ECMAScript layout, and the text parses back exactly."""
    text = canonical_json(value)
    assert reference.canonical(value) == text
    assert value == json.loads(text, parse_int=float)


# Keys for wide dicts (32 keys and more are sorted by their bytes when no key holds a
# character where UTF-8 and UTF-16 order part): shared prefixes longer than the 8 bytes
# compared at once, NUL bytes, keys that are prefixes of others, and, in the last
# alphabet, characters of U+E000..U+FFFF and supplementary ones (the UTF-16 path).
_WIDE_ALPHABETS = [
    st.sampled_from(["a", "b", "\x00", "\x7f", "é", "ß", "\u0800", "\ud7ff"]),
    st.characters(max_codepoint=0xD7FF, exclude_categories=["Cs"]),
    st.characters(exclude_categories=["Cs"]),
]


@pytest.mark.parametrize("alphabet", range(len(_WIDE_ALPHABETS)), ids=["few", "below-e000", "all"])
@given(data=st.data())
def test_wide_dicts_sort_as_rfc8785(alphabet: int, data: st.DataObject) -> None:
    """Dicts of 32 to 400 keys: the bytes are rfc8785's (UTF-16 key order) whichever sort
    path the encoder takes."""
    chars = _WIDE_ALPHABETS[alphabet]
    stem = data.draw(st.text(chars, max_size=12))
    keys = st.builds(lambda tail: stem + tail, st.text(chars, max_size=6)) | st.text(
        chars, max_size=10
    )
    value = data.draw(st.dictionaries(keys, st.integers(-5, 5), min_size=32, max_size=400))
    assert rfc8785.dumps(value) == canonical_json(value)


@pytest.mark.parametrize("alphabet", range(len(_WIDE_ALPHABETS)), ids=["few", "below-e000", "all"])
@given(data=st.data())
def test_wide_dicts_with_a_shared_stem_sort_as_rfc8785(alphabet: int, data: st.DataObject) -> None:
    """Every key of a wide dict shares a stem of up to 40 characters (ids, URLs, timestamps
    of one day), which the encoder skips when it sorts: one key may be the stem itself or
    end inside the 8 bytes after it; values of every leaf kind and containers."""
    chars = _WIDE_ALPHABETS[alphabet]
    stem = data.draw(st.text(chars, max_size=40))
    keys = st.builds(lambda tail: stem + tail, st.text(chars, max_size=10))
    ints = st.integers(-SAFE_INT, SAFE_INT)
    values = st.none() | st.booleans() | ints | st.text(max_size=20) | st.lists(ints, max_size=2)
    value = data.draw(st.dictionaries(keys, values, min_size=33, max_size=300))
    assert rfc8785.dumps(value) == canonical_json(value)
    assert fingerprint(value) == hashlib.sha256(rfc8785.dumps(value)).hexdigest()


# Items of small lists: scalars the item and member loops write in place, and values they
# leave to the general writer (a str past 64 bytes or with escapes, a big int, a tuple, a
# container), so that lists of up to four items are written in place or not, whole.
_ITEMS = (
    st.integers(-SAFE_INT, SAFE_INT)
    | st.integers()
    | floats
    | st.none()
    | st.booleans()
    | st.text(max_size=70)
    | st.text(st.sampled_from('a"\\\n\u00e9'), min_size=60, max_size=70)
    | st.tuples(st.integers())
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=2), st.integers(), max_size=2)
)


@given(st.lists(st.lists(_ITEMS, max_size=6), min_size=1, max_size=8))
def test_small_lists_match_reference_in_every_loop(smalls: list[list[Any]]) -> None:
    """Lists of 0 to 6 items (up to four scalars are written in place) as items of a
    list, as values of records of one layout and as values of a wide dict: byte for byte
    the reference's."""
    records = [{"id": i, "tags": s} for i, s in enumerate(smalls)]
    wide = {f"key{i:02d}": smalls[i % len(smalls)] for i in range(40)}
    for value in (smalls, records, wide, {"records": records, "wide": wide}):
        assert reference.canonical(value) == canonical_json(value)
        assert hashlib.sha256(reference.canonical(value)).hexdigest() == fingerprint(value)


@given(st.dictionaries(st.text(max_size=5), st.integers(), min_size=2, max_size=8), st.randoms())
def test_dict_order_never_changes_the_key(value: dict[str, int], rnd: random.Random) -> None:
    """Insertion order of a dict is not part of its fingerprint."""
    items = list(value.items())
    rnd.shuffle(items)
    assert fingerprint(value) == fingerprint(dict(items))


# A few interned key objects, shared by every example: dicts built from them hit the
# encoder's layout cache, which keys layouts by key identity and survives between calls.
# Prefixes (`,"key":`) of 16 bytes and longer take another path than shorter ones.
_POOL = [
    sys.intern(k)
    for k in (
        "id",
        "name",
        "\u20ac",
        "\U0001f600",
        "a\nb",
        "z",
        "\ufb33",
        "twelve_chars",
        "fourteen_chars",
        "a_key_longer_than_its_sixteen_byte_copy",
    )
]
# Leaves the member loop writes itself, and values it hands to the general writer.
_VALUES = (
    st.integers()
    | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.none()
    | st.booleans()
    | st.lists(st.integers() | st.text(max_size=3), max_size=3)
)


@given(
    st.lists(
        st.lists(st.sampled_from(_POOL), min_size=1, unique=True).flatmap(
            lambda keys: st.fixed_dictionaries({k: _VALUES for k in keys})
        ),
        min_size=1,
        max_size=6,
    ),
    st.randoms(),
)
def test_repeated_layouts_match_reference(dicts: list[dict[str, Any]], rnd: random.Random) -> None:
    """Dicts sharing key objects, in any insertion order and mix, nested or in sequence,
    encode exactly as the reference on every call (the layout cache is never stale)."""
    for _ in range(3):
        batch = [dict(rnd.sample(list(d.items()), len(d))) for d in rnd.sample(dicts, len(dicts))]
        for d in batch:
            assert reference.canonical(d) == canonical_json(d)
        nested = {"records": batch, "first": batch[0]}
        assert reference.canonical(nested) == canonical_json(nested)
        expected = hashlib.sha256(reference.canonical(nested)).hexdigest()
        assert expected == fingerprint(nested)


@given(st.integers(-SAFE_INT, SAFE_INT))
def test_int_and_equal_float_share_a_key(n: int) -> None:
    """`1` and `1.0` (equal values) give one key."""
    assert fingerprint({"amount": n}) == fingerprint({"amount": float(n)})


@given(st.integers(), st.text(max_size=8))
def test_int_key_and_its_string_share_a_key(n: int, value: str) -> None:
    """`{1: x}` and `{"1": x}` canonicalize alike, so together in one dict they conflict."""
    assert canonical_json({n: value}) == canonical_json({str(n): value})


@given(extended, st.binary(min_size=1, max_size=64))
def test_hmac_differs_from_plain_and_depends_on_secret(value: Any, secret: bytes) -> None:
    """With a secret the digest is HMAC-SHA256 over the same canonical bytes."""
    import hmac

    expected = hmac.new(secret, canonical_json(value), hashlib.sha256).hexdigest()
    assert expected == fingerprint(value, secret=secret)
    assert hashlib.sha256(canonical_json(value)).hexdigest() == fingerprint(value)


def test_sets_give_the_same_key_under_any_hash_seed() -> None:
    """A set of strings iterates in hash order, which PYTHONHASHSEED changes; the key does not."""
    code = (
        "from retrysafe import fingerprint;"
        "print(fingerprint({'tags': {'alpha', 'beta', 'gamma', 'delta', 'x' * 40, 'é'},"
        " 'ids': frozenset(['a1', 'b2', 'c3'])}));"
    )
    digests = set()
    orders = set()
    for seed in ("1", "2", "3"):
        out = subprocess.run(
            [sys.executable, "-c", code + "print(list({'alpha','beta','gamma','delta'}))"],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        digests.add(out[0])
        orders.add(out[1])
    assert 1 == len(digests)
    assert len(orders) > 1, "the seeds did not change set order, so the test proved nothing"


# Ints of 0, 1 and 2 thirty-bit digits are read in place, longer ones through the C API;
# these sit on each side of every boundary.
_INT_EDGES = sorted(
    {
        s * (base + d)
        for base in (0, 2**30, 2**53, 2**60, 2**63, 2**64)
        for d in (-1, 0, 1)
        for s in (1, -1)
    }
)


@pytest.mark.parametrize("n", _INT_EDGES)
def test_ints_at_digit_boundaries(n: int) -> None:
    """Every int prints its exact digits, in a list and as a dict value."""
    assert canonical_json([n, {"n": n}]) == f'[{n},{{"n":{n}}}]'.encode()


class _Str(str):
    pass


def test_every_str_representation_gives_the_same_bytes() -> None:
    """ASCII and non-ASCII strs, before and after CPython caches their UTF-8, and str
    subclasses (stored differently) encode alike, as values and as keys."""
    fresh = "".join(["caf", "\u00e9 \u20ac \U0001f600"])  # built at run time: no UTF-8 cache
    expected = '{"caf\u00e9 \u20ac \U0001f600":["caf\u00e9 \u20ac \U0001f600","ascii"]}'.encode()
    for _ in range(2):  # the first call makes CPython cache the UTF-8, the second reads it
        assert canonical_json({fresh: [fresh, "ascii"]}) == expected
    assert canonical_json({_Str(fresh): [_Str(fresh), _Str("ascii")]}) == expected


class _Attrs:
    def __init__(self) -> None:
        self.b = 2
        self.a = 1


@given(st.dictionaries(st.text(max_size=4), st.integers(), max_size=40), st.data())
def test_dicts_with_deleted_entries_and_any_table_kind(
    value: dict[str, int], data: st.DataObject
) -> None:
    """Dicts whose entry table has holes (deleted keys), non-str keys (the general table
    kind), key-sharing instance dicts, and tables past 256 slots encode as the reference."""
    d: dict[Any, Any] = dict(value)
    for k in data.draw(st.lists(st.sampled_from(sorted(d)), unique=True)) if d else []:
        del d[k]
    assert reference.canonical(d) == canonical_json(d)
    mixed: dict[Any, Any] = {**d, 1234567: "int key", -7654321: None}  # never a text key here
    assert reference.canonical(mixed) == canonical_json(mixed)


def test_instance_dicts_and_large_tables() -> None:
    attrs = _Attrs().__dict__  # a split (key-sharing) table
    assert canonical_json(attrs) == b'{"a":1,"b":2}'
    big = {f"k{i:04d}": i for i in range(3000)}
    for i in range(0, 3000, 3):
        del big[f"k{i:04d}"]
    assert reference.canonical(big) == canonical_json(big)
    ints = {i: str(i) for i in range(600)}
    assert reference.canonical(ints) == canonical_json(ints)


@given(
    st.dictionaries(st.text(max_size=12), st.integers(-5, 5), min_size=40, max_size=200),
    st.randoms(),
)
def test_wide_dicts_with_deleted_entries_and_subclasses(
    value: dict[str, int], rnd: random.Random
) -> None:
    """A wide dict whose entry table has holes (items deleted after it was built), and a dict
    subclass, are read item by item: the same bytes as rfc8785's."""
    holes = dict(value)
    for key in rnd.sample(sorted(holes), len(holes) // 3):
        del holes[key]
    holes.update({f"late{i}": i for i in range(3)})

    class Sub(dict):  # type: ignore[type-arg]
        pass

    for d in (holes, Sub(value)):
        assert rfc8785.dumps(dict(d)) == canonical_json(d)
