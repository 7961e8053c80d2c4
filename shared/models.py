"""Call records and their one mapping each way: validation, table entity and JSON.

Table layout (see docs/architecture.md): the RowKey is the SHA-256 of the callId in hex and the
PartitionKey the first hex digits of that hash, so a lookup by callId is one point read, calls
spread evenly over `PARTITIONS` partitions, and no character of a callId ever reaches a key (real
Table Storage mishandles `%` and others in keys). The callId itself is kept in the `CallId` property.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from shared import jsonsafe
from shared.errors import InvalidCallId, InvalidMetadata, InvalidTenantId, UnreadableRow
from shared.logsafe import CUT, escape
from shared.settings import GUID_RE

MAX_CALL_ID_LENGTH = 256
MAX_METADATA_BYTES = 4096
MAX_LAST_ERROR = 256  # characters of `lastError` (contract)
INT32_MAX = 2**31 - 1  # Table Storage's Edm.Int32: where `consecutiveFailures` stops
# Table Storage's Edm.DateTime holds 1601-01-01 to 9999-12-31 (UTC); the app writes no other date and reads none.
EARLIEST = datetime(1601, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
PARTITIONS = 64
_FORBIDDEN_CALL_ID_CHARS = frozenset("/\\#?")
_DOT_SEGMENTS = frozenset({".", ".."})


def utc_now() -> datetime:
    """Now, in UTC, to the millisecond (what the API shows)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def format_time(value: datetime | None) -> str | None:
    """ISO 8601 UTC ending in Z, to the millisecond, always with a four-digit year (`strftime`'s `%Y` drops the
    zeros of a year below 1000 on Linux)."""
    if value is None:
        return None
    v = value.astimezone(UTC)
    milliseconds = v.microsecond // 1000
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{milliseconds:03d}Z"


def last_error_text(error: str) -> str:
    """`error` as `lastError` holds it: on one line (each unprintable character escaped, as in the logs) and at
    most `MAX_LAST_ERROR` characters (a cut one ends in `...`). Graph's and the identity provider's codes reach
    it, and they may be anything."""
    text = escape(error, MAX_LAST_ERROR)
    return text if len(text) <= MAX_LAST_ERROR else text[: MAX_LAST_ERROR - len(CUT)] + CUT


def call_id_problem(value: object) -> str | None:
    """Why `value` can never be a callId, or None when it is a valid one."""
    if not isinstance(value, str):
        return "callId must be a string"
    if not 1 <= len(value) <= MAX_CALL_ID_LENGTH:
        return f"callId must be 1 to {MAX_CALL_ID_LENGTH} characters long"
    if value in _DOT_SEGMENTS:
        return "callId must not be '.' or '..' (HTTP clients drop those path segments)"
    for ch in value:
        code = ord(ch)
        if ch in _FORBIDDEN_CALL_ID_CHARS:
            return "callId must not contain '/', '\\', '#' or '?'"
        if code < 0x20 or 0x7F <= code <= 0x9F:
            return "callId must not contain control characters"
        if ch.isspace():
            return "callId must not contain whitespace"
        if 0xD800 <= code <= 0xDFFF:
            return "callId must be valid Unicode (it holds a lone surrogate)"
        if unicodedata.category(ch) == "Cf":
            return "callId must not contain format characters (bidi controls, zero-width characters, BOM)"
    return None


def validate_call_id(value: object) -> str:
    problem = call_id_problem(value)
    if problem is not None:
        raise InvalidCallId(problem)
    assert isinstance(value, str)
    return value


def validate_tenant_id(value: object) -> str | None:
    """A GUID, lowercased; None (absent or JSON null) means 'not given'."""
    if value is None:
        return None
    if not isinstance(value, str) or not GUID_RE.match(value):
        raise InvalidTenantId("tenantId must be a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47")
    return value.lower()


