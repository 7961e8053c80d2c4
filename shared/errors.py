"""Every exception the app raises on purpose, in one tree.

CallkeeperError
├── ApiError(message)              answered as {"error": {"code", "message"}} with `status` (and `retry_after`)
│   ├── InvalidRequest             400 invalidRequest
│   ├── InvalidCallId              400 invalidCallId
│   ├── InvalidTenantId            400 invalidTenantId
│   ├── InvalidMetadata            400 invalidMetadata
│   ├── InvalidToken               401 invalidToken
│   ├── CallNotFound               404 callNotFound
│   ├── Conflict                   409 conflict
│   ├── PayloadTooLarge            413 payloadTooLarge
│   └── StorageError               503 storageUnavailable, Retry-After: 10: storage cannot serve the app
│       ├── StorageUnavailable     an outage: unreachable, 5xx, 408, 429, a lost connection (try again later)
│       ├── StorageMisconfigured   a storage setting cannot be used as it is (names the setting)
│       ├── StorageAccessDenied    401/403 from storage: the identity lacks `role`, or a wrong key
│       └── StorageTlsError        the storage endpoint's certificate could not be verified
├── SettingsError(problems)        a missing or invalid setting, each problem naming it
│   └── SettingsFileError(path)    local.settings.json itself cannot be read (not JSON, no "Values" object)
├── TokenError(tenant_id, code)    MSAL or the identity provider refused or failed (`code`: invalid_client, ...)
├── UnreadableRow(reason)          a table row this app did not write (or damaged): skipped, left in place
├── UnstorableEntity(reason)       an entity Table Storage would refuse (a value out of range, too large): not sent
├── TransactionFailed(status)      Table Storage refused an entity group transaction; nothing of it was written
├── EntityRefused(status)          Table Storage refused one write (a 4xx other than 404/409/412): it costs that call
├── RowModified(status)            a conditional write met a row changed since it was read (412): read it again
├── KeysUnavailable                the notification signing keys could not be fetched or read
├── InvalidWorkMessage             a fan-out work message that is not ours: logged and dropped
├── RangeIncomplete                a work range's sweep did not finish: the queue delivers it again
├── InvalidCallEvent               a call-events message that is not a callEnded event: moved to poison
├── TopicUnavailable(status, code) the topic answered 401/403/408/429/5xx, or no answer: the queue delivers it again
├── TopicRefused(status, code)     the topic refused the event (any other answer): moved to poison
├── InvalidAuthenticationString    APPLICATIONINSIGHTS_AUTHENTICATION_STRING is not `Authorization=AAD[;ClientId=]`
└── UsageError(usage, prog)        bad command-line usage (so `--json` can answer it)

KeyboardInterrupt
└── TickInterrupted(summary)       Ctrl-C during a sweep: the calls in flight finished; `summary` counts what was done
"""

from __future__ import annotations

from collections.abc import Sequence


class CallkeeperError(Exception):
    """Base of every error the app raises on purpose (the command line's `UsageError` too)."""


class ApiError(CallkeeperError):
    code = "internalError"
    status = 500
    retry_after: int | None = None  # seconds, answered as a Retry-After header

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


class StorageError(ApiError):
    """Storage cannot serve the app: the API answers `503 storageUnavailable` whatever the cause (each subclass)."""

    code, status = "storageUnavailable", 503
    retry_after = 10


class StorageUnavailable(StorageError):
    """An outage: storage is unreachable or failing (5xx, 408, 429, a lost connection); try again later."""


class StorageMisconfigured(StorageError):
    """A storage setting cannot be used as it is (`AzureWebJobsStorage` that cannot be parsed, an unusable
    CALL_EVENTS_QUEUE_NAME): a configuration problem, not an outage."""

    setting = "AzureWebJobsStorage"


class StorageAccessDenied(StorageError):
    """Storage refused the app's identity or key (401/403): a configuration problem, not an outage."""

    def __init__(self, message: str, *, service: str, role: str) -> None:
        super().__init__(message)
        self.service = service
        self.role = role


