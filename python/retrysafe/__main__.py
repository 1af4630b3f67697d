"""Command line: ``retrysafe demo`` (also ``python -m retrysafe demo``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``retrysafe`` command line; returns the exit code."""
    parser = argparse.ArgumentParser(prog="retrysafe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="show what retrysafe does, end to end")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import run

        return run()
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
