"""OpenTelemetry traces and metrics of tool calls, and the per-tool report.

Through ``opentelemetry-api`` only, and only once the application has set a tracer or a
meter provider: until then (or without the package) a ``@tool`` call pays one dict lookup
and one attribute read. retrysafe never imports OpenTelemetry itself; it finds it in
``sys.modules`` once the application has imported it.

Each ``@tool`` call gets a span ``retrysafe {tool}``, a child of the current span (the
framework's own ``execute_tool`` span when there is one), with ``gen_ai.tool.name``,
``gen_ai.tool.call.id`` when known, and ``retrysafe.*`` attributes: ``effect``, ``outcome``
(``executed``, ``cache_hit``, ``coalesced``, ``replayed``, ``unknown``, ``refused``,
``loop_stopped``, ``error``), ``attempts``, ``retry.wait_s`` and ``retry.reasons``, and
``key.prefix`` (the idempotency key's first characters; never an argument, never the
whole key). Events: ``retry`` (attempt, wait, reason) and ``lease_takeover``.

Metrics (meter ``retrysafe``): ``retrysafe.tool.calls`` (counter; tool, effect, outcome),
``retrysafe.retry.wait`` (histogram, s; tool, reason), ``retrysafe.singleflight.wait``
(histogram, s; tool), ``retrysafe.records.unknown`` (up-down counter; tool: UNKNOWN records
this process left or settled), ``retrysafe.retry_budget.tokens`` (observable gauge, per
budget).

The report (:func:`report`) needs none of it: per-tool counts kept in this process.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections import Counter
from contextvars import ContextVar
from typing import Any

from ._identity import TOOL_CALL_ID as _TOOL_CALL_ID

__all__ = [
    "CallRecord",
    "current_call",
    "format_report",
    "report",
    "report_counts",
    "tool_call_id",
]

OUTCOMES = (
    "executed",
    "cache_hit",
    "coalesced",
    "replayed",
    "unknown",
    "refused",
    "loop_stopped",
    "error",
)


class CallRecord:
    """What the layers of one ``@tool`` call did, filled in by their slow paths."""

    __slots__ = ("attempts", "key_prefix", "outcome", "span", "waits")

    def __init__(self, span: Any) -> None:
        self.span = span
        self.outcome: str | None = None
        self.attempts = 1
        self.waits: list[tuple[float, str]] = []
        self.key_prefix: str | None = None


_CALL: ContextVar[CallRecord | None] = ContextVar("retrysafe_call", default=None)

# --- per-tool counts for the report (this process) ------------------------------------------

_COUNTS: dict[str, Counter[str]] = {}
_COUNTS_LOCK = threading.Lock()


def count(tool: str, outcome: str, n: int = 1) -> None:
    """Count an outcome of ``tool`` for :func:`report` (slow paths and traced calls)."""
    with _COUNTS_LOCK:
        _COUNTS.setdefault(tool, Counter())[outcome] += n


# --- is anyone listening? ------------------------------------------------------------------


def active() -> bool:
    """True once the application has set an OpenTelemetry tracer or meter provider."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is not None and getattr(trace, "_TRACER_PROVIDER", None) is not None:
        return True
    metrics = sys.modules.get("opentelemetry.metrics._internal")
    return metrics is not None and getattr(metrics, "_METER_PROVIDER", None) is not None


def current_call() -> CallRecord | None:
    """The traced ``@tool`` call running in this context, or None (not traced)."""
    return _CALL.get()


def tool_call_id(value: str | None) -> Any:
    """Bind the model's tool call id (``gen_ai.tool.call.id``) for the calls in a block:
    a token for :func:`reset_tool_call_id`."""
    return _TOOL_CALL_ID.set(value)


def reset_tool_call_id(token: Any) -> None:
    _TOOL_CALL_ID.reset(token)


# --- notes from the layers' slow paths (no-ops unless a traced call is running) -------------


def note(outcome: str) -> None:
    """A layer says what this call was: ``executed``, ``coalesced``, ``replayed``."""
    record = _CALL.get()
    if record is not None and (record.outcome is None or outcome == "executed"):
        record.outcome = outcome


def note_retry(attempt: int, wait: float, reason: str, tool: str) -> None:
    """A retry is about to wait ``wait`` seconds (``reason``: backoff or retry_after)."""
    record = _CALL.get()
    if record is not None:
        record.attempts = attempt + 1
        record.waits.append((wait, reason))
        if record.span is not None:
            record.span.add_event(
                "retry", {"retrysafe.attempt": attempt, "retrysafe.wait_s": wait,
                          "retrysafe.reason": reason},
            )  # fmt: skip
    instruments = _instruments()
    if instruments is not None:
        instruments["retry_wait"].record(
            wait, {"gen_ai.tool.name": tool, "retrysafe.reason": reason}
        )


def note_takeover(fence: int) -> None:
    record = _CALL.get()
    if record is not None and record.span is not None:
        from .stores._records import claim_number

        record.span.add_event("lease_takeover", {"retrysafe.claim": claim_number(fence)})


