"""A worker process of the Temporal engine tests (its workflow lives in an importable
module: the sandbox re-imports it by name)."""

from __future__ import annotations

import asyncio
import sys

from tests.engines.temporal_app import work

if __name__ == "__main__":
    asyncio.run(work(sys.argv[1], sys.argv[2]))
