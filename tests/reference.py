"""A slow, obviously-correct pure-Python model of retrysafe's canonical form.

Written from RFC 8785 and the projection table in DESIGN.md, independently of the Rust
code; the property tests check that the two agree byte for byte.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import enum
import math
import uuid
from typing import Any

MAX_DEPTH = 255


class RefError(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind  # "type" or "value"


def es_layout(negative: bool, digits: str, n: int) -> str:
    """ECMAScript Number::toString for 0.<digits> x 10^n."""
    k = len(digits)
    sign = "-" if negative else ""
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def _digits_and_n(digits: str, exp10: int) -> tuple[str, int]:
    """Strip zeros from a value digits x 10^exp10; return (digits, n) for es_layout."""
    stripped = digits.lstrip("0")
    if not stripped:
        return "", 0
    trailing = len(stripped) - len(stripped.rstrip("0"))
    stripped = stripped.rstrip("0")
    return stripped, exp10 + trailing + len(stripped)


def number(f: float) -> str:
    if math.isnan(f) or math.isinf(f):
        raise RefError("value")
    if f == 0:
        return "0"
    r = repr(abs(f))  # shortest round-trip digits, as ECMAScript requires
    mantissa, _, exp = r.partition("e")
    whole, _, frac = mantissa.partition(".")
    if frac == "0":
        frac = ""
    digits, n = _digits_and_n(whole + frac, int(exp or 0) - len(frac))
    return es_layout(f < 0, digits, n)


def decimal_text(d: decimal.Decimal) -> str:
    if not d.is_finite():
        raise RefError("value")
    sign, digit_tuple, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    digits, n = _digits_and_n("".join(map(str, digit_tuple)), exponent)
    if not digits:
        return "0"
    return es_layout(bool(sign), digits, n)


_ESCAPES = {
    0x08: "\\b",
    0x09: "\\t",
    0x0A: "\\n",
    0x0C: "\\f",
    0x0D: "\\r",
    0x22: '\\"',
    0x5C: "\\\\",
}


def string(s: str) -> str:
    out = ['"']
    for ch in s:
        c = ord(ch)
        if 0xD800 <= c <= 0xDFFF:
            raise RefError("value")
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif c < 0x20:
            out.append(f"\\u{c:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def iso(value: datetime.datetime | datetime.time) -> str:
    offset = value.utcoffset()
    text = value.replace(tzinfo=None).isoformat()
    if offset is None:
        return text
    if offset.microseconds or offset.seconds % 60:
        raise RefError("value")
    if offset == datetime.timedelta(0):
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{text}{sign}{hours:02d}:{mins:02d}"


def key_text(k: Any) -> str:
    if isinstance(k, enum.Enum):
        k = k.value
    if isinstance(k, bool):
        raise RefError("type")
    if isinstance(k, str):
        return k
    if isinstance(k, int):
        return str(int(k))
    raise RefError("type")


def obj(pairs: list[tuple[str, Any]], depth: int, strict: bool) -> str:
    texts = [k for k, _ in pairs]
    if len(set(texts)) != len(texts):
        raise RefError("value")
    for k in texts:
        string(k)  # lone surrogates in keys
    pairs = sorted(pairs, key=lambda kv: kv[0].encode("utf-16-be"))
    return "{" + ",".join(string(k) + ":" + enc(v, depth, strict) for k, v in pairs) + "}"


def enc(o: Any, depth: int = 0, strict: bool = False) -> str:
    if depth > MAX_DEPTH:
        raise RefError("value")
    if isinstance(o, enum.Enum):
        return enc(o.value, depth + 1, strict)
    if o is None:
        return "null"
    if o is True:
        return "true"
    if o is False:
        return "false"
    if isinstance(o, str):
        return string(o)
    if isinstance(o, int):
        if strict and abs(o) > 2**53:
            raise RefError("value")
        return str(int(o))
    if isinstance(o, float):
        return number(o)
    if isinstance(o, dict):
        return obj([(key_text(k), v) for k, v in o.items()], depth + 1, strict)
    if isinstance(o, (list, tuple)):
        return "[" + ",".join(enc(v, depth + 1, strict) for v in o) + "]"
    if isinstance(o, (set, frozenset)):
        parts = sorted(enc(v, depth + 1, strict).encode() for v in o)
        return "[" + ",".join(p.decode() for p in parts) + "]"
    if isinstance(o, (bytes, bytearray, memoryview)):
        return string(base64.b64encode(bytes(o)).decode())
    if isinstance(o, (datetime.datetime, datetime.time)):
        return string(iso(o))
    if isinstance(o, datetime.date):
        return string(o.isoformat())
    if isinstance(o, decimal.Decimal):
        return string(decimal_text(o))
    if isinstance(o, uuid.UUID):
        return string(str(o).lower())
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return obj([(f.name, getattr(o, f.name)) for f in dataclasses.fields(o)], depth + 1, strict)
    if hasattr(type(o), "__pydantic_fields__"):
        return enc(o.model_dump(by_alias=True), depth + 1, strict)
    raise RefError("type")


def canonical(o: Any, strict: bool = False) -> bytes:
    return enc(o, 0, strict).encode("utf-8")
