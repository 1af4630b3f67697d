"""OpenTelemetry spans and metrics of @tool calls (the SDK's in-memory exporter and metric
reader), the report, and nothing at all without a provider."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import retrysafe
from retrysafe import LoopGuard, RetryConfig, ToolRegistry, session, tool

sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry import metrics, trace  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

ROOT = Path(__file__).resolve().parent.parent
SECRET = "4242-SECRET-CARD"  # an argument value that must never reach an attribute
FAST = RetryConfig(max_attempts=3, base_delay=0.001, max_delay=0.002, jitter=False)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _reset_globals() -> None:
    """Unset the global providers (the API sets each once per process; its own test
    utilities reset them the same way)."""
    from opentelemetry.metrics import _internal as metrics_internal
    from opentelemetry.util._once import Once

    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    metrics_internal._METER_PROVIDER = None
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()


@pytest.fixture
def otel() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    _reset_globals()
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    yield exporter, reader
    provider.shutdown()
    _reset_globals()


def _ours(exporter: InMemorySpanExporter) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith("retrysafe ")]


def _no_arguments_in(spans: list[Any]) -> None:
    for span in spans:
        for value in span.attributes.values():
            assert SECRET not in str(value), (span.name, span.attributes)
        for event in span.events:
            assert SECRET not in str(dict(event.attributes or {}))


def _tools(calls: list[str]) -> dict[str, Any]:
    registry = ToolRegistry()

    @tool.read(cache_ttl=60, registry=registry, retry=FAST)
    async def lookup_card(card: str) -> dict[str, Any]:
        """Look a card up."""
        calls.append("lookup")
        await anyio.sleep(0.05)
        return {"ok": True}

    @tool.write(registry=registry)
    async def charge_card(card: str, amount_cents: int) -> dict[str, Any]:
        """Charge a card."""
        calls.append("charge")
        if amount_cents == 13:
            raise TimeoutError("the response was lost")
        return {"charged": amount_cents}

    return {"lookup": lookup_card, "charge": charge_card, "registry": registry}


@pytest.mark.anyio
async def test_every_outcome_is_a_span_under_the_current_one(
    otel: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    exporter, reader = otel
    calls: list[str] = []
    tools = _tools(calls)
    lookup, charge = tools["lookup"], tools["charge"]
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("agent turn") as parent:
        async with anyio.create_task_group() as tg:  # executed + coalesced
            tg.start_soon(lookup, SECRET)
            tg.start_soon(lookup, SECRET)
        await lookup(SECRET)  # cache_hit
        async with session("conversation-1"):
            await charge(SECRET, 500)  # executed
            await charge(SECRET, 500)  # replayed
            with pytest.raises(retrysafe.OutcomeUnknownError):
                await charge(SECRET, 13)  # unknown
        with pytest.raises(retrysafe.SessionRequiredError):
            await charge(SECRET, 7)  # refused: no conversation
        with LoopGuard(max_identical=1, mode="message"):
            await lookup(SECRET + "-x")
            assert isinstance(await lookup(SECRET + "-x"), retrysafe.LoopStop)  # loop_stopped
    spans = _ours(exporter)
    outcomes = [(s.name, s.attributes["retrysafe.outcome"]) for s in spans]
    assert sorted(outcomes) == sorted(
        [
            ("retrysafe lookup_card", "executed"),
            ("retrysafe lookup_card", "coalesced"),
            ("retrysafe lookup_card", "cache_hit"),
            ("retrysafe charge_card", "executed"),
            ("retrysafe charge_card", "replayed"),
            ("retrysafe charge_card", "unknown"),
            ("retrysafe charge_card", "refused"),
            ("retrysafe lookup_card", "executed"),
            ("retrysafe lookup_card", "loop_stopped"),
        ]
    )
    parent_id = parent.get_span_context().span_id
    assert all(s.parent is not None and s.parent.span_id == parent_id for s in spans)
    for span in spans:
        assert span.attributes["gen_ai.tool.name"] == span.name.split(" ", 1)[1]
        assert span.attributes["retrysafe.effect"] in ("read", "write")
    written = [s for s in spans if s.name == "retrysafe charge_card"]
    prefixes = {s.attributes.get("retrysafe.key.prefix") for s in written}
    assert all(p is None or (p.startswith("ik_") and len(p) == 11) for p in prefixes)
    assert any(p is not None for p in prefixes)
    _no_arguments_in(spans)
    assert 2 == calls.count("lookup") and 2 == calls.count("charge")

    counted: dict[tuple[str, str], int] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "retrysafe.tool.calls":
                    for point in metric.data.data_points:
                        key = (
                            point.attributes["gen_ai.tool.name"],
                            point.attributes["retrysafe.outcome"],
                        )
                        counted[key] = counted.get(key, 0) + point.value
    assert 2 == counted[("lookup_card", "executed")]
    assert 1 == counted[("charge_card", "unknown")]
    assert 1 == counted[("lookup_card", "cache_hit")]


@pytest.mark.anyio
async def test_retries_are_events_and_a_wait_histogram(
    otel: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    exporter, reader = otel
    failures = [ConnectionError("reset"), ConnectionError("reset")]

    @tool.read(cache_ttl=None, registry=None, retry=FAST)
    async def fetch_page(url: str) -> str:
        """Fetch a page."""
        if failures:
            raise failures.pop()
        return "page"

    assert "page" == await fetch_page(SECRET)
    [span] = _ours(exporter)
    assert 3 == span.attributes["retrysafe.attempts"]
    assert ("backoff", "backoff") == tuple(span.attributes["retrysafe.retry.reasons"])
    assert [e.name for e in span.events] == ["retry", "retry"]
    assert [1, 2] == [e.attributes["retrysafe.attempt"] for e in span.events]
    _no_arguments_in([span])
    names = {
        m.name
        for r in reader.get_metrics_data().resource_metrics
        for s in r.scope_metrics
        for m in s.metrics
    }
    assert {"retrysafe.tool.calls", "retrysafe.retry.wait"} <= names


@pytest.mark.anyio
async def test_the_model_call_id_and_a_failure(
    otel: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    exporter, _ = otel
    calls: list[str] = []
    tools = _tools(calls)
    registry = tools["registry"]
    block = {"type": "tool_use", "id": "toolu_01", "name": "lookup_card", "input": {"card": SECRET}}
    result = await registry.anthropic_result(block)
    assert not result.get("is_error")
    [span] = _ours(exporter)
    assert "toolu_01" == span.attributes["gen_ai.tool.call.id"]

    @tool.read(cache_ttl=None, registry=None, retry=False)
    def broken(x: str) -> str:
        """Always fails."""
        raise KeyError(x)

    with pytest.raises(KeyError):
        broken(SECRET)
    failed = _ours(exporter)[-1]
    assert "error" == failed.attributes["retrysafe.outcome"]
    assert not failed.status.is_ok
    _no_arguments_in([failed])


def test_the_report_counts_without_a_tracing_system() -> None:
    """report() reads the layers' own counters and the slow paths' counts."""
    calls: list[str] = []
    registry = ToolRegistry()

    @tool.read(cache_ttl=60, registry=registry, name="report_lookup")
    def lookup(q: str) -> str:
        """Look up."""
        calls.append(q)
        return q

    @tool.write(registry=registry, name="report_charge")
    def charge(amount: int) -> int:
        """Charge."""
        return amount

    lookup("a"), lookup("a"), lookup("b")
    with session("r"):
        charge(1), charge(1)
    with pytest.raises(retrysafe.SessionRequiredError):
        charge(2)
    counts = retrysafe._telemetry.report_counts()
    assert {"executed": 2, "cache_hit": 1} == counts["report_lookup"]
    assert {"executed": 1, "replayed": 1, "refused": 1} == counts["report_charge"]
    table = retrysafe.report()
    row = next(line for line in table.splitlines() if "report_charge" in line)
    assert row.split()[1:] == ["1", "0", "0", "1", "0", "1", "0", "0", "0"]


def test_without_a_provider_or_without_the_package_nothing_is_traced() -> None:
    """No provider set: no span machinery runs; without opentelemetry installed at all,
    tools and report() still work."""
    code = """
