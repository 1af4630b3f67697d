"""examples/patterns.py runs, and no side effect happens twice."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from retrysafe.testing import retries_disabled_waits

PATTERNS = Path(__file__).resolve().parent.parent / "examples" / "patterns.py"


def test_patterns_run_without_duplicates(redis_url: str, monkeypatch: object) -> None:
    """Every pattern of the post, with fake remotes, and Redis for the sync cache."""
    import os

    os.environ["REDIS_URL"] = redis_url
    try:
        spec = importlib.util.spec_from_file_location("patterns", PATTERNS)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.exchange_rate.cache.clear()
        with retries_disabled_waits():
            report = module.main()
    finally:
        del os.environ["REDIS_URL"]
    assert 0 == report["duplicates"]
    assert {"charge:cus_42:1999": 1, "refund:ord-1": 1} == report["charges"]
    assert {"order-confirmation:ada@example.com": 1} == report["emails"]
    assert {"sku-mug": 1} == report["catalog_calls"]
    assert 2 == report["refund_attempts"]  # the retry re-sent the same key: one refund
    assert 1 == report["exchange_rate_cache"]["hits"]
