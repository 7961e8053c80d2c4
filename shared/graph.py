"""Graph's keepAlive: one call's request, with the contract's retry rules (shared/retry.py says them all).

- `build_session`: the pooled `requests` session every Graph and token request goes through.
- `GraphClient.keep_alive`: one call's keepAlive, applying the outcome table, returning `KeepAliveResult`.

Outcome table (contract, "The keep-alive tick"):

| Graph answers                        | keep_alive does                                                  |
|--------------------------------------|------------------------------------------------------------------|
| 2xx                                  | success                                                          |
| 404                                  | ended: one request, no retry                                     |
| 429, 500, 502, 503, 504, timeout,    | up to 3 retries, waiting Retry-After (seconds or HTTP date,      |
| connection error                     | capped at 60 s) or exponential backoff with full jitter          |
| 401                                  | drop the token, take a fresh one, send once more (not a retry);  |
|                                      | still 401: failure and a credentials hint (WARNING)              |
| 403                                  | one request; failure and a permissions hint (WARNING)            |
| other 4xx (and anything else)        | one request; failure                                             |
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from shared import __version__, jsonsafe
from shared.errors import TokenError
from shared.loglimit import failure_level
from shared.logsafe import get_logger, safe
from shared.models import last_error_text
from shared.retry import header, retry_delay
from shared.settings import Settings

logger = get_logger(__name__)

USER_AGENT = f"callkeeper/{__version__} (Microsoft Graph call keep-alive) python-requests/{requests.__version__}"
MESSAGE_LIMIT = 1024
CODE_LIMIT = 128  # Graph's codes are short words; a longer one is cut so `lastError` stays short
TLS_FAILURE = "tls error (see REQUESTS_CA_BUNDLE)"  # lastError of a keepAlive whose certificate was not trusted
HOST_POOLS = 4  # distinct hosts kept pooled: Graph, the authority, and spare

FORBIDDEN_HINT = (
    "the call belongs to another app registration or tenant "
    "(keepAlive checks no permission of its own: Graph checks permissions when a call is created)"
)
UNAUTHORIZED_HINT = (
    "Graph refused a fresh app token: check GRAPH_CLIENT_ID and its credential, the call's tenant "
    "(or GRAPH_TENANT_ID) and that GRAPH_CLOUD / GRAPH_BASE_URL / GRAPH_AUTHORITY_HOST name the same cloud"
)


def build_session(pool_size: int) -> requests.Session:
    """A session whose connection pool holds `pool_size` connections per host (the concurrency).

    urllib3 retries nothing (`retry_delay` is the only retry policy) and the pool never blocks.
    `trust_env` stays on: `REQUESTS_CA_BUNDLE`, `HTTPS_PROXY` and `NO_PROXY` work as in any `requests` program.
    """
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=HOST_POOLS, pool_maxsize=max(1, pool_size), max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


@dataclass(frozen=True, slots=True)
class KeepAliveResult:
    """The outcome of one call's keepAlive, retries included. Never holds a token."""

    status: int | None  # the final HTTP status; None when no HTTP answer came (timeout, connection, token)
    # short, one line, at most 256 characters (`models.last_error_text`): "429 TooManyRequests", "timeout",
    # "connection error", "token: invalid_client"
    error: str | None = None
    code: str | None = None  # Graph's error code from the body
    message: str | None = None  # Graph's error message (or the token error), cut to 1,024 characters
    request_id: str | None = None  # Graph's request-id (header, else the body's innerError)
    client_request_id: str | None = None  # of the last request sent
    attempts: int = 0  # requests sent
    retries: int = 0  # retries after 429/5xx/timeouts/connection errors (the 401 re-send is not one)
    sent: bool = True  # False only for a request deliberately not sent (dry run); a token failure is a failure

    @classmethod
    def not_sent(cls) -> KeepAliveResult:
        """The result of a keepAlive that was deliberately not sent (dry run): neither success nor failure."""
        return cls(status=None, sent=False)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        return self.status == 404

    def graph_fields(self) -> dict[str, Any]:
        """The `graph` object of a `callEnded` event (contract: "The cleanup event")."""
        return {
            "status": self.status,
            "code": self.code,
            "message": self.message[:MESSAGE_LIMIT] if self.message is not None else None,
            "requestId": self.request_id,
            "clientRequestId": self.client_request_id,
        }


