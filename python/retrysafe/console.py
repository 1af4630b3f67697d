"""``retrysafe console --store URL``: a small local web page for the people who settle
records: the UNKNOWN ones first, each with what is known of it and two actions (it
happened, with this result / it did not), then the running and completed ones, and a
plot of records over time by state, from the store's own data.

Built on Starlette (server-rendered HTML, no script on the page) and served by uvicorn:
``pip install 'retrysafe[console]'``. What it guards, and how:

- It listens on 127.0.0.1 unless told otherwise, and answers only requests whose ``Host``
  is the address it serves (a page elsewhere cannot reach it by DNS rebinding).
- Reading needs the access token printed at start (``?token=`` once, then a cookie:
  HttpOnly, SameSite=Strict); every change needs it again, in the form (the cookie alone,
  which a browser would attach to another site's request, is never enough). Tokens are
  compared in constant time.
- It shows tool names, identities and fingerprints, never a call's arguments (records do
  not hold them); a stored result is shown only on the page of its record.
"""

from __future__ import annotations

import hmac
import html
import json
import secrets
import time
from collections import Counter
from typing import Any

from . import records
from ._records_cli import open_store

__all__ = ["make_app", "main"]

COOKIE = "retrysafe_console"
#: How many records of each state the page shows, and the plot counts (newest first).
SHOWN = 50
PLOTTED = 1000
#: How many cache keys the page counts by namespace, and how long a count is reused (a
#: count scans the store's keys: on Redis, every key of the database).
CACHE_KEYS = 100_000
CACHE_COUNT_EVERY = 60.0
_COUNTED: dict[int, tuple[float, dict[str, int]]] = {}


def _cache_counts(store: Any) -> dict[str, int]:
    at, counts = _COUNTED.get(id(store), (0.0, {}))
    if time.monotonic() - at > CACHE_COUNT_EVERY:
        counts = records.cache_entries(store, CACHE_KEYS)
        _COUNTED[id(store)] = (time.monotonic(), counts)
    return counts


def make_app(
    store: Any,
    token: str,
    *,
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
    guard_namespace: str = "guard",
) -> Any:
    """The console as a Starlette application over ``store`` (any shared store), guarded by
    ``token``; ``hosts``: the ``Host`` names it answers; ``guard_namespace``: the loop
    guard whose stops it shows."""
    try:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import HTMLResponse, RedirectResponse, Response
        from starlette.routing import Route
    except ImportError as exc:  # pragma: no cover - the extra names it
        raise ImportError("the console needs Starlette: pip install 'retrysafe[console]'") from exc
    if len(token) < 16:
        raise ValueError("the console's token must have at least 16 characters")

    def allowed(request: Request) -> bool:
        host = request.headers.get("host", "").rsplit(":", 1)[0].strip("[]")
        return host in hosts

    def signed_in(request: Request) -> bool:
        given = request.cookies.get(COOKIE, "")
        return hmac.compare_digest(given.encode(), token.encode())

    async def page(request: Request) -> Response:
        if not allowed(request):
            return Response("unknown host\n", status_code=421)
        given = request.query_params.get("token")
        if given is not None:
            if not hmac.compare_digest(given.encode(), token.encode()):
                return Response("wrong token\n", status_code=403)
            answer: Response = RedirectResponse("/", status_code=303)
            answer.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return answer
        if not signed_in(request):
            return Response(
                "open the address retrysafe console printed (it carries the token)\n",
                status_code=403,
            )
        notice = request.query_params.get("done", "")
        body = await _in_thread(_render, store, token, notice, guard_namespace)
        return HTMLResponse(body, headers=_HEADERS)

    async def record(request: Request) -> Response:
        if not allowed(request) or not signed_in(request):
            return Response("forbidden\n", status_code=403)
        try:
            key = records.record_key(request.path_params["key"])
        except ValueError as exc:
            return Response(f"{exc}\n", status_code=400)
        found = await _in_thread(records.show, store, key)
        if found is None:
            return Response("no such record (settled, or expired)\n", status_code=404)
        return HTMLResponse(_page(key, _record_detail(found, token)), headers=_HEADERS)

    async def settle(request: Request) -> Response:
        if not allowed(request):
            return Response("unknown host\n", status_code=421)
        form = await request.form()
        given = str(form.get("token", ""))
        if not signed_in(request) or not hmac.compare_digest(given.encode(), token.encode()):
            return Response("forbidden: this change carries no valid token\n", status_code=403)
        try:
            key = records.record_key(str(form.get("key", "")))
            fence = int(str(form.get("fence", "")))
            how = str(form.get("how", ""))
            if how == "applied":
                result = json.loads(str(form.get("result", "")))
                before = await _in_thread(_resolve, store, key, fence, True, result)
            elif how == "not_applied":
                before = await _in_thread(_resolve, store, key, fence, False, None)
            else:
                raise ValueError(f"how must be applied or not_applied, got {how!r}")
        except records.SettleRefusedError as exc:
            return RedirectResponse(f"/?done={_quote(str(exc))}", status_code=303)
        except ValueError as exc:
            return Response(f"bad request: {exc}\n", status_code=400)
        said = "applied" if how == "applied" else "not applied (the next call runs)"
        return RedirectResponse(
            f"/?done={_quote(f'{key}: {before.upper()} -> {said}')}", status_code=303
        )

    return Starlette(
        routes=[
            Route("/", page),
            Route("/records/{key}", record),
            Route("/resolve", settle, methods=["POST"]),
        ]
    )


