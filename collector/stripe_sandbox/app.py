"""The sandbox as a plain ASGI app: faults, auth and idempotency around Stripe's routes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx

from collector.stripe_sandbox import (
    errors,
    forms,
    in_flight,
    keys,
    periods,
    routes_catalog,
    routes_control,
    routes_invoices,
    routes_legacy,
    routes_meters,
    routes_subscriptions,
    routes_v2,
)
from collector.stripe_sandbox.clock import SandboxClock
from collector.stripe_sandbox.errors import StripeAPIError
from collector.stripe_sandbox.faults import CallRecord, FaultInjector
from collector.stripe_sandbox.http import Request, Response, Router
from collector.stripe_sandbox.state import EVENT_API_VERSION, Store, StoredResponse
from collector.stripe_sandbox.webhooks import WebhookDispatcher
from common.clock import Clock, SystemClock

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
DROP_EXTENSION = "sandbox.drop"
METER_EVENTS_PATH = "/v1/billing/meter_events"
STREAM_PATH = "/v2/billing/meter_event_stream"


class SandboxApp:
    """A stateful Stripe-compatible ASGI application.

    ``clock`` drives Stripe's notion of time (timestamps, periods, session expiry);
    ``ticker`` is real monotonic time for rate limits and the call log. ``api_key`` is the one
    secret key the API answers (see ``keys``); the ``/_sandbox`` control API takes none.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        seed: int | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        ticker: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
        api_key: str = keys.DEFAULT_API_KEY,
    ) -> None:
        self.api_key = api_key
        self.clock = SandboxClock(clock or SystemClock())
        self.webhooks = WebhookDispatcher(webhook_url, webhook_secret, wall, webhook_transport)
        self.store = Store(self.clock, self.webhooks, seed)
        self.faults = FaultInjector(seed, ticker)
        self.api = Router()
        for module in (
            routes_catalog,
            routes_meters,
            routes_v2,
            routes_subscriptions,
            routes_legacy,
            routes_invoices,
        ):
            self.api.include(module.router)
        self._in_flight: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        req = Request(
            scope["method"], scope["path"], headers, body, scope.get("query_string", b"").decode()
        )
        if req.path.startswith("/_sandbox/"):
            await _send(send, await self._control(req))
            return
        answer = await self._api(req, scope)
        if answer is not None:
            await _send(send, answer)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.webhooks.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _control(self, req: Request) -> Response:
        try:
            req.params = json.loads(req.body) if req.body else {}
            if req.query:
                req.params.update(forms.decode(req.query))
            resolved = routes_control.router.resolve(req.method, req.path)
            if resolved is None:
                raise errors.unknown_route(req.method, req.path)
            handler, req.path_params = resolved
            result = await handler(self, req)  # type: ignore[arg-type]
            return Response(200, result)
        except StripeAPIError as exc:
            return Response(exc.status, exc.body(), exc.headers())
        except ValueError as exc:
            return Response(400, {"error": {"type": "invalid_request_error", "message": str(exc)}})

    async def _api(self, req: Request, scope: Scope) -> Response | None:
        """Answer one API call; None means the connection was dropped on purpose."""
        key = req.headers.get("idempotency-key")
        faulty = self.faults.config.applies_to(req.path)
        call = None
        if faulty:
            carried = in_flight.carried_identifiers(req.headers, req.body)
            call = self.faults.record(req.method, req.path, self.store.now(), key, carried)
        try:
            return await self._answer(req, scope, key, call)
        finally:
            if call is not None:
                self.faults.finish(call)

    async def _answer(
        self, req: Request, scope: Scope, key: str | None, call: CallRecord | None
    ) -> Response | None:
        faulty = call is not None
        fault = self.faults.before() if faulty else None
        if fault == "drop":
            assert call is not None
            call.fault = "drop"
            await _drop(scope)
            return None
        if fault is not None:
            error = errors.server_error() if fault == "500" else errors.rate_limited()
            response = self._error(req, error)
        else:
            response = await self._process(req, key)
        after = self.faults.after() if faulty and fault is None else None
        if after == "drop":
            assert call is not None
            call.fault = "drop_after"
            await _drop(scope)
            return None
        if after == "500":
            response = self._error(req, errors.server_error())
            fault = "500_after"
        if call is not None:
            call.status = response.status
            call.fault = fault
        return response

    async def _process(self, req: Request, key: str | None) -> Response:
        lock: tuple[str, str] | None = None
        owns_key = False
        try:
            if req.path != STREAM_PATH:  # the stream authenticates with its session token
                keys.check(req.bearer, self.api_key)
            req.decode_params()
            idempotent = key is not None and req.method in {"POST", "DELETE"}
            if idempotent:
                assert key is not None
                stored = self.store.idempotency.get(key)
                if stored is not None:
                    if stored.fingerprint != (req.method, req.path, req.body):
                        raise errors.idempotency_mismatch(key)
                    return self._ok(req, stored.body, replayed=True)
                if key in self._in_flight:
                    raise errors.idempotency_in_flight(key)
                self._in_flight.add(key)
                owns_key = True
            if req.method == "POST" and req.path == METER_EVENTS_PATH:
                lock = _lock_key(req)
                if not self.faults.acquire(lock):
                    lock = None
                    raise errors.lock_timeout()
            if self.faults.config.latency_seconds > 0:
                await asyncio.sleep(self.faults.config.latency_seconds)
            periods.sync(self.store)
            resolved = self.api.resolve(req.method, req.path)
            if resolved is None:
                raise errors.unknown_route(req.method, req.path)
            handler, req.path_params = resolved
            result = handler(self.store, req)
            if idempotent:
                assert key is not None
                fingerprint = (req.method, req.path, req.body)
                self.store.idempotency[key] = StoredResponse(fingerprint, 200, result)
            return self._ok(req, result)
        except StripeAPIError as exc:
            return self._error(req, exc)
        except forms.FormError as exc:
            return self._error(req, errors.invalid(f"Invalid parameter name: {exc}"))
        finally:
            if lock is not None:
                self.faults.release(lock)
            if owns_key and key is not None:
                self._in_flight.discard(key)

    def _headers(self, req: Request) -> dict[str, str]:
        headers = {
            "Request-Id": self.store.new_id("req", 14),
            "Stripe-Version": req.stripe_version or EVENT_API_VERSION,
        }
        if req.headers.get("idempotency-key"):
            headers["Idempotency-Key"] = req.headers["idempotency-key"]
        return headers

    def _ok(self, req: Request, body: Any, replayed: bool = False) -> Response:
        headers = self._headers(req)
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(200, body, headers)

    def _error(self, req: Request, error: StripeAPIError) -> Response:
        return Response(error.status, error.body(), {**self._headers(req), **error.headers()})


def _lock_key(req: Request) -> tuple[str, str]:
    payload = req.params.get("payload")
    customer = payload.get("stripe_customer_id", "") if isinstance(payload, dict) else ""
    return (str(customer), str(req.params.get("event_name", "")))


async def _drop(scope: Scope) -> None:
    drop = scope.get("extensions", {}).get(DROP_EXTENSION)
    if drop is None:
        raise ConnectionAbortedError("sandbox dropped the connection")
    drop()
    # let the server notice the lost connection before the app returns
    for _ in range(3):
        await asyncio.sleep(0)


async def _send(send: Send, response: Response) -> None:
    body = response.encoded()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in response.headers.items()),
    ]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
