"""A loopback stand-in for the collector: answers reports with a set status and keeps them."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class CollectorStub:
    """Answers every report with ``status`` and keeps what it received; 404 off the report path."""

    def __init__(self) -> None:
        self.status = 201
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.on_report: Callable[[], None] | None = None
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stub.received.append((dict(self.headers), json.loads(body)))
                data = json.dumps({"message": "stub"}).encode()
                found = self.path == "/api/usage/report"
                self.send_response(stub.status if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if stub.on_report is not None:
                    stub.on_report()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
