"""Command line: ``retrysafe demo`` and ``retrysafe vet PATH`` (also ``python -m retrysafe ...``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``retrysafe`` command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "demo":
        from ._demo import run

        return run(argv[1:])
    if argv and argv[0] == "vet":
        from .vet import main as vet_main

        return vet_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="retrysafe", description="Make agent tool calls safe to retry."
    )
    parser.add_argument(
        "command", choices=["demo", "vet"], help="demo: the swarm demo; vet PATH: static checks"
    )
    parser.parse_args(argv)
    return 2


if __name__ == "__main__":
    sys.exit(main())
