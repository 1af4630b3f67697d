"""``retrysafe records``: list, show, settle and purge idempotency records, on any shared
store.

Exit codes, as ``vet``'s: 0 done, 1 nothing done (no such record, or it was not settled:
the message says why), 2 a usage error or a store that failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
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
    listing = sub.add_parser("list", help="records newest first (UNKNOWN ones: --state unknown)")
    listing.add_argument("--state", choices=records.STATES, help="only records in this state")
    listing.add_argument("--tool", help="only this tool's records (its name, as shown)")
    listing.add_argument("--tenant", help="only this tenant's records")
    listing.add_argument("--principal", help="only this principal's records")
    listing.add_argument("--conversation", help="only this conversation's records")
    listing.add_argument(
        "--older-than", type=_duration, metavar="AGE", help="e.g. 90s, 15m, 2h, 1d"
    )
    listing.add_argument("--newer-than", type=_duration, metavar="AGE", help="e.g. 15m")
    listing.add_argument("--limit", type=int, default=50, help="records per page (default 50)")
    listing.add_argument("--after", metavar="CURSOR", help="the next page: the cursor printed last")
    purge = sub.add_parser(
        "purge",
        help="drop expired records (and index entries); with --completed, chosen COMPLETED "
        "ones too. UNKNOWN and running records are never purged: resolve them",
    )
    purge.add_argument("--completed", action="store_true", help="also purge COMPLETED records")
    purge.add_argument(
        "--cache",
        metavar="NAMESPACE",
        help="drop a cache's entries instead (its namespace, as the console lists it)",
    )
    purge.add_argument("--tool", help="with --completed: only this tool's")
    purge.add_argument("--older-than", type=_duration, metavar="AGE", help="with --completed")
    purge.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")
    show = sub.add_parser("show", help="a record: state, tool, identity, fence, owner, result")
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


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``1d`` as seconds."""
    unit = _UNITS.get(text[-1:].lower(), None)
    number = text[:-1] if unit is not None else text
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an age: {text!r} (e.g. 90s, 15m, 2h, 1d)") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"not an age: {text!r} (a positive number)")
    return seconds


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
        key = records.record_key(args.key) if args.action in ("show", "resolve") else ""
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
        if args.action == "list":
            return _list(store, args)
        if args.action == "purge":
            return _purge(store, args)
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
    now = time.time()
    rows = [
        ("key", seen.key),
        ("state", _state(seen.state)),
        ("tool", seen.tool or "-"),
        ("identity", seen.identity()),
        ("claim", f"#{seen.claim} (fence {seen.fence})"),
        ("owner", seen.owner or "-"),
        ("created", _when(seen.created, now)),
        ("updated", _when(seen.updated, now)),
        ("fingerprint", seen.fingerprint),
    ]
    if seen.lease_left is not None:
        rows.append(("lease", f"{seen.lease_left:.1f} s left" if seen.lease_left else "expired"))
    if seen.not_before is not None:
        left = seen.not_before - now
        rows.append(("retry after", f"{left:.0f} s (the server asked: Retry-After)"))
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


def _colour() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


_COLOURS = {"unknown": "31", "in_progress": "33", "completed": "32"}


def _state(state: str) -> str:
    text = state.upper()
    return f"\x1b[{_COLOURS[state]}m{text}\x1b[0m" if _colour() and state in _COLOURS else text


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{max(seconds, 0):.0f}s ago"


def _when(at: float | None, now: float) -> str:
    if at is None:
        return "-"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))
    return f"{stamp} UTC ({_ago(now - at)})"


def _list(store: Any, args: argparse.Namespace) -> int:
    page = records.list(
        store,
        state=args.state,
        tool=args.tool,
        tenant=args.tenant,
        principal=args.principal,
        conversation=args.conversation,
        older_than=args.older_than,
        newer_than=args.newer_than,
        after=args.after,
        limit=args.limit,
    )
    if args.json:
        print(
            json.dumps(
                {"records": [r.as_dict() for r in page.records], "next": page.next}, default=str
            )
        )
        return 0
    now = time.time()
    header = ("KEY", "STATE", "TOOL", "IDENTITY", "CLAIM", "CREATED", "UPDATED")
    rows = [
        (
            r.key,
            r.state.upper(),
            r.tool or "-",
            r.identity(),
            f"#{r.claim}",
            _ago(now - r.created) if r.created else "-",
            _ago(now - r.updated) if r.updated else "-",
        )
        for r in page.records
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row, made in zip(rows, page.records, strict=True):
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        cells[1] = _state(made.state) + " " * (widths[1] - len(row[1]))
        print("  ".join(cells).rstrip())
    if not rows:
        print("(no records)")
    if page.next is not None:
        print(f"\nmore: retrysafe records list ... --after {page.next}")
    return 0


def _purge(store: Any, args: argparse.Namespace) -> int:
    if args.cache is not None:
        if args.completed or args.tool or args.older_than is not None:
            print("retrysafe records: --cache drops a cache alone: no --completed", file=sys.stderr)
            return 2
        n = records.drop_cache(store, args.cache, dry_run=args.dry_run)
        if args.json:
            print(json.dumps({"cache": args.cache, "entries": n, "dry_run": args.dry_run}))
        else:
            verb = "would drop" if args.dry_run else "dropped"
            print(f"{verb} {n} entr{'y' if n == 1 else 'ies'} of cache {args.cache}")
        return 0
    if (args.tool or args.older_than is not None) and not args.completed:
        print(
            "retrysafe records: --tool and --older-than choose COMPLETED records: add --completed",
            file=sys.stderr,
        )
        return 2
    done = records.purge(
        store,
        completed=args.completed,
        tool=args.tool,
        older_than=args.older_than,
        dry_run=args.dry_run,
    )
    if args.json:
        print(
            json.dumps({"expired": done.expired, "records": done.records, "dry_run": done.dry_run})
        )
        return 0
    verb = "would purge" if done.dry_run else "purged"
    if not done.dry_run:
        print(f"purged {done.expired} expired record(s) or index entries")
    if args.completed:
        print(f"{verb} {len(done.records)} completed record(s)")
        for key in done.records:
            print(f"  {key}")
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