def note_key(key: Any) -> None:
    record = _CALL.get()
    if record is not None and record.key_prefix is None:
        record.key_prefix = str(key)[:11]


def note_unknown(tool: str, delta: int) -> None:
    """An UNKNOWN record was left (+1) or settled (-1) by this process."""
    count(tool, "unknown_left" if delta > 0 else "unknown_settled")
    instruments = _instruments()
    if instruments is not None:
        instruments["unknown"].add(delta, {"gen_ai.tool.name": tool})


def note_wait(tool: str, seconds: float) -> None:
    """A caller waited ``seconds`` for another's execution (single-flight)."""
    instruments = _instruments()
    if instruments is not None:
        instruments["singleflight_wait"].record(seconds, {"gen_ai.tool.name": tool})


# --- the span and the metrics of one call ---------------------------------------------------

_INSTRUMENTS: dict[int, dict[str, Any]] = {}
_BUDGETS: weakref.WeakSet[Any] = weakref.WeakSet()


def _instruments() -> dict[str, Any] | None:
    """The metric instruments of the current meter provider, created once per provider."""
    internal = sys.modules.get("opentelemetry.metrics._internal")
    provider = None if internal is None else getattr(internal, "_METER_PROVIDER", None)
    if provider is None:
        return None
    made = _INSTRUMENTS.get(id(provider))
    if made is not None and made["provider"] is provider:
        return made
    meter = provider.get_meter("retrysafe")
    made = {
        "provider": provider,
        "calls": meter.create_counter(
            "retrysafe.tool.calls", unit="{call}", description="Tool calls by outcome"
        ),
        "retry_wait": meter.create_histogram(
            "retrysafe.retry.wait", unit="s", description="Waits before a retry"
        ),
        "singleflight_wait": meter.create_histogram(
            "retrysafe.singleflight.wait",
            unit="s",
            description="Time a caller waited for another caller's execution",
        ),
        "unknown": meter.create_up_down_counter(
            "retrysafe.records.unknown",
            unit="{record}",
            description="UNKNOWN records left by this process, less those settled",
        ),
    }
    meter.create_observable_gauge(
        "retrysafe.retry_budget.tokens",
        callbacks=[_budget_tokens],
        unit="{token}",
        description="Tokens left in each retry budget",
    )
    _INSTRUMENTS[id(provider)] = made
    return made


def track_budget(budget: Any) -> None:
    """A RetryBudget to report in ``retrysafe.retry_budget.tokens``."""
    _BUDGETS.add(budget)


def _budget_tokens(options: Any) -> Any:
    from opentelemetry.metrics import Observation

    return [
        Observation(budget.tokens, {"retrysafe.budget": getattr(budget, "name", None) or "default"})
        for budget in list(_BUDGETS)
    ]


_TRACERS: dict[int, tuple[Any, Any]] = {}


def _tracer(trace: Any) -> Any:
    """retrysafe's tracer from the current provider, made once per provider (getting one
    builds a new object each time: several microseconds in the SDK)."""
    provider = trace.get_tracer_provider()
    found = _TRACERS.get(id(provider))
    if found is not None and found[0] is provider:
        return found[1]
    tracer = provider.get_tracer("retrysafe")
    _TRACERS[id(provider)] = (provider, tracer)
    return tracer


_REFUSALS = frozenset(
    {
        "SessionRequiredError",
        "RetryLaterError",
        "IdempotencyKeyMismatchError",
        "IdempotencyInProgressError",
        "RetryRefusedError",
        "StoreError",
        "ArgumentError",
    }
)


def outcome_of_error(error: BaseException) -> str:
    name = type(error).__name__
    if name == "OutcomeUnknownError":
        return "unknown"
    if name == "ToolLoopError":
        return "loop_stopped"
    if name in _REFUSALS:
        return "refused"
    return "error"


