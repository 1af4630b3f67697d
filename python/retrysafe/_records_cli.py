"""``retrysafe records``: show and settle idempotency records by key, on any shared store.

Exit codes, as ``vet``'s: 0 done, 1 nothing done (no such record, or it was not settled:
the message says why), 2 a usage error or a store that failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import records
from ._exceptions import StoreError

ENV = "RETRYSAFE_STORE"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retrysafe records",
        description="Show and settle idempotency records. An UNKNOWN outcome's error names "
        "its record key (idem:...) and this command.",
    )
    parser.add_argument(
        "--store",
        default=os.environ.get(ENV),
        help=f"the store's URL, as store= takes it (redis://, rediss://, redis+cluster://, "
        f"sqlite:///path, postgresql://); default ${ENV}",
    )
    parser.add_argument(
        "--prefix",
        default="retrysafe",
        help="the store's key prefix (its prefix= option); default retrysafe",
    )
    parser.add_argument("--json", action="store_true", help="print JSON, for scripts")
    sub = parser.add_subparsers(dest="action", required=True)
    show = sub.add_parser("show", help="a record: state, fence, owner, fingerprint, result")
    show.add_argument("key", help="the record key: idem:<64 hex digits>")
    settle = sub.add_parser(
        "resolve",
        help="settle a record left UNKNOWN (or stuck past its lease): it happened, with this "
        "result, or it did not",
    )
    settle.add_argument("key", help="the record key: idem:<64 hex digits>")
    how = settle.add_mutually_exclusive_group(required=True)
    how.add_argument(
        "--applied", metavar="RESULT_JSON", help="it happened: the next call replays this result"
    )
    how.add_argument(
        "--not-applied", action="store_true", help="it did not happen: the next call runs it"
    )
    settle.add_argument(
        "--fence",
        type=int,
        help="settle only while the claim with this fence (from `show`) holds the record; "
        "default: the fence it has when read",
    )
    settle.add_argument(
        "--ttl", type=float, default=records.DEFAULT_TTL, help="seconds a result is kept"
    )
    return parser


def main(argv: Sequence[str]) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    if not args.store:
        print(f"retrysafe records: name the store: --store URL or ${ENV}", file=sys.stderr)
        return 2
    try:
        key = records.record_key(args.key)
    except ValueError as exc:
        print(f"retrysafe records: {exc}", file=sys.stderr)
        return 2
    result: Any = None
    if args.action == "resolve" and args.applied is not None:
        try:
            result = json.loads(args.applied)
        except ValueError as exc:
            print(f"retrysafe records: --applied is not JSON: {exc}", file=sys.stderr)
            return 2
    store = None
    try:
        store = open_store(args.store, args.prefix)
        if args.action == "show":
            return _show(store, key, args.json)
        return _resolve(store, key, args, result)
    except (StoreError, ValueError) as exc:
        print(f"retrysafe records: {exc}", file=sys.stderr)
        return 2
    finally:
        closer = getattr(store, "close", None)
        if closer is not None:
            closer()


_SCHEMES = (
    "redis://",
    "rediss://",
    "redis+cluster://",
    "unix://",
    "sqlite://",
    "postgresql://",
    "postgres://",
)


def open_store(url: str, prefix: str) -> Any:
    """The store a URL names (the URLs ``store=`` takes), under ``prefix``."""
    if not url.startswith(_SCHEMES):
        raise ValueError(
            f"not a store URL: {url!r} (redis://, rediss://, redis+cluster://, sqlite:///path "
            "or postgresql://)"
        )
    from .stores import resolve_store

    return resolve_store(url, prefix=prefix)


def _show(store: Any, key: str, as_json: bool) -> int:
    seen = records.show(store, key)
    if seen is None:
        print(f"retrysafe records: no record under {key}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(seen.as_dict(), default=str))
        return 0
    rows = [
        ("key", seen.key),
        ("state", seen.state.upper()),
        ("claim", f"#{seen.claim} (fence {seen.fence})"),
        ("owner", seen.owner or "-"),
        ("fingerprint", seen.fingerprint),
    ]
    if seen.state == "completed":
        rows.append(("result", json.dumps(seen.result, default=str)))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if seen.state == "unknown":
        print(
            f"\nsettle it: retrysafe records resolve {key} --fence {seen.fence} "
            "--applied RESULT_JSON | --not-applied"
        )
    return 0


def _resolve(store: Any, key: str, args: argparse.Namespace, result: Any) -> int:
    try:
        if args.not_applied:
            before = records.resolve(store, key, not_applied=True, fence=args.fence, ttl=args.ttl)
        else:
            before = records.resolve(store, key, applied=result, fence=args.fence, ttl=args.ttl)
    except records.SettleRefusedError as exc:
        if args.json:
            print(json.dumps({"key": key, "settled": False, "reason": exc.reason}))
        print(f"retrysafe records: {exc}", file=sys.stderr)
        return 1
    outcome = "not applied (the next call runs)" if args.not_applied else "applied"
    if args.json:
        print(json.dumps({"key": key, "settled": True, "was": before, "now": outcome}))
    else:
        print(f"{key}: {before.upper()} -> {outcome}")
    return 0
