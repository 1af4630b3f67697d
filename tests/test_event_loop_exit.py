"""A program that used a store from asyncio or trio exits promptly when its event loop ends:
no task, thread or connection of the store keeps it alive (PostgresStore's per-loop pool
once left a task that asyncio's shutdown waited on forever)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

WORKER = textwrap.dedent(
    """
    import sys
    import time
    import uuid

    import anyio

    from retrysafe import Effect, idempotent, session
    from retrysafe.stores import resolve_store

    url, backend, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
    if url.startswith("postgres"):
        from retrysafe.stores import PostgresStore

        store = PostgresStore(url, prefix=prefix)
    elif url.startswith("sqlite"):
        store = resolve_store(url)
    else:
        from retrysafe.stores import RedisStore

        store = RedisStore(url, prefix=prefix)


    @idempotent(store=store, effect=Effect.WRITE)
    async def charge(n: int) -> int:
        await anyio.sleep(0.01)
        return n


    async def main() -> None:
        async with session(f"exit-{uuid.uuid4().hex}"):
            async with anyio.create_task_group() as tg:
                for i in range(40):
                    tg.start_soon(charge, i % 8)
        print(f"last-call {time.time()}", flush=True)


    anyio.run(main, backend=backend)
    """
)

ROUNDS = 20 if os.environ.get("RETRYSAFE_SLOW") else 2
PROCESSES = 4


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("kind", ["redis", "cluster", "sqlite", "postgres"])
def test_processes_exit_promptly_after_their_last_call(
    kind: str, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Four processes, each 40 concurrent writes over 8 keys inside anyio.run, on a fresh
    store; every process exits within 5 s of its last call, every round."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'exit.db'}"
    else:
        fixture = {"redis": "redis_url", "cluster": "redis_cluster_url"}.get(kind, "postgres_url")
        url = str(request.getfixturevalue(fixture))
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for round_ in range(ROUNDS):
        prefix = f"exit-{os.getpid()}-{round_}-{time.monotonic_ns()}"
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), url, backend, prefix],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(PROCESSES)
        ]
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                pytest.fail(f"round {round_}: a process never exited ({kind}, {backend})")
            ended = time.time()
            assert 0 == proc.returncode, err[-2000:]
            last = float(out.split("last-call ")[1].split()[0])
            assert ended - last < 5.0, (
                f"round {round_}: exited {ended - last:.1f} s after its last call"
            )
