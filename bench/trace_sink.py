"""A stand-in OTLP/HTTP trace collector for `make bench`: takes every export (POST /v1/traces),
counts the bytes and answers what a collector answers, so the traced gateway pays its real
export cost (protobuf encoding, HTTP) without a collector on the machine."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Export(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        sink: TraceSink = self.server.sink  # type: ignore[attr-defined]
        with sink.lock:
            sink.exports += 1
            sink.received_bytes += length
        # An empty ExportTraceServiceResponse is zero protobuf bytes.
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


class TraceSink:
    """Listening on 127.0.0.1:`port` in a thread until `stop()`."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.exports = 0
        self.received_bytes = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _Export)
        self._server.sink = self  # type: ignore[attr-defined]
        self.endpoint = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> TraceSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