class StorageTlsError(StorageError):
    """The storage endpoint's TLS certificate could not be verified (see REQUESTS_CA_BUNDLE)."""

    setting = "REQUESTS_CA_BUNDLE"


class UnreadableRow(CallkeeperError):
    """A row of the calls table that this app cannot read as a call; `reason` says why (never its values)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnstorableEntity(CallkeeperError):
    """An entity that Table Storage would refuse (an Int32 out of range, a string or entity too large, a date
    outside 1601-9999, ...): checked before it is sent, so it costs only itself; `reason` names the property."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SettingsError(CallkeeperError):
    """One or more settings are missing or invalid; each problem names its setting."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid settings: " + "; ".join(self.problems))


class SettingsFileError(SettingsError):
    """The command line's `local.settings.json` cannot be read as settings at all; `path` is the file."""

    def __init__(self, problem: str, *, path: str) -> None:
        super().__init__([problem])
        self.path = path


class TokenError(CallkeeperError):
    """No app token could be had for a tenant; `code` is short and machine-readable (e.g. `invalid_client`).

    The message never holds a secret or a token.
    """

    def __init__(self, message: str, *, tenant_id: str | None, code: str = "unavailable") -> None:
        super().__init__(message)
        self.tenant_id = tenant_id
        self.code = code


class TransactionFailed(CallkeeperError):
    """The service refused the changeset as a whole; nothing of it was written."""

    def __init__(self, status: int, *, index: int | None = None, code: str | None = None) -> None:
        super().__init__(f"entity group transaction refused status={status} index={index} code={code}")
        self.status = status
        self.index = index
        self.code = code

    @property
    def conflict(self) -> bool:
        """An entity was changed (412) or deleted (404) since it was read."""
        return self.status in (404, 412)


class EntityRefused(CallkeeperError):
    """Table Storage refused a write with a 4xx other than 404, 409 and 412: this entity (or this request) only."""

    def __init__(self, status: int) -> None:
        super().__init__(f"storage refused the entity status={status}")
        self.status = status


class RowModified(CallkeeperError):
    """A conditional write (If-Match) met a row that changed since it was read (412): it is read again."""

    def __init__(self, status: int = 412) -> None:
        super().__init__(f"the row changed since it was read status={status}")
        self.status = status


class KeysUnavailable(CallkeeperError):
    """The OpenID configuration or its key set could not be fetched or read."""


class InvalidWorkMessage(CallkeeperError):
    """A work message that is not one the timer wrote; the text names the problem."""


class RangeIncomplete(CallkeeperError):
    """A work range whose sweep could not finish: raised so that the host delivers the message again."""


class InvalidCallEvent(CallkeeperError):
    """A message of CALL_EVENTS_QUEUE_NAME that is not a `callEnded` event the app wrote; the text says why."""


class _TopicError(CallkeeperError):
    def __init__(self, message: str, *, status: int | None, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class TopicUnavailable(_TopicError):
    """The Event Grid topic could not take the event now (401, 403, 408, 429, 5xx, a timeout, no connection, no
    token): raised out of the queue function so that the host delivers the message again."""


class TopicRefused(_TopicError):
    """The Event Grid topic answered with any other error status: sending the same event again cannot help."""


class InvalidAuthenticationString(CallkeeperError):
    """`APPLICATIONINSIGHTS_AUTHENTICATION_STRING` is not `Authorization=AAD[;ClientId=<guid>]`."""


class UsageError(CallkeeperError):
    """Bad command-line usage: argparse's message, the usage line and the (sub)command's name."""

    def __init__(self, message: str, *, usage: str, prog: str) -> None:
        super().__init__(message)
        self.usage = usage
        self.prog = prog


class TickInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep after the keepAlives in flight finished; `summary` counts the calls handled."""

    def __init__(self, summary: object) -> None:
        super().__init__("keepalive tick interrupted")
        self.summary = summary
