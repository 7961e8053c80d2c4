"""What a storage fault means, said so that an operator knows what to fix.

Each is a `StorageError` (the API's `503 storageUnavailable`):

- unreachable or failing (5xx, 408, 429, a lost connection): `StorageUnavailable`, "try again later";
- refused (401/403: the identity lacks its data role, or the account key is wrong): `StorageAccessDenied`,
  a configuration ERROR naming the role the app's identity needs on the account;
- a certificate that cannot be verified: `StorageTlsError`, naming `REQUESTS_CA_BUNDLE`;
- a connection string the SDK cannot use: `StorageMisconfigured`, naming `AzureWebJobsStorage`.

`redact_sas` keeps a shared access signature out of urllib3's DEBUG lines, which print each request's
URL with its query string (`sig=`, the SAS's secret, included).
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import requests
from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

from shared.errors import StorageAccessDenied, StorageError, StorageMisconfigured, StorageTlsError, StorageUnavailable
from shared.logsafe import get_logger

logger = get_logger(__name__)

ROLES = {"table": "Storage Table Data Contributor", "queue": "Storage Queue Data Contributor"}
_SAS_SECRET = re.compile(r"(?i)(\bsig=)[^&\s\"']+")
_LATER = "Storage is unavailable; try again later."


def classify(action: str, service: str, error: BaseException) -> StorageError:
    """The error to raise for a storage fault, after logging it once as an ERROR that says what to fix."""
    status = error.status_code if isinstance(error, HttpResponseError) else None
    if status in (401, 403):
        role = ROLES.get(service, ROLES["table"])
        code = getattr(error, "error_code", None)
        logger.error(
            "storage refused the app: configuration error action=%s service=%s status=%d code=%s hint=%s",
            action,
            service,
            status,
            code,
            f"give the app's identity the {role!r} role on the storage account (AzureWebJobsStorage), "
            "or fix the account key of the connection string",
        )
        return StorageAccessDenied(
            f"Storage refused the app ({status}): the identity needs the {role} role, or the key is wrong "
            "(AzureWebJobsStorage).",
            service=service,
            role=role,
        )
    if _tls_failure(error):
        logger.error(
            "storage certificate not verified: TLS error action=%s service=%s; if a proxy or a private CA "
            "signs it, point REQUESTS_CA_BUNDLE at that CA's PEM bundle",
            action,
            service,
        )
        return StorageTlsError("Storage's TLS certificate could not be verified (see REQUESTS_CA_BUNDLE).")
    if isinstance(error, ClientAuthenticationError) and status is None:
        logger.error(
            "storage unavailable action=%s error=%s: the app's identity could not get a token "
            "(AzureWebJobsStorage__credential, AzureWebJobsStorage__clientId)",
            action,
            type(error).__name__,
        )
    elif status is not None:
        logger.error("storage unavailable action=%s status=%d", action, status)
    else:
        logger.error("storage unavailable action=%s error=%s", action, type(error).__name__)
    return StorageUnavailable(_LATER)


def _tls_failure(error: BaseException) -> bool:
    """Whether a certificate check failed somewhere in `error`'s chain (azure-core wraps requests' SSLError)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError | requests.exceptions.SSLError):
            return True
        inner = current.inner_exception if isinstance(current, AzureError) else None
        current = inner or current.__cause__ or current.__context__
    return False


@contextmanager
def malformed_setting() -> Iterator[None]:
    """Building a client from the connection string: the SDK's `ValueError` becomes `StorageMisconfigured`."""
    try:
        yield
    except ValueError as error:
        logger.error("storage setting invalid: AzureWebJobsStorage cannot be parsed (%s)", type(error).__name__)
        raise StorageMisconfigured("Storage is not configured: AzureWebJobsStorage cannot be parsed.") from None


class _RedactSas(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: _redacted(arg) for key, arg in record.args.items()}
        if isinstance(record.msg, str) and "sig=" in record.msg.lower():
            record.msg = redact_sas_text(record.msg)
        return True


def _redacted(value: object) -> object:
    return redact_sas_text(value) if isinstance(value, str) else value


def redact_sas_text(text: str) -> str:
    """`text` with every SAS signature (`sig=...`) replaced by `sig=REDACTED` (URLs inside error messages)."""
    return _SAS_SECRET.sub(r"\1REDACTED", text)


_FILTER = _RedactSas()


def redact_sas() -> None:
    """Keep SAS signatures out of urllib3's request lines (idempotent; the filter sits on urllib3's loggers)."""
    for name in ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry"):
        target = logging.getLogger(name)
        if _FILTER not in target.filters:
            target.addFilter(_FILTER)
