"""`AzureWebJobsStorage`, in both of its forms, read and checked before any client is built from it.

The identity form (`AzureWebJobsStorage__tableServiceUri`, `__queueServiceUri`, `__accountName`, `__credential`,
`__clientId`) is read by `load_storage`, which names what is wrong without quoting it (a service URI's query may
hold a SAS `sig=`). The connection-string form is checked by `connection_string_problem`:

It is parsed by `azure.core.utils.parse_connection_string`, the parser azure-data-tables builds its clients with
(`Name=value` pairs separated by `;`, names in any case, no name twice, no value empty). The storage SDKs accept
some strings that cannot work and fail on the first request (an `AccountKey` that is not base64), or quietly
build an endpoint such as `https://ftp://host`; the checks here are those the parser lacks, so a malformed
setting is reported as such (`503 storageUnavailable` naming the setting; the command line exits 2) rather than
as storage being down. A problem never quotes the string: it may hold a key.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from azure.core.utils import parse_connection_string

SETTING = "AzureWebJobsStorage"
DEVELOPMENT = "UseDevelopmentStorage=true"
_ENDPOINTS = ("TableEndpoint", "QueueEndpoint", "BlobEndpoint", "FileEndpoint")


def parse(value: str) -> Mapping[str, str] | None:
    """The `Name=value` pairs of a connection string, by lowercase name; None when it is not one."""
    try:
        return parse_connection_string(value)  # names lowercased
    except ValueError:  # blank, a part without `=` or a value, or a name twice
        return None


def connection_string_problem(value: str) -> str | None:
    """Why `value` cannot be the app's storage connection string, or None when it can."""
    pairs = parse(value)
    if pairs is None:
        return f"{SETTING} is not a connection string (Name=value pairs separated by ';')"
    if pairs.get("usedevelopmentstorage", "").casefold() == "true":
        return None
    if "usedevelopmentstorage" in pairs:  # a typo such as `ture`: say what was meant (the value holds no secret)
        return f"{SETTING} sets UseDevelopmentStorage to something other than true: for Azurite write " + DEVELOPMENT
    for name in _ENDPOINTS:
        endpoint = pairs.get(name.lower())
        if endpoint is not None and (
            urlsplit(endpoint).scheme not in ("http", "https") or not urlsplit(endpoint).hostname
        ):
            return f"{SETTING} has a {name} that is not an http(s) URL"
    has_endpoints = all(name.lower() in pairs for name in ("TableEndpoint", "QueueEndpoint"))
    if "accountname" not in pairs and not has_endpoints:
        return f"{SETTING} names no AccountName (nor a TableEndpoint and a QueueEndpoint)"
    key = pairs.get("accountkey")
    if key is None and "sharedaccesssignature" not in pairs:
        return f"{SETTING} holds neither an AccountKey nor a SharedAccessSignature"
    if key is not None:
        try:
            base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            return f"{SETTING} has an AccountKey that is not base64"
    return None


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Where the app's table and queues live: a connection string, or service URIs and an identity."""

    connection_string: str | None = field(default=None, repr=False)
    table_service_uri: str | None = None
    queue_service_uri: str | None = None
    credential: str | None = None
    client_id: str | None = None


def _service_uri_problem(uri: str | None) -> str | None:
    """What is wrong with a storage service URI, said without quoting it (a query may hold a SAS `sig=`)."""
    if uri is None:
        return "is not set (with identity-based storage both service URIs are needed)"
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError:  # a bracketed host that is no IP address, and the like
        return "must be an https URL (the value cannot be read as a URL; it is not quoted here)"
    if parts.scheme != "https":
        return "must be an https URL (the value set does not start with https://; it is not quoted here)"
    if not host:
        return "must be an https URL (the value set names no host; it is not quoted here)"
    return None


def load_storage(get: Callable[[str], str | None], problems: list[str]) -> StorageSettings | None:
    """`AzureWebJobsStorage` in either form, read with `get` (an empty value is None); what is wrong goes to
    `problems`, named and never quoted."""
    connection_string = get("AzureWebJobsStorage")
    if connection_string is not None:
        problem = connection_string_problem(connection_string)
        if problem is not None:
            problems.append(problem)
            return None
        return StorageSettings(connection_string=connection_string)
    account = get("AzureWebJobsStorage__accountName")
    table_uri = get("AzureWebJobsStorage__tableServiceUri")
    queue_uri = get("AzureWebJobsStorage__queueServiceUri")
    if account is not None:
        table_uri = table_uri or f"https://{account}.table.core.windows.net"
        queue_uri = queue_uri or f"https://{account}.queue.core.windows.net"
    if table_uri is None and queue_uri is None:
        problems.append(
            "AzureWebJobsStorage is not set (a connection string, or AzureWebJobsStorage__tableServiceUri "
            "and AzureWebJobsStorage__queueServiceUri with an identity)"
        )
        return None
    for setting, uri in (("tableServiceUri", table_uri), ("queueServiceUri", queue_uri)):
        problem = _service_uri_problem(uri)
        if problem is not None:
            problems.append(f"AzureWebJobsStorage__{setting} {problem}")
            return None
    credential = get("AzureWebJobsStorage__credential")
    if credential is not None and credential.lower() != "managedidentity":
        problems.append("AzureWebJobsStorage__credential must be 'managedidentity' (the value set is another)")
        return None
    return StorageSettings(
        table_service_uri=table_uri.rstrip("/") if table_uri else None,
        queue_service_uri=queue_uri.rstrip("/") if queue_uri else None,
        credential=credential.lower() if credential else None,
        client_id=get("AzureWebJobsStorage__clientId"),
    )