_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


async def _in_thread(fn: Any, *args: Any) -> Any:
    import anyio

    return await anyio.to_thread.run_sync(lambda: fn(*args))


def _resolve(store: Any, key: str, fence: int, applied: bool, result: Any) -> str:
    if applied:
        return records.resolve(store, key, applied=result, fence=fence)
    return records.resolve(store, key, not_applied=True, fence=fence)


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text[:300], safe="")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _ago(at: float | None, now: float) -> str:
    if not at:
        return "-"
    seconds = max(0.0, now - at)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def _actions(made: records.Record, token: str) -> str:
    hidden = (
        f'<input type="hidden" name="token" value="{_e(token)}">'
        f'<input type="hidden" name="key" value="{_e(made.key)}">'
        f'<input type="hidden" name="fence" value="{made.fence}">'
    )
    return (
        f'<form method="post" action="/resolve" class="act">{hidden}'
        '<input type="hidden" name="how" value="applied">'
        f'<input name="result" aria-label="result of {_e(made.key)}" placeholder="result JSON" required>'
        '<button name="apply">applied</button></form>'
        f'<form method="post" action="/resolve" class="act">{hidden}'
        '<input type="hidden" name="how" value="not_applied">'
        '<button name="not_applied">not applied</button></form>'
    )


def _rows(found: list[records.Record], token: str, now: float, settle: bool) -> str:
    if not found:
        return '<p class="none">none</p>'
    head = "<tr><th>record</th><th>tool</th><th>identity</th><th>claim</th><th>created</th><th>updated</th><th>fingerprint</th>"
    head += "<th>settle</th></tr>" if settle else "</tr>"
    out = [f"<table>{head}"]
    for made in found:
        cells = [
            f'<a href="/records/{_e(made.key)}">{_e(made.key[:17])}…</a>',
            _e(made.tool or "-"),
            _e(made.identity()),
            f"#{made.claim}",
            _ago(made.created, now),
            _ago(made.updated, now),
            f"<code>{_e(made.fingerprint[:16])}</code>",
        ]
        if settle:
            cells.append(_actions(made, token))
        out.append(
            f'<tr class="{_e(made.state)}" data-key="{_e(made.key)}">'
            + "".join(f"<td>{cell}</td>" for cell in cells)
            + "</tr>"
        )
    out.append("</table>")
    return "".join(out)


_COLOURS = {"completed": "#2e7d32", "unknown": "#c62828", "in_progress": "#f9a825"}
_OUTCOME_COLOURS = {
    "executed": "#2e7d32",
    "cached": "#81c784",
    "coalesced": "#1565c0",
    "replayed": "#64b5f6",
    "unknown": "#c62828",
    "refused": "#6a1b9a",
}


