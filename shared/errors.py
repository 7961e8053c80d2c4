"""The app's exceptions.

KeepAliveError
├── ApiError(code, status, message)        answered to the caller as {"error": {"code", "message"}}
│   ├── InvalidRequest        400 invalidRequest
│   ├── InvalidCallId         400 invalidCallId
│   ├── InvalidTenantId       400 invalidTenantId
│   ├── InvalidMetadata       400 invalidMetadata
│   ├── InvalidToken          401 invalidToken
│   ├── CallNotFound          404 callNotFound
│   ├── Conflict              409 conflict
│   ├── PayloadTooLarge       413 payloadTooLarge
│   └── StorageUnavailable    503 storageUnavailable (+ Retry-After)
├── SettingsError(problems)   a missing or invalid setting, named
├── TokenError(tenant_id)     MSAL or the identity provider refused or failed
└── GraphError(status, code, request_id)

KeyboardInterrupt
└── TickInterrupted(summary)  Ctrl-C during a sweep: the calls in flight finished; `summary` counts what was done
"""

from __future__ import annotations

from collections.abc import Sequence


class KeepAliveError(Exception):
    """Base of every error the app raises on purpose."""


class ApiError(KeepAliveError):
    code = "internalError"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(ApiError):
    code, status = "invalidRequest", 400


class InvalidCallId(ApiError):
    code, status = "invalidCallId", 400


class InvalidTenantId(ApiError):
    code, status = "invalidTenantId", 400


class InvalidMetadata(ApiError):
    code, status = "invalidMetadata", 400


class InvalidToken(ApiError):
    code, status = "invalidToken", 401


class CallNotFound(ApiError):
    code, status = "callNotFound", 404


class Conflict(ApiError):
    code, status = "conflict", 409


class PayloadTooLarge(ApiError):
    code, status = "payloadTooLarge", 413


class StorageUnavailable(ApiError):
    code, status = "storageUnavailable", 503
    retry_after_seconds = 10


class SettingsError(KeepAliveError):
    """One or more settings are missing or invalid; each problem names its setting."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid settings: " + "; ".join(self.problems))


class TokenError(KeepAliveError):
    """No app token could be had for a tenant. The message never holds a secret or a token."""

    def __init__(self, message: str, *, tenant_id: str | None) -> None:
        super().__init__(message)
        self.tenant_id = tenant_id


class GraphError(KeepAliveError):
    """Graph answered with an error, or did not answer."""

    def __init__(self, message: str, *, status: int | None, code: str | None = None, request_id: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.request_id = request_id


class TickInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep after the keepAlives in flight finished; `summary` counts the calls handled."""

    def __init__(self, summary: object) -> None:
        super().__init__("keepalive tick interrupted")
        self.summary = summary
