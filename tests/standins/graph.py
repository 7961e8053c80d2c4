"""A Microsoft Graph stand-in for `POST /v1.0/communications/calls/{callId}/keepAlive`.

- The callId is one path segment, percent-decoded; the raw path is recorded too.
- Each call can be scripted with a queue of replies (status, headers, JSON body, delay, or `RESET`);
  an unscripted call answers `200` with an empty body. `latency` delays every answer.
- A 4xx/5xx without a scripted body gets Graph's error shape and a `request-id` header.
- `Authorization: Bearer <token>` must be a valid token of the identity stand-in for this Graph root
  (else `401 InvalidAuthenticationToken`), and of the call's tenant when one was scripted (else `403`).
- Every request is recorded (method, raw path, callId, headers, arrival, token tenant, answer);
  requests in flight and the most seen at once are counted.
- `tenant_limit` (off by default) throttles like Graph: at most that many keepAlives per tenant in any
  sliding one-second window; above it, `429 TooManyRequests` with `Retry-After` (whole seconds until the
  window has room). Only answered requests count toward the window. `tenant_stats()` sums it up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from .server import RESET, Reply, Request, Service
from .tokens import TokenRegistry

__all__ = ["ERROR_CODES", "RESET", "GraphRequest", "GraphStandin", "Reply", "graph_error_body"]

_KEEPALIVE = re.compile(r"^/v1\.0/communications/calls/([^/]+)/keepAlive$", re.IGNORECASE)

ERROR_CODES = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "Forbidden",
    404: "itemNotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


@dataclass(frozen=True)
class GraphRequest:
    method: str
    path: str  # raw, as sent (percent-encoded)
    call_id: str | None  # percent-decoded from the one path segment; None when the path did not match
    headers: dict[str, str]
    arrival: float  # time.monotonic()
    tenant: str | None  # the tenant of the bearer token, when the token was valid
    status: int | None  # the status answered; None for a reset

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), None)


def graph_error_body(status: int, request_id: str, client_request_id: str | None, message: str | None = None) -> Any:
    return {
        "error": {
            "code": ERROR_CODES.get(status, "UnknownError"),
            "message": message or _phrase(status),
            "innerError": {
                "request-id": request_id,
                "client-request-id": client_request_id or "",
                "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            },
        }
    }


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown error"


class GraphStandin(Service):
    """Graph's keepAlive endpoint, scriptable per call. Thread-safe."""

    def __init__(self, *, tokens: TokenRegistry) -> None:
        self.tokens = tokens
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.reset()

    # --- scripting -----------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget scripts, records and the in-flight maximum (between tests)."""
        with self._lock:
            self._scripts: dict[str, deque[Reply]] = {}
            self._tenants: dict[str, str] = {}
            self.latency = 0.0
            self.tenant_limit: float | None = None
            self._windows: dict[str, deque[float]] = {}
            self.requests: list[GraphRequest] = []
            self.max_in_flight = self.in_flight

    def script(self, call_id: str, *replies: Reply | int, tenant: str | None = None) -> None:
        """Queue replies for `call_id` (an int is a bare status); set the tenant the call belongs to."""
        with self._lock:
            queue = self._scripts.setdefault(call_id, deque())
            queue.extend(Reply(reply) if isinstance(reply, int) else reply for reply in replies)
            if tenant is not None:
                self._tenants[call_id] = tenant.lower()

    def requests_for(self, call_id: str) -> list[GraphRequest]:
        with self._lock:
            return [request for request in self.requests if request.call_id == call_id]

    def tenant_stats(self) -> dict[str, dict[str, float]]:
        """Per tenant: keepAlives answered 2xx, 429s, first and last 2xx arrival, and the most 2xx in any second."""
        with self._lock:
            requests = [r for r in self.requests if r.tenant is not None and r.call_id is not None]
        stats: dict[str, dict[str, float]] = {}
        for tenant in sorted({r.tenant for r in requests if r.tenant is not None}):
            ok = sorted(r.arrival for r in requests if r.tenant == tenant and r.status is not None and r.status < 300)
            throttled = sum(1 for r in requests if r.tenant == tenant and r.status == 429)
            peak, first = 0, 0
            for last, at in enumerate(ok):
                while at - ok[first] >= 1.0:
                    first += 1
                peak = max(peak, last - first + 1)
            stats[tenant] = {
                "ok": len(ok),
                "throttled": throttled,
                "first": ok[0] if ok else 0.0,
                "last": ok[-1] if ok else 0.0,
                "peakPerSecond": peak,
            }
        return stats

    def remaining(self, call_id: str) -> int:
        with self._lock:
            return len(self._scripts.get(call_id, ()))

    # --- serving -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def tracking(self, request: Request) -> Iterator[None]:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1

    def handle(self, request: Request) -> Reply:
        request_id = str(uuid.uuid4())
        client_request_id = request.header("client-request-id")
        match = _KEEPALIVE.match(request.path)
        call_id = unquote(match.group(1), errors="strict") if match else None
        tenant: str | None = None
        if call_id is None:
            reply = self._error(
                400, request_id, client_request_id, f"Resource not found for the segment '{request.path}'."
            )
        elif request.method != "POST":
            reply = self._error(405, request_id, client_request_id)
        else:
            reply, tenant = self._keep_alive(request, call_id, request_id, client_request_id)
        with self._lock:
            latency = self.latency
        if latency:
            reply = dataclasses.replace(reply, delay=reply.delay + latency)
        with self._lock:
            self.requests.append(
                GraphRequest(
                    method=request.method,
                    path=request.path,
                    call_id=call_id,
                    headers=dict(request.headers),
                    arrival=request.arrival,
                    tenant=tenant,
                    status=None if reply.reset else reply.status,
                )
            )
        return reply

    def _keep_alive(
        self, request: Request, call_id: str, request_id: str, client_request_id: str | None
    ) -> tuple[Reply, str | None]:
        authorization = request.header("Authorization") or ""
        scheme, _, token = authorization.partition(" ")
        issued = self.tokens.lookup(token.strip()) if scheme.lower() == "bearer" else None
        if issued is None or not issued.valid():
            message = "Access token is empty." if not token else "Access token validation failure. Invalid token."
            return self._error(401, request_id, client_request_id, message, www_authenticate=True), None
        root = f"https://{request.header('Host')}"
        if issued.audience.rstrip("/") != root:
            message = "Access token validation failure. Invalid audience."
            return self._error(401, request_id, client_request_id, message, www_authenticate=True), issued.tenant
        with self._lock:
            expected_tenant = self._tenants.get(call_id)
            queue = self._scripts.get(call_id)
            scripted = queue.popleft() if queue else None
        if expected_tenant is not None and issued.tenant != expected_tenant:
            message = "The call belongs to another tenant."
            return self._error(403, request_id, client_request_id, message), issued.tenant
        wait = self._throttle(issued.tenant)
        if wait is not None:
            reply = self._error(429, request_id, client_request_id, "Too many requests.")
            return dataclasses.replace(reply, headers={**reply.headers, "Retry-After": str(wait)}), issued.tenant
        reply = scripted or Reply(200)
        if reply.reset:
            return Reply(0, reset=True, delay=reply.delay), issued.tenant
        headers = {"request-id": request_id, "client-request-id": client_request_id or "", **reply.headers}
        body = reply.body
        if body is None and reply.status >= 400:
            body = graph_error_body(reply.status, request_id, client_request_id)
        return Reply(reply.status, headers, body, reply.delay), issued.tenant

    def _throttle(self, tenant: str) -> int | None:
        """None when the tenant's window has room (the request is counted); else the Retry-After, in seconds."""
        with self._lock:
            if self.tenant_limit is None:
                return None
            now = time.monotonic()
            window = self._windows.setdefault(tenant, deque())
            while window and now - window[0] >= 1.0:
                window.popleft()
            if len(window) >= self.tenant_limit:
                return max(1, math.ceil(window[0] + 1.0 - now))
            window.append(now)
            return None

    @staticmethod
    def _error(
        status: int,
        request_id: str,
        client_request_id: str | None,
        message: str | None = None,
        *,
        www_authenticate: bool = False,
    ) -> Reply:
        headers = {"request-id": request_id, "client-request-id": client_request_id or ""}
        if www_authenticate:
            headers["WWW-Authenticate"] = 'Bearer realm="", error="invalid_token"'
        return Reply(status, headers, graph_error_body(status, request_id, client_request_id, message))
