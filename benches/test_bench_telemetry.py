"""What tracing costs a ``@tool`` call (issue 17), same run.

- `untraced`: a READ ``@tool`` served from its cache, no provider set: the check that no
  provider is set (one dict lookup, one attribute read) is all retrysafe adds.
- `traced`: the same call with the OpenTelemetry SDK's TracerProvider, a
  SimpleSpanProcessor into the in-memory exporter (cleared as it fills) and a MeterProvider
  with the in-memory reader: a span, its attributes and a counter point per call.
The untraced cache hit of ``cache_tool`` and the retry happy path are measured in
test_bench_cache.py and test_bench_retry.py (their code has no tracing in it).
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from retrysafe import tool

from .conftest import measure


def _reset() -> None:
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    metrics_internal._METER_PROVIDER = None
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()


def _lookup() -> Any:
    @tool.read(cache_ttl=600, registry=None)
    def lookup_product(sku: str) -> dict[str, Any]:
        """A product."""
        return {"sku": sku, "price_cents": 1999}

    lookup_product("sku-1")
    return lambda: lookup_product("sku-1")


def _tracing() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _reset()
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    return exporter


def _cleared(call: Any, exporter: InMemorySpanExporter) -> Any:
    n = [0]

    def run() -> Any:
        n[0] += 1
        if n[0] % 5000 == 0:
            exporter.clear()
        return call()

    return run


@pytest.mark.parametrize("name", ["untraced", "traced"])
def test_tool_cache_hit(benchmark: Any, name: str) -> None:
    benchmark.group = "@tool cache hit per call: tracing off / on"
    call = _lookup()
    try:
        if name == "traced":
            call = _cleared(call, _tracing())
        measure(benchmark, call)
    finally:
        _reset()