def validate_metadata(value: object) -> dict[str, str]:
    """An object of string values, at most 4,096 bytes as compact UTF-8 JSON; None means {}."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidMetadata("metadata must be an object whose values are strings")
    try:
        size = len(_compact_json(value).encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidMetadata("metadata must be valid Unicode") from None
    if size > MAX_METADATA_BYTES:
        raise InvalidMetadata(f"metadata must be at most {MAX_METADATA_BYTES} bytes as compact JSON (got {size})")
    return dict(value)


def _compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def call_keys(call_id: str) -> tuple[str, str]:
    """(PartitionKey, RowKey) of a callId: both derived from its SHA-256, so always safe as keys."""
    digest = hashlib.sha256(call_id.encode("utf-8")).hexdigest()
    return partition_of(digest), digest


def partition_of(row_key: str) -> str:
    return f"{int(row_key[:2], 16) % PARTITIONS:02d}"


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One registered call, as stored and as shown by the API."""

    call_id: str
    tenant_id: str | None
    registered_at: datetime
    registration_id: str
    last_keepalive_at: datetime | None = None
    last_status: int | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    metadata: Mapping[str, str] = field(default_factory=dict)
    etag: str | None = field(default=None, compare=False)

    @property
    def keys(self) -> tuple[str, str]:
        return call_keys(self.call_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "callId": self.call_id,
            "tenantId": self.tenant_id,
            "registeredAt": format_time(self.registered_at),
            "lastKeepAliveAt": format_time(self.last_keepalive_at),
            "lastStatus": self.last_status,
            "lastError": self.last_error,
            "consecutiveFailures": self.consecutive_failures,
            "metadata": dict(self.metadata),
        }

    def to_entity(self) -> dict[str, Any]:
        """The table entity. Null fields are left out (Table Storage stores no nulls)."""
        partition_key, row_key = self.keys
        entity: dict[str, Any] = {
            "PartitionKey": partition_key,
            "RowKey": row_key,
            "CallId": self.call_id,
            "RegisteredAt": self.registered_at,
            "RegistrationId": self.registration_id,
            "ConsecutiveFailures": self.consecutive_failures,
            "Metadata": _compact_json(dict(self.metadata)),
        }
        optional = {
            "TenantId": self.tenant_id,
            "LastKeepAliveAt": self.last_keepalive_at,
            "LastStatus": self.last_status,
            "LastError": self.last_error,
        }
        entity.update({name: value for name, value in optional.items() if value is not None})
        return entity

    @classmethod
    def from_entity(cls, entity: Mapping[str, Any]) -> CallRecord:
        """The record of a row this app wrote. Raises `UnreadableRow` for anything else: a row of another
        program, or one damaged by hand (a property missing or of the wrong kind, keys that are not the
        callId's, a callId, tenantId or metadata that registration would refuse, a RegistrationId that is not
        a GUID, a date that is not a date of 1601-9999). A `LastError` longer than 256 characters (written
        before that limit) is read cut."""
        call_id = entity.get("CallId")
        if call_id_problem(call_id) is not None:
            raise UnreadableRow("CallId is missing or not a valid callId")
        assert isinstance(call_id, str)
        if (entity.get("PartitionKey"), entity.get("RowKey")) != call_keys(call_id):
            raise UnreadableRow("PartitionKey and RowKey are not those of its CallId")
        registration_id = entity.get("RegistrationId")
        if not isinstance(registration_id, str) or not GUID_RE.match(registration_id):
            raise UnreadableRow("RegistrationId is missing or not a GUID")
        tenant_id = entity.get("TenantId")
        if tenant_id is not None and (not isinstance(tenant_id, str) or not GUID_RE.match(tenant_id)):
            raise UnreadableRow("TenantId is not a GUID")
        last_error = entity.get("LastError")
        if last_error is not None and not isinstance(last_error, str):
            raise UnreadableRow("LastError is not a string")
        metadata = _stored_metadata(entity.get("Metadata"))
        entity_metadata = getattr(entity, "metadata", None) or {}
        return cls(
            call_id=call_id,
            tenant_id=tenant_id.lower() if tenant_id else None,
            registered_at=_stored_time(entity.get("RegisteredAt"), "RegisteredAt", required=True),
            registration_id=registration_id,
            last_keepalive_at=_stored_time(entity.get("LastKeepAliveAt"), "LastKeepAliveAt"),
            last_status=_stored_int(entity.get("LastStatus"), "LastStatus", low=100, high=999),
            last_error=last_error if last_error is None or len(last_error) <= MAX_LAST_ERROR else _cut(last_error),
            consecutive_failures=_stored_int(entity.get("ConsecutiveFailures", 0), "ConsecutiveFailures", low=0) or 0,
            metadata=metadata,
            etag=entity_metadata.get("etag") if isinstance(entity_metadata, Mapping) else None,
        )

    def with_result(self, *, now: datetime, status: int | None, error: str | None, ok: bool) -> CallRecord:
        """The record after one keepAlive attempt: `lastError` bounded (`last_error_text`), `consecutiveFailures`
        stopping at Int32's most (2,147,483,647), so every outcome is one that storage takes."""
        if ok:
            return replace(self, last_keepalive_at=now, last_status=status, last_error=None, consecutive_failures=0)
        return replace(
            self,
            last_status=status,
            last_error=None if error is None else last_error_text(error),
            consecutive_failures=min(self.consecutive_failures + 1, INT32_MAX),
        )


def _cut(text: str) -> str:
    return text[: MAX_LAST_ERROR - len(CUT)] + CUT


def _stored_time(value: Any, name: str, *, required: bool = False) -> Any:
    if value is None and not required:
        return None
    if not isinstance(value, datetime | str):
        raise UnreadableRow(f"{name} is not a date")
    try:
        stored = _as_utc(value)
    except (ValueError, TypeError, OverflowError):
        raise UnreadableRow(f"{name} is not a date") from None
    if not EARLIEST <= stored <= LATEST:
        raise UnreadableRow(f"{name} is not a date from 1601 to 9999")
    return stored


def _stored_int(value: Any, name: str, *, low: int, high: int = 2**31 - 1) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UnreadableRow(f"{name} is not an integer from {low} to {high}")
    return value


def _stored_metadata(value: Any) -> dict[str, str]:
    """The stored metadata, readable only when registration would accept it (`validate_metadata`): an object of
    strings, at most 4,096 bytes as compact UTF-8 JSON, with no lone surrogate once decoded."""
    if value is None or value == "{}":
        return {}
    try:
        metadata = jsonsafe.loads(value) if isinstance(value, str) else None
    except ValueError:
        metadata = None
    if not isinstance(metadata, dict):
        raise UnreadableRow("Metadata is not a JSON object of strings")
    try:
        return validate_metadata(metadata)
    except InvalidMetadata as refused:
        raise UnreadableRow(f"Metadata is not what registration accepts: {refused.message}") from None


def _as_utc(value: Any) -> Any:
    """A stored time as a plain timezone-aware UTC datetime (the SDK hands back its own subclass)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond, tzinfo=UTC
    )
