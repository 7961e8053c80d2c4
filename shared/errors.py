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
│       ├── StorageMisconfigured   AzureWebJobsStorage itself is malformed (names the setting)
│       ├── StorageAccessDenied    401/403 from storage: the identity lacks a role, or a wrong key
│       └── StorageTlsError        the storage endpoint's certificate could not be verified
├── UnreadableRow(reason)     a table row this app did not write (or damaged): skipped, left in place
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


class StorageMisconfigured(StorageUnavailable):
    """`AzureWebJobsStorage` cannot be used as it is (a connection string that cannot be parsed)."""

    setting = "AzureWebJobsStorage"


class StorageAccessDenied(StorageUnavailable):
    """Storage refused the app's identity or key (401/403): a configuration problem, not an outage."""

    def __init__(self, message: str, *, service: str, role: str) -> None:
        super().__init__(message)
        self.service = service
        self.role = role


class StorageTlsError(StorageUnavailable):
    """The storage endpoint's TLS certificate could not be verified (see REQUESTS_CA_BUNDLE)."""

    setting = "REQUESTS_CA_BUNDLE"


class UnreadableRow(KeepAliveError):
    """A row of the calls table that this app cannot read as a call; `reason` says why (never its values)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
