"""Deterministic payloads, the same as the anchors' bench_fingerprint_anchors.py (seed 8785)."""

from __future__ import annotations

import random
import struct
import uuid
from collections.abc import Callable, Sequence
from typing import Any

_WORDS = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu "
    "nu xi omicron pi rho sigma tau upsilon phi chi psi omega"
).split()


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def small(rng: random.Random) -> dict[str, Any]:
    """~100 B: typical tool-call arguments, 4 keys."""
    return {
        "query": "weather in Paris tomorrow",
        "max_results": 5,
        "units": "metric",
        "include_forecast": True,
    }


def medium(rng: random.Random) -> dict[str, Any]:
    """~1 KB: nested dict + a list of 20 small items."""
    return {
        "tool": "search_files",
        "path": "/srv/repo/src",
        "options": {
            "recursive": True,
            "max_depth": 6,
            "follow_symlinks": False,
            "ignore": ["*.pyc", "node_modules", ".git"],
            "limits": {"bytes": 1048576, "files": 200, "timeout_s": 2.5},
        },
        "patterns": [
            {"glob": f"**/*{ext}", "weight": round(rng.random(), 3)}
            for ext in (".py", ".rs", ".toml", ".md")
        ],
        "items": [
            rng.randrange(10**6) if i % 2 else f"id-{rng.randrange(10**6):06d}" for i in range(20)
        ],
        "note": _sentence(rng, 64),
        "temperature": 0.2,
        "request_id": None,
    }


def priced(rng: random.Random) -> dict[str, Any]:
    """~2 KB: an order of 20 lines whose totals are computed (quantity x price x tax), so most
    floats need 15-17 digits (`6.039000000000001`), as in tool calls built by code."""
    lines = []
    for i in range(20):
        qty = rng.randrange(1, 5)
        price = round(rng.uniform(1, 50), 2)
        lines.append(
            {
                "sku": f"sku-{i:04d}",
                "qty": qty,
                "unit_price": price,
                "total": price * qty * 1.1,
                "discount": 0.1 + 0.2 * (i % 3),
            }
        )
    return {
        "order_id": f"ord_{rng.randrange(10**6):06d}",
        "currency": "eur",
        "lines": lines,
        "subtotal": sum(line["total"] for line in lines),
    }


def _record(rng: random.Random, i: int, name: str, words: Sequence[str]) -> dict[str, Any]:
    """One small record of a bulk upsert: `name` made by the caller, two tags from `words`."""
    return {
        "id": i,
        "name": name,
        "score": round(rng.uniform(0, 100), 4),
        "active": bool(i % 3),
        "tags": [rng.choice(words), rng.choice(words)],
        "parent": None if i % 7 else i - 1,
    }


def large(rng: random.Random) -> dict[str, Any]:
    """~100 KB: list of 1000 small records."""
    recs = [_record(rng, i, _sentence(rng, 2), _WORDS) for i in range(1000)]
    return {"operation": "bulk_upsert", "table": "items", "records": recs}


def text(rng: random.Random) -> dict[str, Any]:
    """~1 MB: mostly one big string, with newlines, tabs, quotes and some non-ASCII."""
    lines, size = [], 0
    while size < 1_000_000:
        ln = _sentence(rng, rng.randrange(4, 16))
        r = rng.random()
        if r < 0.05:
            ln = "\t" + ln + ' "quoted"'
        elif r < 0.08:
            ln += " caf\u00e9 \u20ac \u2603"
        lines.append(ln)
        size += len(ln) + 1
    return {
        "path": "scratch/out/report.txt",
        "mode": "w",
        "encoding": "utf-8",
        "content": "\n".join(lines),
    }


def embedding(rng: random.Random) -> dict[str, Any]:
    """~32 KB: a vector store's upsert of one embedding, 1,536 float32 values (as an SDK hands
    them over, widened to Python floats) of a normal spread: 16 or 17 digits each, and the few
    below 1e-4 are written in full by RFC 8785, with an exponent by orjson and by `json`."""
    raw = [rng.gauss(0.0, 0.03) for _ in range(1536)]
    vector = list(struct.unpack("1536f", struct.pack("1536f", *raw)))
    return {"collection": "docs", "id": f"chunk-{rng.randrange(10**6):06d}", "vector": vector}


PAYLOADS: dict[str, Callable[[random.Random], Any]] = {
    "small": small,
    "medium": medium,
    "priced": priced,
    "large": large,
    "text": text,
}


def make(name: str) -> Any:
    return PAYLOADS[name](random.Random(8785))


def _wide_key(shape: str, rng: random.Random, i: int) -> str:
    if shape == "random":  # identifiers of 6-16 characters
        return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789_", k=rng.randint(6, 16)))
    if shape == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128)))
    if shape == "ids":  # a common stem: user_0 ... user_9999, in insertion order
        return f"user_{i}"
    if shape == "timestamps":  # one day's events
        h, m, s, us = rng.randrange(24), rng.randrange(60), rng.randrange(60), rng.randrange(10**6)
        return f"2026-12-04T{h:02d}:{m:02d}:{s:02d}.{us:06d}Z"
    if shape == "urls":
        return f"https://api.example.com/v1/items/{rng.randrange(10**9)}"
    return f"key_{i:06d}"  # "sorted", "sorted-ints": already in order


WIDE_SHAPES = (
    "random",
    "uuid",
    "ids",
    "timestamps",
    "urls",
    "sorted",
    "sorted-ints",
    "records",
    "lists",
)


def wide(shape: str, n: int) -> dict[str, Any]:
    """A dict of `n` keys of one shape (seeded): ints and short strings as values, or, for
    "records", a small dict per random key, for "lists" a pair [int, word], and for
    "sorted-ints" keys in order with ints alone (the anchor's cheapest values)."""
    rng = random.Random(8785)
    out: dict[str, Any] = {}
    while len(out) < n:
        i = len(out)
        if shape == "records":
            out[_wide_key("random", rng, i)] = {"name": _sentence(rng, 2), "n": i, "ok": i % 2 == 0}
        elif shape == "lists":
            out[_wide_key("random", rng, i)] = [i, _sentence(rng, 1)]
        elif shape == "sorted-ints":
            out[_wide_key(shape, rng, i)] = i
        else:
            out[_wide_key(shape, rng, i)] = i if i % 2 else _sentence(rng, 1)
    return out


def one_megabyte(name: str) -> Any:
    """The two ~1 MB payloads of the two-thread bench: "text" (mostly hashing) or "records"
    (mostly encoding, which holds the GIL)."""
    if name == "text":
        return make("text")
    if name == "records":
        return records_1mb()
    raise ValueError(f"no 1 MB payload named {name!r}")


def records_1mb() -> dict[str, Any]:
    """~1 MB of small records (12,000 of the large payload's kind): encoding, which holds the
    GIL, is most of the time, where the text payload is mostly hashing."""
    rng = random.Random(8785)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    return {
        "records": [
            _record(rng, i, f"{rng.choice(words)} {rng.choice(words)}", words)
            for i in range(12_000)
        ]
    }
