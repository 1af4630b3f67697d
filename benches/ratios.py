"""Print median-time ratios from a pytest-benchmark JSON file, per group.

python benches/ratios.py results.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(path: str) -> None:
    data = json.load(open(path))
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        name = bench["name"].split("[", 1)[-1].rstrip("]")
        groups[bench["group"]][name] = bench["stats"]["median"]
    for group, medians in sorted(groups.items()):
        print(f"\n{group}")
        ours = {k: v for k, v in medians.items() if "retrysafe" in k}
        base = min(ours.values()) if ours else None
        for name, median in sorted(medians.items(), key=lambda kv: kv[1]):
            ratio = f"  retrysafe/this = {base / median:6.3f}" if base else ""
            print(f"  {name:<40} {median * 1e6:12.3f} us{ratio}")


if __name__ == "__main__":
    main(sys.argv[1])
