"""Two builds of the native module, timed against each other in one process.

On a small, noisy machine two `make bench` runs of one build differ by 5-10 %; two builds
loaded side by side and timed in alternating batches differ by about 1 % when they are the
same build. That is how a change to `rust/` is judged before `make bench` reports ratios
against the anchors:

    make build-dev && mkdir -p /tmp/a && cp python/retrysafe/_native*.so /tmp/a/
    # ... change rust/ ...
    make build-dev && mkdir -p /tmp/b && cp python/retrysafe/_native*.so /tmp/b/
    .venv/bin/python scripts/ab-native.py /tmp/a /tmp/b

It prints, per payload, the median over rounds of time(B) / time(A) for `fingerprint`
(below 1: B is faster), after checking that both builds write the same canonical bytes.
"""

from __future__ import annotations

import argparse
import glob
import importlib.machinery
import importlib.util
import random
import statistics
import sys
import timeit
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benches.payloads import PAYLOADS, WIDE_SHAPES, make, wide


def load(directory: str) -> ModuleType:
    """The `_native` extension in `directory`, loaded under its own name (each build keeps
    its own static state)."""
    found = glob.glob(str(Path(directory) / "_native*.so"))
    if not found:
        raise SystemExit(f"no _native*.so in {directory}")
    loader = importlib.machinery.ExtensionFileLoader("_native", found[0])
    spec = importlib.util.spec_from_file_location("_native", found[0], loader=loader)
    if spec is None:
        raise SystemExit(f"cannot load {found[0]}")
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def cases() -> dict[str, Any]:
    """The bench payloads, and pieces of the kinds the fast paths treat apart."""
    out: dict[str, Any] = {name: make(name) for name in PAYLOADS if name != "text"}
    out["priced.lines"] = out["priced"]["lines"]
    out["ints < 100"] = [i % 100 for i in range(1000)]
    out["ints < 10^4"] = list(range(100, 10**4, 10))
    out["ints < 10^8"] = list(range(0, 10**8, 10**8 // 997))
    out["computed totals"] = [round(i * 0.37, 2) * 3 * 1.1 for i in range(1, 1000)]
    rng = random.Random(8785)
    # Full-precision doubles (scores, similarities, coordinates, an embedding's values).
    out["doubles"] = [rng.uniform(-1, 1) for _ in range(1000)]
    for shape in WIDE_SHAPES:
        for size in (1_000, 10_000):
            out[f"wide {shape} {size}"] = wide(shape, size)
    return out


def paired(a: ModuleType, b: ModuleType, value: Any, rounds: int) -> float:
    """Median over `rounds` of time(B) / time(A), each round a batch of each, back to back."""
    number = max(1, 200_000 // len(a.canonical_json(value)))
    ratios = []
    for _ in range(rounds):
        time_a = timeit.timeit(lambda: a.fingerprint(value), number=number)
        time_b = timeit.timeit(lambda: b.fingerprint(value), number=number)
        ratios.append(time_b / time_a)
    return statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="directory holding build A's _native*.so")
    parser.add_argument("b", help="directory holding build B's _native*.so")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--only", default="", help="the cases whose name holds this text")
    args = parser.parse_args()
    a, b = load(args.a), load(args.b)
    for name, value in cases().items():
        if args.only not in name:
            continue
        if a.canonical_json(value) != b.canonical_json(value):
            raise SystemExit(f"{name}: the builds write different bytes")
        print(f"{name:22s} B/A {paired(a, b, value, args.rounds):.3f}")


if __name__ == "__main__":
    main()
