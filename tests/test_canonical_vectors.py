"""RFC 8785 known answers: the official vectors, Appendix B, and the ES6 number file."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys

import pytest

from retrysafe import FingerprintValueError, canonical_json, fingerprint

from .conftest import VECTORS

NAMES = sorted(p.stem for p in (VECTORS / "input").glob("*.json"))


def test_all_six_official_vectors_are_present() -> None:
    """The vector set is complete (a missing file would silently test less)."""
    assert ["arrays", "french", "structures", "unicode", "values", "weird"] == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_official_vector(name: str) -> None:
    """Each official input canonicalizes to exactly the official output bytes."""
    parsed = json.loads((VECTORS / "input" / f"{name}.json").read_bytes())
    expected = (VECTORS / "output" / f"{name}.json").read_bytes()
    assert expected == bytes.fromhex((VECTORS / "outhex" / f"{name}.txt").read_text())
    assert expected == canonical_json(parsed)
    assert hashlib.sha256(expected).hexdigest() == fingerprint(parsed)


def _double(hex_bits: str) -> float:
    return struct.unpack(">d", bytes.fromhex(hex_bits.zfill(16)))[0]


def _appendix_b() -> list[tuple[str, str]]:
    rows = (VECTORS / "numbers" / "rfc8785-appendix-b.csv").read_text().splitlines()[1:]
    return [(r.split(",")[0], r.split(",")[1]) for r in rows if r]


@pytest.mark.parametrize(("hex_bits", "expected"), _appendix_b())
def test_appendix_b_number(hex_bits: str, expected: str) -> None:
    """The 26 samples of RFC 8785 Appendix B, NaN and Infinity raising."""
    value = _double(hex_bits)
    if expected == "ERROR":
        with pytest.raises(FingerprintValueError, match="not allowed"):
            canonical_json(value)
    else:
        assert expected.encode() == canonical_json(value)


def test_appendix_b_has_26_samples() -> None:
    """All 26 Appendix B rows are read."""
    assert 26 == len(_appendix_b())


def _check_es6_lines(lines: list[str]) -> None:
    values = []
    expected = []
    for line in lines:
        bits, text = line.split(",")
        values.append(_double(bits))
        expected.append(text)
    # One call per number, so a failure names the number; then one call for the whole list.
    mismatches = [
        (v, e) for v, e in zip(values, expected, strict=True) if canonical_json(v) != e.encode()
    ]
    assert [] == mismatches[:5]
    assert ("[" + ",".join(expected) + "]").encode() == canonical_json(values)


def test_es6_first_10k_numbers() -> None:
    """All 10,000 lines of the ES6 number file shipped with the vectors."""
    lines = (VECTORS / "numbers" / "es6testfile-first10k.txt").read_text().splitlines()
    assert 10_000 == len(lines)
    _check_es6_lines(lines)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("RETRYSAFE_SLOW"), reason="make test-slow only")
def test_es6_one_million_generated_numbers() -> None:
    """1,000,000 generated ES6 lines, the generator validated by upstream's published hash."""
    sys.path.insert(0, str(VECTORS))
    try:
        import es6_numgen  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    raw = list(es6_numgen.lines(1_000_000))
    text = "".join(raw).encode()
    assert "49415fee2c56c77864931bd3624faad425c3c577d6d74e89a83bc725506dad16" == (
        hashlib.sha256(text).hexdigest()
    )
    _check_es6_lines([line.rstrip("\n") for line in raw])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-0.0, b"0"),
        (1.0, b"1"),
        (56.0, b"56"),
        (1e16, b"10000000000000000"),
        (1e20, b"100000000000000000000"),
        (1e21, b"1e+21"),
        (1e-6, b"0.000001"),
        (1e-7, b"1e-7"),
        (5e-324, b"5e-324"),
        (1424953923781206.25, b"1424953923781206.2"),
        (2**53 + 1, b"9007199254740993"),
        (2**64, b"18446744073709551616"),
        (-(2**70), b"-1180591620717411303424"),
        ("\u2028\x7f/</script>", '"\u2028\x7f/</script>"'.encode()),
        ("\x00\x1f", b'"\\u0000\\u001f"'),
    ],
)
def test_edge_values(value: object, expected: bytes) -> None:
    """The edge list of the anchors: number layout, big ints kept exact, raw Unicode."""
    assert expected == canonical_json(value)
