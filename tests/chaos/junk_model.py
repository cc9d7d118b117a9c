"""A model server that answers the OpenAI chat API with junk: the fault injector for "the model returns junk".

A real HTTP server on a free loopback port. Each call gets the next kind of junk in turn: garbled words,
the system prompt echoed back, an HTML error page with status 200, a stream with broken JSON, a stream cut
off mid-way, endless text with no question, an empty stream, a 500, and a non-streamed body where a stream
was asked for. ``marks`` are strings of that junk that must never reach a student.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GARBLE = "zxqv blorp ## %% qqq zxqv, blorp blorp"
KINDS = ["garbled", "echo", "html", "broken_json", "cut_off", "endless", "empty", "error_500", "not_streamed"]


@dataclass
class JunkModel:
    url: str = ""
    calls: int = 0
    kinds_served: list[str] = field(default_factory=list)
    marks: tuple[str, ...] = ("zxqv", "blorp", "<html", "{not json", "LEAKED-SYSTEM")
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_kind(self) -> str:
        with self._lock:
            kind = KINDS[self.calls % len(KINDS)]
            self.calls += 1
            self.kinds_served.append(kind)
            return kind


def _chunk(text: str) -> bytes:
    body = {
        "id": "junk",
        "object": "chat.completion.chunk",
        "model": "default_model",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


def _handler(junk: JunkModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the body ends when the connection closes

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._send(200, "application/json", b'{"object": "list", "data": [{"id": "default_model"}]}')

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
            system = next((m["content"] for m in request.get("messages", []) if m["role"] == "system"), "")
            kind = junk.next_kind()
            with suppress(BrokenPipeError, ConnectionResetError):
                self._junk(kind, system)

        def _junk(self, kind: str, system: str) -> None:
            if kind == "html":
                return self._send(200, "text/html", b"<html><body>502 Bad Gateway</body></html>")
            if kind == "error_500":
                return self._send(500, "application/json", b'{"error": {"message": "boom"}}')
            if kind == "not_streamed":
                return self._send(
                    200, "application/json", b'{"choices": [{"message": {"content": "zxqv?"}}]}'
                )
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            if kind == "garbled":
                for word in GARBLE.split():
                    self.wfile.write(_chunk(word + " "))
                self.wfile.write(_chunk("zxqv?"))
            elif kind == "echo":
                self.wfile.write(_chunk("LEAKED-SYSTEM: " + system[:300] + " What is your question?"))
            elif kind == "broken_json":
                self.wfile.write(b"data: {not json at all\n\n")
            elif kind == "cut_off":
                self.wfile.write(_chunk("Which part of the lab"))
                self.wfile.flush()
                self.connection.shutdown(2)  # the connection dies mid-reply
                return
            elif kind == "endless":
                for _ in range(300):
                    self.wfile.write(_chunk("blorp "))
            self.wfile.write(b"data: [DONE]\n\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextmanager
def running_junk_model() -> Iterator[JunkModel]:
    """The junk server; ``url`` is an OpenAI base URL (``.../v1``)."""
    junk = JunkModel()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(junk))
    server.daemon_threads = True
    junk.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, name="junk-model", daemon=True)
    thread.start()
    try:
        yield junk
    finally:
        server.shutdown()
        server.server_close()