class TracedCall:
    """The span and the record of one ``@tool`` call (made only when :func:`active`)."""

    __slots__ = ("_set", "effect", "record", "token", "tool", "unset")

    def __init__(self, tool: str, effect: str, unset: str) -> None:
        self.tool = tool
        self.effect = effect
        #: The outcome when no layer said otherwise: cache_hit (a cached tool), replayed (a
        #: recorded one), executed.
        self.unset = unset
        span = None
        trace = sys.modules.get("opentelemetry.trace")
        if trace is not None and getattr(trace, "_TRACER_PROVIDER", None) is not None:
            attributes: dict[str, Any] = {
                "gen_ai.tool.name": tool,
                "retrysafe.effect": effect,
            }
            call_id = _TOOL_CALL_ID.get()
            if call_id:
                attributes["gen_ai.tool.call.id"] = call_id
            span = _tracer(trace).start_span(f"retrysafe {tool}", attributes=attributes)
        self.record = CallRecord(span)
        self.token: Any = None

    def __enter__(self) -> CallRecord:
        record = self.record
        if record.span is not None:
            trace = sys.modules["opentelemetry.trace"]
            self.token = (
                trace,
                trace.use_span(
                    record.span,
                    end_on_exit=False,
                    record_exception=False,  # a message may carry the arguments
                    set_status_on_exception=False,
                ),
            )
            self.token[1].__enter__()
        self._set = _CALL.set(record)
        return record

    def finish(self, result: Any, error: BaseException | None) -> None:
        record = self.record
        if error is not None:
            outcome = outcome_of_error(error)
        elif type(result).__name__ == "LoopStop":
            outcome = "loop_stopped"
        else:
            outcome = record.outcome or self.unset
        span = record.span
        if span is not None:
            span.set_attribute("retrysafe.outcome", outcome)
            span.set_attribute("retrysafe.attempts", record.attempts)
            if record.waits:
                span.set_attribute("retrysafe.retry.wait_s", sum(w for w, _ in record.waits))
                span.set_attribute("retrysafe.retry.reasons", [r for _, r in record.waits])
            if record.key_prefix:
                span.set_attribute("retrysafe.key.prefix", record.key_prefix)
            if error is not None and outcome == "error":
                from opentelemetry.trace import Status, StatusCode

                # The type only: an error's message and traceback may carry the arguments.
                kind = f"{type(error).__module__}.{type(error).__qualname__}"
                span.add_event("exception", {"exception.type": kind})
                span.set_status(Status(StatusCode.ERROR, kind))
        instruments = _instruments()
        if instruments is not None:
            instruments["calls"].add(
                1,
                {"gen_ai.tool.name": self.tool, "retrysafe.effect": self.effect,
                 "retrysafe.outcome": outcome},
            )  # fmt: skip

    def __exit__(self, *exc: Any) -> None:
        _CALL.reset(self._set)
        if self.token is not None:
            self.token[1].__exit__(*exc)
        if self.record.span is not None:
            self.record.span.end()


class _Tracked:
    __slots__ = ("cache", "idempotency", "qualname")

    def __init__(self, qualname: str, cache: Any, idempotency: Any) -> None:
        self.qualname = qualname
        self.cache = cache
        self.idempotency = idempotency


_TOOLS: dict[str, _Tracked] = {}


def track_tool(name: str, qualname: str, cache: Any, idempotency: Any) -> None:
    """A ``@tool`` whose layers' counters the report reads (the latest of a name wins)."""
    _TOOLS[name] = _Tracked(qualname, cache, idempotency)


def report_counts() -> dict[str, dict[str, int]]:
    """Per tool, what this process counted: ``{tool: {outcome: n}}`` with the outcomes of
    the spans plus ``retries``. Fast paths add nothing here: a cache hit is the cache's own
    count, a replay the record layer's; slow paths (retries, refusals, stops) count here."""
    with _COUNTS_LOCK:
        counted = {tool: Counter(counts) for tool, counts in _COUNTS.items()}
    table: dict[str, dict[str, int]] = {}
    for name, tracked in _TOOLS.items():
        row = counted.pop(name, Counter())
        row["retries"] += counted.pop(tracked.qualname, Counter())["retries"]
        cache, record = tracked.cache, tracked.idempotency
        if cache is not None:
            stats = cache.counters
            row["cache_hit"] += stats.hits
            row["coalesced"] += stats.coalesced
            row["executed"] += stats.executions
        if record is not None:
            row["replayed"] += record.replays
            row["coalesced"] += record.coalesced
            row["executed"] += record.executions
        table[name] = {k: v for k, v in row.items() if v}
    for name, row in counted.items():  # functions retried outside any @tool
        table[name] = {k: v for k, v in row.items() if v}
    return dict(sorted(table.items()))


def report() -> str:
    """A table of what retrysafe did per tool in this process: calls executed, served from
    cache, coalesced, replayed from a record, retried, refused, stopped by the loop guard,
    left UNKNOWN. Kept without any tracing system (``@tool`` calls)."""
    return format_report(report_counts())


def format_report(counts: dict[str, dict[str, int]]) -> str:
    """The table of :func:`report` for counts (``report_counts()``, or several processes'
    summed)."""
    columns = [
        ("executed", "executed"),
        ("cache_hit", "cached"),
        ("coalesced", "coalesced"),
        ("replayed", "replayed"),
        ("retries", "retries"),
        ("refused", "refused"),
        ("loop_stopped", "loop stop"),
        ("unknown", "unknown"),
        ("error", "errors"),
    ]
    width = max([len("tool"), *(len(t) for t in counts)])
    head = f"  {'tool':<{width}}" + "".join(f"{label:>11}" for _, label in columns)
    lines = [head, "  " + "-" * (len(head) - 2)]
    for tool, outcomes in counts.items():
        lines.append(
            f"  {tool:<{width}}" + "".join(f"{outcomes.get(k, 0):>11}" for k, _ in columns)
        )
    if not counts:
        lines.append("  (no tool calls yet)")
    return "\n".join(lines)