def _plot(found: list[records.Record], published: dict[int, dict[str, int]], now: float) -> str:
    """A stacked SVG bar chart of the last day by hour: the outcomes the swarm's processes
    published (``retrysafe.publish_outcomes``), else the records by the hour of their first
    claim and their state (the newest records only, at most :data:`PLOTTED`)."""
    hours = 24
    counts: Counter[tuple[int, str]] = Counter()
    colours = _OUTCOME_COLOURS if published else _COLOURS
    if published:
        current = int(now // 3600)
        for hour, row in published.items():
            for outcome, n in row.items():
                if 0 <= current - hour < hours:
                    counts[(current - hour, outcome)] += n
    for made in [] if published else found:
        if made.created and now - made.created < hours * 3600:
            counts[(int((now - made.created) // 3600), made.state)] += 1
    top = max([sum(n for (h, _), n in counts.items() if h == hour) for hour in range(hours)] + [1])
    width, height, bar = 720, 160, 720 // hours
    parts = [
        f'<svg id="plot" width="{width}" height="{height + 20}" role="img" '
        f'aria-label="records per hour of the last day, by state">'
    ]
    for hour in range(hours):
        x = width - (hour + 1) * bar
        y = height
        for state in colours:
            n = counts.get((hour, state), 0)
            if n:
                h = max(1, round(n / top * (height - 10)))
                y -= h
                parts.append(
                    f'<rect x="{x + 2}" y="{y}" width="{bar - 4}" height="{h}" '
                    f'fill="{colours[state]}"><title>{n} {state}, {hour}h ago</title></rect>'
                )
    parts.append(f'<text x="0" y="{height + 15}" font-size="11">24h ago</text>')
    parts.append(f'<text x="{width - 30}" y="{height + 15}" font-size="11">now</text></svg>')
    legend = " ".join(
        f'<span style="color:{colour}">■ {state.replace("_", " ")}</span>'
        for state, colour in colours.items()
    )
    source = (
        "outcomes the processes published"
        if published
        else "records by first claim (publish outcomes with retrysafe.publish_outcomes(store) "
        "to see replays, coalesced calls and refusals)"
    )
    return "".join(parts) + f'<p class="legend">{legend} (top: {top} per hour; {source})</p>'


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:20px}h2{font-size:16px;margin-top:1.5em}
table{border-collapse:collapse;width:100%}td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left}
tr.unknown td:first-child{border-left:4px solid #c62828}
form.act{display:inline-block;margin-right:6px}input[name=result]{width:12em}
.notice{background:#fff3cd;padding:6px 10px;border-radius:4px}.none{color:#777}
code{font-size:12px}
"""


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)} · retrysafe console</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


def _stops(found: list[dict[str, Any]], now: float) -> str:
    if not found:
        return '<p class="none">none</p>'
    out = [
        "<table><tr><th>when</th><th>tool</th><th>limit passed</th><th>calls</th>"
        "<th>window</th><th>session</th></tr>"
    ]
    for stop in found:
        at = stop.get("at")
        cells = [
            _ago(at if isinstance(at, (int, float)) else None, now),
            _e(stop.get("tool")),
            _e(stop.get("reason")),
            f"{_e(stop.get('count'))} of {_e(stop.get('limit'))}",
            _e(stop.get("window")),
            f"<code>{_e(stop.get('session'))}</code>",
        ]
        out.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _caches(counts: dict[str, int]) -> str:
    if not counts:
        return '<p class="none">none</p>'
    rows = "".join(
        f"<tr><td><code>{_e(ns)}</code></td><td>{n}</td></tr>" for ns, n in counts.items()
    )
    return (
        f"<table><tr><th>namespace</th><th>live entries</th></tr>{rows}</table>"
        f'<p class="none">Counted over at most {CACHE_KEYS:,} keys, once a minute. Hits and '
        "misses are each process's own: <code>fn.cache.stats()</code>, or the retrysafe.cache "
        "metrics.</p>"
    )


def _render(store: Any, token: str, notice: str, guard_namespace: str) -> str:
    now = time.time()
    unknown = records.list(store, state="unknown", limit=SHOWN).records
    running = records.list(store, state="in_progress", limit=SHOWN).records
    completed = records.list(store, state="completed", limit=SHOWN).records
    recent = records.list(store, limit=PLOTTED).records
    counts = Counter(made.state for made in recent)
    summary = ", ".join(
        f"{counts.get(state, 0)} {state.replace('_', ' ')}" for state in records.STATES
    )
    body = [
        f"<h1>retrysafe console <small>{_e(repr(store))}</small></h1>",
        f'<p class="notice" id="notice">{_e(notice)}</p>' if notice else "",
        f"<p>Of the newest {len(recent)} records: {summary}.</p>",
        f'<h2 id="unknown">Unknown: a person must settle these ({len(unknown)})</h2>',
        "<p>Applied: the call happened; its next identical call replays the result you give. "
        "Not applied: it did not happen; the next call runs it. Each action holds only while "
        "the claim shown still holds the record.</p>",
        _rows(unknown, token, now, settle=True),
        f'<h2 id="running">In progress ({len(running)})</h2>',
        _rows(running, token, now, settle=False),
        f'<h2 id="completed">Completed, newest ({len(completed)})</h2>',
        _rows(completed, token, now, settle=False),
        '<h2 id="outcomes">Outcomes per hour</h2>',
        _plot(recent, records.outcomes_by_hour(store), now),
        f'<h2 id="stops">Loop guard ({_e(guard_namespace)}): recent stops</h2>',
        _stops(records.guard_stops(store, guard_namespace, SHOWN), now),
        '<h2 id="caches">Cache entries per namespace</h2>',
        _caches(_cache_counts(store)),
    ]
    return _page("records", "".join(body))


def _record_detail(made: records.Record, token: str) -> str:
    now = time.time()
    rows = [
        ("key", made.key),
        ("state", made.state.upper()),
        ("tool", made.tool or "-"),
        ("identity", made.identity()),
        ("claim", f"#{made.claim} (fence {made.fence})"),
        ("owner", made.owner or "-"),
        ("created", _ago(made.created, now)),
        ("updated", _ago(made.updated, now)),
        ("fingerprint", made.fingerprint),
    ]
    if made.state == "completed":
        rows.append(("result", json.dumps(made.result, default=str)))
    table = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    actions = _actions(made, token) if made.state != "completed" else ""
    return f'<p><a href="/">all records</a></p><table>{table}</table>{actions}'


def main(argv: list[str]) -> int:
    """``retrysafe console --store URL [--prefix P] [--host H] [--port N]``."""
    import argparse
    import os

    parser = argparse.ArgumentParser(
        prog="retrysafe console",
        description="A local web page to find and settle idempotency records.",
    )
    parser.add_argument("--store", default=os.environ.get("RETRYSAFE_STORE"))
    parser.add_argument("--prefix", default="retrysafe")
    parser.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--guard-namespace", default="guard", help="the loop guard whose stops are shown"
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    if not args.store:
        print("retrysafe console: name the store: --store URL or $RETRYSAFE_STORE", file=_err())
        return 2
    try:
        import uvicorn
    except ImportError:
        print("retrysafe console: pip install 'retrysafe[console]'", file=_err())
        return 2
    try:
        store = open_store(args.store, args.prefix)
    except ValueError as exc:
        print(f"retrysafe console: {exc}", file=_err())
        return 2
    token = os.environ.get("RETRYSAFE_CONSOLE_TOKEN") or secrets.token_urlsafe(24)
    hosts = tuple(
        {args.host, "127.0.0.1", "localhost"} if args.host == "127.0.0.1" else {args.host}
    )
    app = make_app(store, token, hosts=hosts, guard_namespace=args.guard_namespace)
    print(f"retrysafe console: http://{args.host}:{args.port}/?token={token}", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        getattr(store, "close", lambda: None)()
    return 0


def _err() -> Any:
    import sys

    return sys.stderr
