"""Command line: ``retrysafe demo``, ``retrysafe vet PATH``, ``retrysafe store init URL`` and
``retrysafe records list|show|resolve|purge`` and ``retrysafe console`` (also
``python -m retrysafe ...``)."""

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
    if argv and argv[0] == "store":
        return store_command(argv[1:])
    if argv and argv[0] == "records":
        from ._records_cli import main as records_main

        return records_main(argv[1:])
    if argv and argv[0] == "console":
        from .console import main as console_main

        return console_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="retrysafe", description="Make agent tool calls safe to retry."
    )
    parser.add_argument(
        "command",
        choices=["demo", "vet", "store", "records", "console"],
        help="demo: the swarm demo; vet PATH: static checks; store init URL: create a "
        "database store's tables; records list|show|resolve|purge: find and settle "
        "idempotency records; console --store URL: the same on a local web page",
    )
    parser.parse_args(argv)
    return 2


def store_command(argv: Sequence[str]) -> int:
    """``retrysafe store init URL``: create a database store's tables and functions;
    ``retrysafe store sql``: print PostgreSQL's, for migrations run by hand."""
    parser = argparse.ArgumentParser(
        prog="retrysafe store",
        description="Manage a durable store. init: create the tables (and PostgreSQL's "
        "functions) if missing; safe to run again and from many hosts at once. sql: print "
        "the PostgreSQL schema, for teams that run their own migrations.",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    init = sub.add_parser("init", help="create the schema of sqlite:///path or postgresql://")
    init.add_argument("url", help="sqlite:///path/to/file.db or postgresql://user@host/db")
    sub.add_parser("sql", help="print the PostgreSQL schema")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    if args.action == "sql":
        from .stores._postgres import SCHEMA_SQL

        print(SCHEMA_SQL.strip())
        return 0
    url: str = args.url
    if not url.startswith(("sqlite://", "postgresql://", "postgres://")):
        print(f"retrysafe store init: not a database URL: {url!r}", file=sys.stderr)
        return 2
    from . import StoreError
    from .stores import resolve_store

    try:
        store = resolve_store(url)  # creates what is missing
    except (StoreError, ValueError) as exc:
        print(f"retrysafe store init: {exc}", file=sys.stderr)
        return 1
    print(f"retrysafe store init: {store!r} is ready")
    closer = getattr(store, "close", None)
    if closer is not None:
        closer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
