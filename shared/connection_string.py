"""Checking an `AzureWebJobsStorage` connection string before any client is built from it.

The storage SDKs refuse some malformed strings only when a client is built (`ValueError`), accept
others and fail on the first request (an `AccountKey` that is not base64), or quietly build an
endpoint such as `https://ftp://host`. `connection_string_problem` finds those up front, so a
malformed setting is reported as such (`503 storageUnavailable` naming the setting; the command line
exits 2) rather than as storage being down. A problem never quotes the string: it may hold a key.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import urlsplit

SETTING = "AzureWebJobsStorage"
DEVELOPMENT = "UseDevelopmentStorage=true"
_ENDPOINTS = ("TableEndpoint", "QueueEndpoint", "BlobEndpoint", "FileEndpoint")


def parse(value: str) -> dict[str, str] | None:
    """The `Name=value` pairs of a connection string (names compared case-insensitively), or None."""
    pairs: dict[str, str] = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        name, sep, item = part.partition("=")
        if not sep or not name.strip() or not item.strip():
            return None
        pairs[name.strip().casefold()] = item.strip()
    return pairs or None


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
        endpoint = pairs.get(name.casefold())
        if endpoint is not None and (
            urlsplit(endpoint).scheme not in ("http", "https") or not urlsplit(endpoint).hostname
        ):
            return f"{SETTING} has a {name} that is not an http(s) URL"
    has_endpoints = all(name.casefold() in pairs for name in ("TableEndpoint", "QueueEndpoint"))
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
