"""Median times and ratios from a pytest-benchmark JSON file, per group.

    python benches/ratios.py results.json                      # ratios of retrysafe to each
    python benches/ratios.py results.json --baseline bare      # overheads above a baseline

A contender's name is the test parameter (`fingerprint[small-retrysafe]` -> `small-retrysafe`).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--baseline", help="subtract this contender's median (overheads)")
    args = parser.parse_args()
    with open(args.path) as f:
        data = json.load(f)
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    paired: list[str] = []
    for bench in data["benchmarks"]:
        name = bench["name"].split("[", 1)[-1].rstrip("]")
        extra = bench.get("extra_info", {})
        if "paired_ratio" in extra:
            target = f" (target <= {extra['target']})" if "target" in extra else ""
            if "target_min" in extra:  # a throughput: higher is better
                target = f" (target >= {extra['target_min']})"
            # The two-thread figure's references: its ceiling, and two processes over one.
            refs = [f"{k} {extra[k]:.3f}" for k in ("ceiling", "processes") if k in extra]
            beside = f"; {', '.join(refs)}" if refs else ""
            paired.append(f"  {bench['group']}: {extra['paired_ratio']:.3f}{target}{beside}")
            continue
        groups[bench["group"]][name] = bench["stats"]["median"]
    for group, medians in sorted(groups.items()):
        print(f"\n{group}")
        base = 0.0
        if args.baseline:
            base = next((v for k, v in medians.items() if k.endswith(args.baseline)), 0.0)
        ours = [v - base for k, v in medians.items() if "retrysafe" in k]
        for name, median in sorted(medians.items(), key=lambda kv: kv[1]):
            value = median - base
            ratio = f"  retrysafe/this = {ours[0] / value:7.3f}" if ours and value > 0 else ""
            label = "overhead" if args.baseline else "median"
            print(f"  {name:<36} {label} {value * 1e6:12.3f} us{ratio}")
    if paired:
        print("\nretrysafe / anchor, median of alternating pairs")
        print("\n".join(paired))


if __name__ == "__main__":
    main()
