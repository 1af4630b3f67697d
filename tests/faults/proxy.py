"""A TCP proxy that injects network faults between retrysafe and a real server.

Modes: ``pass`` (bytes flow), ``hold`` (a partition behind a middlebox: connections stay
open and nothing flows either way; held bytes flow when it heals, as TCP retransmits),
``drop_replies`` (requests reach the server, its replies are thrown away), and
:meth:`FaultProxy.reset` (every open connection is cut). One thread accepts, two pump each
connection; the mode is read on every chunk, so a fault starts within a few milliseconds.
"""

from __future__ import annotations

import select
import socket
import threading
import time

MODES = ("pass", "hold", "drop_replies")


class FaultProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.mode = "pass"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="fault-proxy").start()

    def set(self, mode: str) -> None:
        assert mode in MODES, mode
        self.mode = mode

    def reset(self) -> None:
        """Cut every open connection (RST), as a server crash or a NAT timeout would."""
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            try:
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                sock.close()
            except OSError:
                pass

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.reset()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while not self._closed:
                if self.mode == "hold":
                    time.sleep(0.02)  # leave the bytes in the kernel's buffers
                    continue
                ready, _, _ = select.select([source], [], [], 0.02)
                if not ready:
                    continue
                if self.mode == "hold":
                    continue
                data = source.recv(65536)
                if not data:
                    break
                if replies and self.mode == "drop_replies":
                    continue
                sink.sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.close()
                except OSError:
                    pass
