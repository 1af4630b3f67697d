"""``retrysafe demo``: a swarm of agents against a flaky payments + e-mail + catalog API,
run naive and with retrysafe, side by side.

The fake API misbehaves the way real ones do: it loses the response after it already acted
(the client sees a timeout), it throttles with 429 and Retry-After, and it times out before
acting. The naive agents retry with a plain loop, and their "model" calls a failed tool once
more; the retrysafe agents use ``@tool`` (cache + single-flight for reads, keyed records and
key-honouring retries for writes). Same seed, same faults, different outcomes.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio

from . import _telemetry
from ._exceptions import OutcomeUnknownError, RetrysafeError
from ._idempotent import resolve
from ._identity import session
from ._retry import RetryConfig, RetryEvent
from ._tool import tool
from .stores import MISS

PRODUCTS = ["sku-mug", "sku-tee", "sku-cap", "sku-bag", "sku-pen"]


class Throttled(Exception):
    """429 Too Many Requests, with a Retry-After header (seconds)."""

    status_code = 429

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"429 Too Many Requests (retry after {retry_after}s)")
        self.headers = {"retry-after": f"{retry_after:.3f}"}


class APITimeout(TimeoutError):
    """The client gave up waiting; the server may or may not have acted."""


# --- the remote's books: in memory, or in Redis for a multi-process swarm -------------------


class Ledger:
    """Side effects the API really performed, and the responses it keeps per idempotency key."""

    def __init__(self) -> None:
        self.effects: Counter[str] = Counter()
        self.responses: dict[str, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()

    async def call(self, kind: str) -> None:
        self.calls[kind] += 1

    async def seen(self, key: str) -> dict[str, Any] | None:
        return self.responses.get(key)

    async def act(
        self, kind: str, order_id: str, key: str | None, response: dict[str, Any]
    ) -> None:
        self.effects[f"{kind}:{order_id}"] += 1
        if key is not None:
            self.responses[key] = response

    async def snapshot(self) -> tuple[Counter[str], Counter[str]]:
        return self.effects, self.calls


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class StoreLedger(Ledger):
    """The same books in a shared store (Redis, SQLite, PostgreSQL): every process of the
    swarm writes to them, and the totals are read back per order."""

    KINDS = ("charge", "email", "catalog")

    def __init__(self, url: str, prefix: str, order_ids: list[str]) -> None:
        super().__init__()
        self.store = shared_store(url, prefix + ":books")
        self.order_ids = order_ids

    async def call(self, kind: str) -> None:
        await self.store.aincr(f"calls:{kind}", 1, 3600)

    async def seen(self, key: str) -> dict[str, Any] | None:
        found = await self.store.aget(f"resp:{key}")
        return None if found is MISS else dict(found)

    async def act(
        self, kind: str, order_id: str, key: str | None, response: dict[str, Any]
    ) -> None:
        await self.store.aincr(f"effects:{kind}:{order_id}", 1, 3600)
        if key is not None:
            await self.store.aset(f"resp:{key}", response, 3600)

    async def snapshot(self) -> tuple[Counter[str], Counter[str]]:
        effects: Counter[str] = Counter()
        for order_id in self.order_ids:
            for kind in ("charge", "email"):
                n = int(await self.store.aincr(f"effects:{kind}:{order_id}", 0, 3600))
                if n:
                    effects[f"{kind}:{order_id}"] = n
        calls = Counter(
            {kind: int(await self.store.aincr(f"calls:{kind}", 0, 3600)) for kind in self.KINDS}
        )
        return effects, calls

    async def aclose(self) -> None:
        await _close(self.store)


def shared_store(url: str, prefix: str) -> Any:
    """The store a demo process shares with the others: Redis, SQLite or PostgreSQL."""
    from .stores import PostgresStore, RedisStore, SQLiteStore

    if url.startswith("sqlite://"):
        return SQLiteStore.from_url(url, prefix=prefix)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url, prefix=prefix)
    return RedisStore(url, prefix=prefix)


async def _close(store: Any) -> None:
    closer = getattr(store, "aclose", None)
    if closer is not None:
        await closer()
    if hasattr(store, "close"):
        store.close()


@dataclass
class FlakyAPI:
    """Payments, e-mail and catalog, with realistic faults drawn from a seeded generator."""

    rng: random.Random
    ledger: Ledger
    lose_response: float = 0.12
    throttle: float = 0.08
    timeout_before: float = 0.05
    latency: tuple[float, float] = (0.002, 0.012)

    async def _fault_before(self) -> None:
        r = self.rng.random()
        await anyio.sleep(self.rng.uniform(*self.latency))
        if r < self.throttle:
            raise Throttled(0.01 + self.rng.random() * 0.02)
        if r < self.throttle + self.timeout_before:
            raise APITimeout("request timed out before the server acted")

    async def _write(
        self, kind: str, order_id: str, key: str | None, make: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        await self.ledger.call(kind)
        await self._fault_before()
        if key is not None:
            earlier = await self.ledger.seen(key)
            if earlier is not None:
                return earlier  # the remote honours idempotency keys, like Stripe
        response = make()
        await self.ledger.act(kind, order_id, key, response)
        if self.rng.random() < self.lose_response:
            raise APITimeout("the server acted, but the response was lost")
        return response

    async def charge(
        self, order_id: str, customer: str, amount_cents: int, key: str | None = None
    ) -> dict[str, Any]:
        return await self._write(
            "charge",
            order_id,
            key,
            lambda: {"charge": f"ch_{uuid.uuid4().hex[:8]}", "amount": amount_cents},
        )

    async def send_email(self, order_id: str, to: str, key: str | None = None) -> dict[str, Any]:
        return await self._write(
            "email", order_id, key, lambda: {"message": f"msg_{uuid.uuid4().hex[:8]}", "to": to}
        )

    async def catalog(self, sku: str) -> dict[str, Any]:
        await self.ledger.call("catalog")
        await self._fault_before()
        await anyio.sleep(0.02)  # a slow lookup: worth caching and coalescing
        return {"sku": sku, "price_cents": 1000 + 100 * PRODUCTS.index(sku)}


# --- the two kinds of agent -----------------------------------------------------------------


@dataclass
class Tally:
    retries: int = 0
    cache_hits: int = 0
    coalesced: int = 0
    reconciled: int = 0
    failed_orders: int = 0
    latencies: list[float] = field(default_factory=list)


def _orders(seed: int, agents: int, per_agent: int) -> list[list[tuple[str, str, str]]]:
    rng = random.Random(seed)
    return [
        [(f"ord-{a:03d}-{k}", f"cus_{a:03d}", rng.choice(PRODUCTS)) for k in range(per_agent)]
        for a in range(agents)
    ]


async def _model_calls(fn: Callable[[], Any]) -> Any:
    """The model calls a tool; when it errors, the model tries it once more."""
    try:
        return await fn()
    except Exception:
        return await fn()


async def run_naive(
    api: FlakyAPI, orders: list[list[tuple[str, str, str]]], progress: Callable[[], None]
) -> Tally:
    tally = Tally()

    async def with_loop(fn: Callable[[], Any]) -> Any:
        for attempt in range(3):  # the plain retry loop found in many agents
            try:
                return await fn()
            except Exception:
                if attempt == 2:
                    raise
                tally.retries += 1
                await anyio.sleep(0.01)
        raise AssertionError

    async def agent(mine: list[tuple[str, str, str]]) -> None:
        for order_id, customer, sku in mine:
            start = time.perf_counter()
            try:
                product = await _model_calls(partial(with_loop, partial(api.catalog, sku)))
                price = product["price_cents"]
                await _model_calls(
                    partial(with_loop, partial(api.charge, order_id, customer, price))
                )
                to = f"{customer}@example.com"
                await _model_calls(partial(with_loop, partial(api.send_email, order_id, to)))
            except Exception:
                tally.failed_orders += 1
            tally.latencies.append(time.perf_counter() - start)
            progress()

    async with anyio.create_task_group() as tg:
        for mine in orders:
            tg.start_soon(agent, mine)
    return tally


async def run_retrysafe(
    api: FlakyAPI,
    orders: list[list[tuple[str, str, str]]],
    progress: Callable[[], None],
    store: Any,
) -> Tally:
    tally = Tally()

    def count(event: RetryEvent) -> None:
        tally.retries += 1

    config = RetryConfig(
        max_attempts=6, base_delay=0.005, max_delay=0.05, on_retry=count, random=api.rng.random
    )

    @tool.read(cache_ttl=60, retry=config, store=store, registry=None)
    async def lookup_product(sku: str) -> dict[str, Any]:
        """Look up a product's price."""
        return await api.catalog(sku)

    @tool.write(remote_idempotent=True, retry=config, store=store, registry=None)
    async def charge_order(
        order_id: str, customer: str, amount_cents: int, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Charge the customer for the order."""
        return await api.charge(order_id, customer, amount_cents, key=idempotency_key)

    @tool.write(remote_idempotent=True, retry=config, store=store, registry=None)
    async def send_confirmation(
        order_id: str, to: str, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """E-mail the order confirmation."""
        return await api.send_email(order_id, to, key=idempotency_key)

    async def settle(call: Callable[[], Any]) -> Any:
        """The model calls the tool (and once more on error); an UNKNOWN outcome is settled by
        asking the remote what happened under the key, never by running it again."""
        try:
            return await _model_calls(call)
        except OutcomeUnknownError as err:
            tally.reconciled += 1
            known = await api.ledger.seen(str(err.key))
            if known is not None:
                resolve(err, applied=known)
            else:
                resolve(err, not_applied=True)
            return await call()

    async def agent(index: int, mine: list[tuple[str, str, str]]) -> None:
        async with session(f"agent-{index}"):
            for order_id, customer, sku in mine:
                start = time.perf_counter()
                try:
                    product = await settle(partial(lookup_product, sku))
                    price = product["price_cents"]
                    await settle(partial(charge_order, order_id, customer, price))
                    await settle(partial(send_confirmation, order_id, f"{customer}@example.com"))
                except (Exception, RetrysafeError):
                    tally.failed_orders += 1
                tally.latencies.append(time.perf_counter() - start)
                progress()

    async with anyio.create_task_group() as tg:
        for index, mine in enumerate(orders):
            tg.start_soon(agent, index, mine)
    stats = lookup_product.cache.stats()
    tally.cache_hits = stats["hits"]
    tally.coalesced = stats["coalesced"]
    return tally


# --- running and reporting ------------------------------------------------------------------


def _duplicates(effects: Counter[str], kind: str) -> int:
    return sum(n - 1 for k, n in effects.items() if k.startswith(kind + ":") and n > 1)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _figures(tally: Tally, effects: Counter[str], calls: Counter[str]) -> dict[str, Any]:
    return {
        "duplicate_charges": _duplicates(effects, "charge"),
        "duplicate_emails": _duplicates(effects, "email"),
        "remote_calls": sum(calls.values()),
        "cache_hits": tally.cache_hits,
        "coalesced": tally.coalesced,
        "retries": tally.retries,
        "reconciled_unknown": tally.reconciled,
        "failed_orders": tally.failed_orders,
        "p50_ms": round(_percentile(tally.latencies, 0.5) * 1000, 1),
        "p99_ms": round(_percentile(tally.latencies, 0.99) * 1000, 1),
    }


class _Progress:
    def __init__(self, label: str, total: int, quiet: bool) -> None:
        self.label, self.total, self.done, self.quiet = label, total, 0, quiet
        self.tty = sys.stdout.isatty()
        self.next_mark = 0.25

    def __call__(self) -> None:
        self.done += 1
        if self.quiet:
            return
        if self.tty:
            print(f"\r  {self.label:<10} {self.done:>4}/{self.total} orders", end="", flush=True)
            if self.done == self.total:
                print()
        elif self.done / self.total >= self.next_mark:
            print(f"  {self.label:<10} {self.done:>4}/{self.total} orders", flush=True)
            self.next_mark += 0.25


async def _one_mode(
    mode: str, args: argparse.Namespace, orders: list[list[tuple[str, str, str]]], quiet: bool
) -> dict[str, Any]:
    total = sum(len(o) for o in orders)
    progress = _Progress(mode, total, quiet)
    prefix = f"{args.run_id}:{mode}"
    ids = [order_id for agent in orders for order_id, _, _ in agent]
    ledger: Ledger = StoreLedger(args.store, prefix, ids) if args.store else Ledger()
    api = FlakyAPI(random.Random(args.seed * 1000 + args.worker), ledger)
    if mode == "naive":
        tally = await run_naive(api, orders, progress)
    else:
        store: Any = shared_store(args.store, prefix) if args.store else None
        tally = await run_retrysafe(api, orders, progress, store)
        if store is not None:
            await _close(store)
    effects, calls = await ledger.snapshot()
    if isinstance(ledger, StoreLedger):
        await ledger.aclose()
    return {
        "figures": _figures(tally, effects, calls),
        "latencies": tally.latencies,
        "tally": tally.__dict__,
        "report": _telemetry.report_counts() if mode == "retrysafe" else {},
    }


def _table(naive: dict[str, Any], safe: dict[str, Any]) -> str:
    rows = [
        ("duplicate charges", "duplicate_charges"),
        ("duplicate e-mails", "duplicate_emails"),
        ("remote calls made", "remote_calls"),
        ("cache hits", "cache_hits"),
        ("coalesced calls", "coalesced"),
        ("retries", "retries"),
        ("unknown outcomes reconciled", "reconciled_unknown"),
        ("orders failed", "failed_orders"),
        ("latency p50 (ms)", "p50_ms"),
        ("latency p99 (ms)", "p99_ms"),
    ]
    lines = [f"  {'':<30}{'naive':>12}{'retrysafe':>12}", "  " + "-" * 54]
    for label, key in rows:
        lines.append(f"  {label:<30}{naive[key]!s:>12}{safe[key]!s:>12}")
    return "\n".join(lines)


def _merge(parts: list[dict[str, Any]], effects_source: dict[str, Any]) -> dict[str, Any]:
    """Sum per-process figures; side effects and remote calls come from the shared ledger."""
    latencies = [x for p in parts for x in p["latencies"]]
    merged = {
        k: sum(p["figures"][k] for p in parts)
        for k in ("cache_hits", "coalesced", "retries", "reconciled_unknown", "failed_orders")
    }
    merged.update(
        {k: effects_source[k] for k in ("duplicate_charges", "duplicate_emails", "remote_calls")}
    )
    merged["p50_ms"] = round(_percentile(latencies, 0.5) * 1000, 1)
    merged["p99_ms"] = round(_percentile(latencies, 0.99) * 1000, 1)
    return merged


def _spawn(args: argparse.Namespace, mode: str, worker: int) -> subprocess.Popen[str]:
    command = [
        sys.executable, "-m", "retrysafe", "demo", "--worker-mode", mode, "--worker", str(worker),
        "--processes", str(args.processes), "--agents", str(args.agents), "--orders", str(args.orders),
        "--seed", str(args.seed), "--store", args.store, "--run-id", args.run_id,
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


async def _ledger_figures(
    args: argparse.Namespace, mode: str, orders: list[list[tuple[str, str, str]]]
) -> dict[str, Any]:
    ids = [order_id for agent in orders for order_id, _, _ in agent]
    ledger = StoreLedger(args.store, f"{args.run_id}:{mode}", ids)
    effects, calls = await ledger.snapshot()
    await ledger.aclose()
    return _figures(Tally(), effects, calls)


def _sum_reports(reports: list[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    total: dict[str, Counter[str]] = {}
    for report in reports:
        for tool_name, counts in report.items():
            total.setdefault(tool_name, Counter()).update(counts)
    return {name: dict(counts) for name, counts in sorted(total.items())}


def _kind(url: str) -> str:
    if url.startswith("sqlite"):
        return "SQLite"
    return "PostgreSQL" if url.startswith("postgres") else "Redis"


def run(argv: list[str] | None = None) -> int:
    """Run the demo; returns 0 when retrysafe made no duplicate side effect."""
    parser = argparse.ArgumentParser(prog="retrysafe demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=50, help="concurrent agents (default 50)")
    parser.add_argument("--orders", type=int, default=3, help="orders per agent (default 3)")
    parser.add_argument("--seed", type=int, default=7, help="makes a run repeatable")
    parser.add_argument(
        "--store",
        help="a shared store's URL: redis:// (or redis+cluster://), sqlite:///path.db or "
        "postgresql://...; it holds retrysafe's state and the fake API's books",
    )
    parser.add_argument("--redis", help="the same as --store with a redis:// URL")
    parser.add_argument(
        "--processes", type=int, default=1, help="with --store: run the swarm as N processes"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--worker-mode", help=argparse.SUPPRESS)
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--run-id", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.store = args.store or args.redis
    if args.agents < 1 or args.orders < 1 or args.processes < 1:
        parser.error("--agents, --orders and --processes must be at least 1")
    if args.processes > 1 and not args.store:
        parser.error(
            "--processes needs --store URL: processes share their state through Redis, "
            "SQLite or PostgreSQL"
        )
    args.run_id = args.run_id or f"retrysafe-demo-{uuid.uuid4().hex[:8]}"

    all_orders = _orders(args.seed, args.agents, args.orders)
    if args.worker_mode:  # one process of a swarm: its share of the agents
        logging.getLogger("retrysafe").setLevel(logging.ERROR)
        mine = all_orders[args.worker :: args.processes]
        result = anyio.run(_one_mode, args.worker_mode, args, mine, True)
        print(json.dumps(result))
        return 0

    # Retries are the point of the demo: counted in the table, not logged one by one.
    logging.getLogger("retrysafe").setLevel(logging.ERROR)
    quiet = args.json
    total = args.agents * args.orders
    if not quiet:
        where = f"{_kind(args.store)}, {args.processes} process(es)" if args.store else "in memory"
        print(
            f"retrysafe demo: {args.agents} agents, {total} orders, 3 tool calls each ({where}, seed {args.seed})"
        )
        print("The API loses responses after acting, throttles with Retry-After, and times out.\n")
    started = time.perf_counter()
    figures: dict[str, dict[str, Any]] = {}
    per_tool: dict[str, dict[str, int]] = {}
    for mode in ("naive", "retrysafe"):
        if args.processes == 1:
            result = anyio.run(_one_mode, mode, args, all_orders, quiet)
            figures[mode] = result["figures"]
            per_tool = result["report"] or per_tool
        else:
            workers = [_spawn(args, mode, w) for w in range(args.processes)]
            parts = [json.loads(w.communicate()[0]) for w in workers]
            if any(w.returncode for w in workers):
                print("a worker process failed", file=sys.stderr)
                return 2
            if not quiet:
                print(f"  {mode:<10} {total:>4}/{total} orders ({args.processes} processes)")
            figures[mode] = _merge(parts, anyio.run(_ledger_figures, args, mode, all_orders))
            if mode == "retrysafe":
                per_tool = _sum_reports([p["report"] for p in parts])
    elapsed = time.perf_counter() - started
    safe = figures["retrysafe"]
    clean = safe["duplicate_charges"] == 0 and safe["duplicate_emails"] == 0
    if args.json:
        print(json.dumps({"seed": args.seed, "elapsed_s": round(elapsed, 2), **figures}, indent=2))
        return 0 if clean else 1
    naive = figures["naive"]
    print()
    print(_table(naive, safe))
    print()
    print("What retrysafe did, per tool (retrysafe.report()):")
    print(_telemetry.format_report(per_tool))
    print()
    dupes = naive["duplicate_charges"] + naive["duplicate_emails"]
    if clean:
        print(
            f"With retrysafe: zero duplicate side effects. The naive swarm charged {naive['duplicate_charges']} "
            f"and e-mailed {naive['duplicate_emails']} time(s) too many ({dupes} duplicates), "
            f"and made {naive['remote_calls'] - safe['remote_calls']} more remote calls."
        )
    else:
        print(
            "retrysafe made a duplicate side effect: this is a bug, please report it with the seed."
        )
    print(f"({elapsed:.1f} s)")
    return 0 if clean else 1
