"""A deadline for request headers: a client trickling them is cut off, not waited for.

The body deadline (``limits.BodyDeadline``) runs inside the application, which only sees a
request once its headers are complete; headers are the server's to time. Uvicorn has no such
limit, so its HTTP/1.1 protocol gets one: a connection that has not completed its first
request's headers within the deadline is closed.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class HeaderDeadlineProtocol(H11Protocol):
    """Uvicorn's h11 protocol, closing a connection whose headers are late."""

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer = self.loop.call_later(self._header_timeout, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None:
            self._stop_timer()

    def _stop_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.cycle is None and not self.transport.is_closing():
            self.logger.info("closing a connection whose request headers did not arrive in time")
            self.transport.close()


def http_protocol(header_timeout: float) -> Any:
    """The ``http`` argument for ``uvicorn.Config``."""
    return functools.partial(HeaderDeadlineProtocol, header_timeout=header_timeout)