class TokenSource(Protocol):
    """What the client needs from `shared.tokens.TokenProvider`."""

    def token(self, tenant_id: str) -> str: ...

    def invalidate(self, tenant_id: str, token: str | None = None) -> None: ...


class RequestGate(Protocol):
    """Paces requests across workers (`shared.ratelimit.RateLimiter`): waits before each, brakes on 429."""

    def acquire(self, tenant_id: str) -> float: ...

    def pause(self, tenant_id: str, seconds: float) -> AbstractContextManager[None]: ...


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int | None
    headers: Mapping[str, str]
    code: str | None = None
    message: str | None = None
    request_id: str | None = None
    failure: str | None = None  # "timeout", "connection error", "request error: X" when no HTTP answer

    def error(self) -> str | None:
        """What `lastError` records: Graph's code is Graph's to choose, so it is escaped and bounded."""
        if self.failure is not None:
            return self.failure
        if self.status is None or 200 <= self.status < 300:
            return None
        return last_error_text(f"{self.status} {self.code}") if self.code else str(self.status)


class GraphClient:
    """Sends keepAlive requests. Thread-safe when its session, tokens, sleep, now and rng are."""

    def __init__(
        self,
        settings: Settings,
        session: requests.Session,
        tokens: TokenSource,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: Callable[[], float] = random.random,
        gate: RequestGate | None = None,
    ) -> None:
        self._settings = settings
        self._session = session
        self._tokens = tokens
        self._sleep = sleep
        self._now = now
        self._rng = rng
        self._gate = gate

    def url(self, call_id: str) -> str:
        """The keepAlive URL, with the callId percent-encoded as one path segment."""
        return self.keep_alive_url(self._settings.graph_base_url, call_id)

    @staticmethod
    def keep_alive_url(graph_base_url: str, call_id: str) -> str:
        """`POST` here keeps a call alive: the callId percent-encoded as one path segment (the dry run logs it)."""
        return f"{graph_base_url}/v1.0/communications/calls/{quote(call_id, safe='')}/keepAlive"

    def keep_alive(self, call_id: str, tenant_id: str) -> KeepAliveResult:
        url = self.url(call_id)
        attempts = retries = 0
        refreshed = False
        client_request_id: str | None = None
        try:
            token = self._tokens.token(tenant_id)
        except TokenError as exc:
            return self._token_failure(exc, call_id, tenant_id, None, attempts, retries, None)
        while True:
            client_request_id = str(uuid.uuid4())
            attempts += 1
            if self._gate is not None:
                self._gate.acquire(tenant_id)
            answer = self._send(url, token, client_request_id)
            if logger.isEnabledFor(logging.DEBUG):  # the arguments cost CPU on every request: only when shown
                logger.debug(
                    "graph keepalive callId=%s tenantId=%s status=%s error=%s attempt=%d clientRequestId=%s "
                    "requestId=%s",
                    safe(call_id),
                    tenant_id,
                    answer.status,
                    answer.error(),
                    attempts,
                    client_request_id,
                    safe(answer.request_id),
                )
            if answer.status is not None and 200 <= answer.status < 300:
                return self._result(answer, client_request_id, attempts, retries)
            if answer.status == 401 and not refreshed:
                refreshed = True
                self._tokens.invalidate(tenant_id, token)
                try:
                    token = self._tokens.token(tenant_id)
                except TokenError as exc:
                    return self._token_failure(exc, call_id, tenant_id, answer, attempts, retries, client_request_id)
                continue
            delay = retry_delay(answer.status, answer.headers, retries + 1, self._now(), self._rng)
            if delay is None:
                self._hint(answer, call_id, tenant_id)
                return self._result(answer, client_request_id, attempts, retries)
            retries += 1
            logger.debug(
                "graph keepalive retry callId=%s tenantId=%s after=%s wait=%.3f retry=%d",
                safe(call_id),
                tenant_id,
                answer.error(),
                delay,
                retries,
            )
            if answer.status == 429 and self._gate is not None:
                with self._gate.pause(tenant_id, delay):  # the whole tenant holds back while this call waits
                    self._sleep(delay)
            else:
                self._sleep(delay)

    # --- internals -----------------------------------------------------------------------------
    def _send(self, url: str, token: str, client_request_id: str) -> _Answer:
        headers = {
            "Authorization": f"Bearer {token}",
            "client-request-id": client_request_id,
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        try:
            with self._session.post(
                url, headers=headers, data=b"", timeout=self._settings.request_timeout, allow_redirects=False
            ) as response:
                body = response.content
                return self._read(response.status_code, response.headers, body)
        except requests.Timeout:
            return _Answer(None, {}, failure="timeout")
        except requests.exceptions.SSLError:  # retried like a connection error; the words say what to fix
            return _Answer(None, {}, failure=TLS_FAILURE)
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            return _Answer(None, {}, failure="connection error")
        except requests.RequestException as exc:
            return _Answer(None, {}, failure=f"request error: {type(exc).__name__}")

    @staticmethod
    def _read(status: int, headers: Mapping[str, str], body: bytes) -> _Answer:
        code = message = inner_request_id = None
        if body and status >= 400:
            try:
                payload: Any = jsonsafe.loads(body)
            except ValueError:
                payload = None
            error = payload.get("error") if isinstance(payload, dict) else None
            if isinstance(error, dict):
                raw_code = error.get("code")
                code = raw_code[:CODE_LIMIT] if isinstance(raw_code, str) else None
                text = error.get("message")
                message = text[:MESSAGE_LIMIT] if isinstance(text, str) else None
                inner = error.get("innerError") or error.get("innererror")
                if isinstance(inner, dict):
                    found = next((inner[k] for k in ("request-id", "requestId") if isinstance(inner.get(k), str)), None)
                    inner_request_id = found[:MESSAGE_LIMIT] if found else None
        request_id = (header(headers, "request-id") or "")[:MESSAGE_LIMIT] or inner_request_id
        return _Answer(status, headers, code=code, message=message, request_id=request_id)

    @staticmethod
    def _result(answer: _Answer, client_request_id: str, attempts: int, retries: int) -> KeepAliveResult:
        return KeepAliveResult(
            status=answer.status,
            error=answer.error(),
            code=answer.code,
            message=answer.message,
            request_id=answer.request_id,
            client_request_id=client_request_id,
            attempts=attempts,
            retries=retries,
        )

    @staticmethod
    def _token_failure(
        exc: TokenError,
        call_id: str,
        tenant_id: str,
        answer: _Answer | None,
        attempts: int,
        retries: int,
        client_request_id: str | None,
    ) -> KeepAliveResult:
        code = exc.code
        logger.debug(
            "graph keepalive without token callId=%s tenantId=%s error=%s", safe(call_id), tenant_id, safe(code)
        )
        return KeepAliveResult(
            status=answer.status if answer else None,
            error=last_error_text(f"token: {code}"),
            code=answer.code if answer else None,
            message=str(exc)[:MESSAGE_LIMIT],
            request_id=answer.request_id if answer else None,
            client_request_id=client_request_id,
            attempts=attempts,
            retries=retries,
        )

    def _hint(self, answer: _Answer, call_id: str, tenant_id: str) -> None:
        if answer.failure == TLS_FAILURE:
            logger.log(
                failure_level(),
                "graph keepalive tls error callId=%s tenantId=%s hint=%s",
                safe(call_id),
                tenant_id,
                self._settings.tls_hint(),
            )
        elif answer.status == 403:
            logger.log(
                failure_level(),
                "graph keepalive forbidden callId=%s tenantId=%s code=%s requestId=%s hint=%s",
                safe(call_id),
                tenant_id,
                safe(answer.code),
                safe(answer.request_id),
                FORBIDDEN_HINT,
            )
        elif answer.status == 401:
            logger.log(
                failure_level(),
                "graph keepalive unauthorized with a fresh token callId=%s tenantId=%s code=%s requestId=%s hint=%s",
                safe(call_id),
                tenant_id,
                safe(answer.code),
                safe(answer.request_id),
                UNAUTHORIZED_HINT,
            )