import sys
if sys.argv[1] == "absent":
    sys.modules["opentelemetry"] = None  # as if not installed
import retrysafe
from retrysafe import _telemetry, tool, session

@tool.read(cache_ttl=60, registry=None)
def lookup(q: str) -> str:
    \"\"\"Look up.\"\"\"
    return q

assert lookup("x") == lookup("x") == "x"
assert not _telemetry.active()
assert _telemetry.current_call() is None
print("opentelemetry.sdk" in sys.modules, "lookup" in retrysafe.report())
"""
    for mode in ("absent", "no-provider"):
        out = subprocess.run(
            [sys.executable, "-c", code, mode], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert 0 == out.returncode, out.stderr
        assert "False True" == out.stdout.strip()


def test_threads_keep_their_own_spans(
    otel: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    exporter, _ = otel

    @tool.read(cache_ttl=None, registry=None)
    def work(n: int) -> int:
        """Work."""
        return n

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans = _ours(exporter)
    assert 8 == len(spans) and all(s.parent is None for s in spans)


@pytest.mark.anyio
async def test_the_span_nests_in_pydantic_ais_tool_span(
    otel: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    """Pydantic AI's own tracing on: retrysafe's span is a child of its execute_tool span,
    and carries the model's tool call id."""
    pytest.importorskip("pydantic_ai")
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    from retrysafe.integrations.pydantic_ai import Retrysafe

    exporter, _ = otel

    def model(messages: list[Any], info: AgentInfo) -> ModelResponse:
        if sum(isinstance(m, ModelResponse) for m in messages) == 0:
            return ModelResponse(
                parts=[ToolCallPart("charge_card", {"card": SECRET, "amount_cents": 5}, "call_7")]
            )
        return ModelResponse(parts=[TextPart("done")])

    from pydantic_ai.capabilities.instrumentation import Instrumentation

    # Pydantic AI's tracing capability first: its tool span wraps the later capabilities'.
    agent: Agent[None, str] = Agent(
        FunctionModel(model), capabilities=[Instrumentation(), Retrysafe()]
    )

    @agent.tool_plain
    @tool.write(registry=None)
    async def charge_card(card: str, amount_cents: int) -> dict[str, Any]:
        """Charge a card."""
        return {"charged": amount_cents}

    await agent.run("charge it")
    spans = exporter.get_finished_spans()
    [ours] = _ours(exporter)
    framework = [
        s
        for s in spans
        if s.attributes.get("gen_ai.operation.name") == "execute_tool"
        and s.attributes.get("gen_ai.tool.name") == "charge_card"
    ]
    assert framework, [s.name for s in spans]
    assert ours.parent is not None
    assert ours.parent.span_id == framework[0].get_span_context().span_id
    assert "call_7" == ours.attributes["gen_ai.tool.call.id"]
    assert "executed" == ours.attributes["retrysafe.outcome"]
    _no_arguments_in([ours])


def test_logging_one_line_per_decision_none_per_hit(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    failures = [ConnectionError("reset")]

    @tool.read(cache_ttl=60, registry=None, retry=FAST)
    def quote(sku: str) -> int:
        """A price."""
        if failures:
            raise failures.pop()
        return 5

    @tool.write(registry=None)
    def ship(order: str) -> str:
        """Ship an order."""
        raise TimeoutError("lost")

    with caplog.at_level(logging.INFO, logger="retrysafe"):
        for _ in range(20):
            quote("a")  # one retry, then 19 cache hits
        with session("logs"), pytest.raises(retrysafe.OutcomeUnknownError):
            ship(SECRET)
        with LoopGuard(max_identical=1, mode="message"), session("logs2"):
            quote("b"), quote("b")
    decisions = [getattr(r, "retrysafe_decision", None) for r in caplog.records]
    decisions = [d for d in decisions if d is not None]
    assert ["retry", "unknown", "loop_stopped"] == decisions
    retry = next(r for r in caplog.records if getattr(r, "retrysafe_decision", None) == "retry")
    assert ("backoff", 1) == (retry.retrysafe_reason, retry.retrysafe_attempt)  # type: ignore[attr-defined]
    assert all(SECRET not in r.getMessage() for r in caplog.records)
