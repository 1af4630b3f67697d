"""A local stand-in for the Anthropic Messages API, for agents that only talk to the real
endpoint (the Claude Agent SDK's bundled CLI): on 127.0.0.1, it answers each request from a
script of tool calls, streamed as the API streams (server-sent events).

The script is a list of replies; each is the list of tool calls the model makes in one
reply; past the script the model answers ``text`` and ends. Each request that offers tools
takes the next reply; a client's own extra requests (titles, summaries: no tools offered)
get a plain text answer and do not advance the script."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _events(blocks: list[dict[str, Any]], stop_reason: str) -> Iterator[tuple[str, Any]]:
    yield (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": "claude-fake",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 1},
            },
        },
    )
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        yield (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": start},
        )
        yield (
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": delta},
        )
        yield ("content_block_stop", {"type": "content_block_stop", "index": index})
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": 5},
        },
    )
    yield ("message_stop", {"type": "message_stop"})


class FakeAnthropic:
    """The scripted API; ``requests`` keeps every request body it was sent."""

    def __init__(self, script: list[list[tuple[str, dict[str, Any]]]], text: str = "done") -> None:
        self.script = script
        self.text = text
        self.requests: list[dict[str, Any]] = []
        self.replies = 0
        self.lock = threading.Lock()

    def reply(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        with self.lock:
            self.requests.append(body)
        if not body.get("tools"):
            return [{"type": "text", "text": self.text}], "end_turn"
        with self.lock:
            replies = self.replies
            self.replies += 1
        calls = self.script[replies] if replies < len(self.script) else []
        if not calls:
            return [{"type": "text", "text": self.text}], "end_turn"
        blocks = [
            {"type": "tool_use", "id": f"toolu_{replies}_{i}", "name": name, "input": args}
            for i, (name, args) in enumerate(calls)
        ]
        return blocks, "tool_use"


@contextmanager
def serving(api: FakeAnthropic) -> Iterator[str]:
    """Serve ``api`` on a free loopback port; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
            if not self.path.split("?")[0].endswith("/messages"):  # count_tokens and the like
                self._json({"input_tokens": 10})
                return
            blocks, stop = api.reply(body)
            if not body.get("stream"):
                self._json(
                    {
                        "id": "msg_fake",
                        "type": "message",
                        "role": "assistant",
                        "model": "claude-fake",
                        "content": blocks,
                        "stop_reason": stop,
                        "stop_sequence": None,
                        "usage": {"input_tokens": 10, "output_tokens": 5},
                    }
                )
                return
            payload = b"".join(
                f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                for name, data in _events(blocks, stop)
            )
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self._json({})

        def _json(self, value: Any) -> None:
            data = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
