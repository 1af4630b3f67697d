"""A real HTTP server on loopback for the client tests: each request is answered by a
function of the test, in the server's own threads (the clients talk real HTTP to it)."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any


class Exchange(http.server.BaseHTTPRequestHandler):
    """One request; the test's handler reads it and answers (or drops the connection)."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(
        self,
        status: int,
        body: bytes = b"{}",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def drop(self) -> None:
        """Close the connection without answering (the response is lost)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def truncated(self, status: int = 200, promised: int = 1000) -> None:
        """Headers promising ``promised`` bytes, a few of them, then the connection closes."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(promised))
        self.end_headers()
        self.wfile.write(b'{"partial": ')
        self.wfile.flush()
        self.drop()

    def _handle(self) -> None:
        self.server.handler(self)

    do_GET = do_POST = do_PUT = do_DELETE = _handle


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the listen backlog: many agents connect at once
    handler: Callable[[Exchange], None]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up first (the tests drop connections on purpose)


@contextlib.contextmanager
def serving(handler: Callable[[Exchange], None]) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port; yields the base URL."""
    server = _Server(("127.0.0.1", 0), Exchange)
    server.handler = handler
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
