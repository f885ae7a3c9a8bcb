"""A simulated customer instance on loopback: a paged device API and a ``/metrics`` endpoint.

- ``GET /api/devices?cursor=N`` returns ``{"devices": [{"id", "status"}...], "next_cursor"}``;
  ``next_cursor`` is null on the last page.
- ``GET /metrics`` serves ``mqtt_messages_received_total{broker="..."}``, a counter that grows by
  exactly what ``add_messages`` adds and drops to 0 on ``reset_counter`` (a broker restart).

It records the ground truth a metering system must reproduce: the number of messages added
between the first ``/metrics`` response it served and the latest one.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

METRIC = "mqtt_messages_received_total"


class Simulator:
    """The simulated instance; ``start`` returns its base URL."""

    def __init__(
        self,
        devices: int = 10,
        active: int = 7,
        *,
        page_size: int = 4,
        brokers: tuple[str, ...] = ("broker-0",),
        port: int = 0,
    ) -> None:
        if not 0 <= active <= devices:
            raise ValueError("active must be between 0 and devices")
        self.page_size = page_size
        self._devices = [
            {"id": f"device-{i:05d}", "status": "online" if i < active else "offline"}
            for i in range(devices)
        ]
        self._brokers = brokers
        self._lock = threading.Lock()
        self._added = dict.fromkeys(brokers, 0)
        self._at_reset = dict.fromkeys(brokers, 0)
        self._first_scrape_total: int | None = None
        self._last_scrape_total: int | None = None
        self.scrapes = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> str:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_messages(self, count: int, broker: str | None = None) -> None:
        """Count ``count`` more messages on ``broker`` (the first broker by default)."""
        if count < 0:
            raise ValueError("a counter never goes down")
        with self._lock:
            self._added[broker or self._brokers[0]] += count

    def reset_counter(self, broker: str | None = None) -> None:
        """Simulate a broker restart: its exported counter starts again from 0.

        Messages added after the latest scrape and before a reset vanish with the old value, for
        any scraper; the ground truth still counts them, so reset right after a scrape.
        """
        with self._lock:
            for name in [broker] if broker else self._brokers:
                self._at_reset[name] = self._added[name]

    def set_status(self, index: int, status: str) -> None:
        with self._lock:
            self._devices[index]["status"] = status

    def truth_since_first_scrape(self) -> int:
        """Messages added between the first and the latest /metrics response served."""
        with self._lock:
            if self._first_scrape_total is None or self._last_scrape_total is None:
                return 0
            return self._last_scrape_total - self._first_scrape_total

    @property
    def active_devices(self) -> int:
        with self._lock:
            return sum(1 for d in self._devices if d["status"] == "online")

    def _metrics_text(self) -> str:
        with self._lock:
            total = sum(self._added.values())
            if self._first_scrape_total is None:
                self._first_scrape_total = total
            self._last_scrape_total = total
            self.scrapes += 1
            lines = [
                f"# HELP {METRIC} MQTT messages received by the broker.",
                f"# TYPE {METRIC} counter",
            ]
            for name in self._brokers:
                value = self._added[name] - self._at_reset[name]
                lines.append(f'{METRIC}{{broker="{name}"}} {value}')
        return "\n".join(lines) + "\n"

    def _device_page(self, cursor: str | None) -> dict[str, Any]:
        start = int(cursor) if cursor else 0
        with self._lock:
            page = [dict(d) for d in self._devices[start : start + self.page_size]]
            more = start + self.page_size < len(self._devices)
        return {"devices": page, "next_cursor": str(start + self.page_size) if more else None}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        simulator = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parsed = urlparse(self.path)
                if parsed.path == "/metrics":
                    self._reply(200, simulator._metrics_text(), "text/plain; version=0.0.4")
                elif parsed.path == "/api/devices":
                    cursor = parse_qs(parsed.query).get("cursor", [None])[0]
                    try:
                        body = json.dumps(simulator._device_page(cursor))
                    except ValueError:
                        self._reply(400, '{"error": "bad cursor"}', "application/json")
                        return
                    self._reply(200, body, "application/json")
                else:
                    self._reply(404, "not found\n", "text/plain")

            def _reply(self, status: int, body: str, content_type: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep demo and test output clean

        return Handler
