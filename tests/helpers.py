"""Small helpers the tests share (fakes live in tests/fakes.py, Azurite in tests/azurite.py)."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime
from typing import Any

from shared.models import call_keys


def ids_in(partition: str, count: int, prefix: str = "c") -> list[str]:
    """`count` callIds (`<prefix><n>`) whose hash puts them in `partition` (`00`..`63`)."""
    found: list[str] = []
    i = 0
    while len(found) < count:
        if call_keys(f"{prefix}{i}")[0] == partition:
            found.append(f"{prefix}{i}")
        i += 1
    return found


def closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (bound for a moment, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def note(
    call_id: str,
    state: Any,
    *,
    change_type: str = "updated",
    url: str | None = None,
    result_info: dict[str, Any] | None = None,
    **resource: Any,
) -> dict[str, Any]:
    """One notification item about a call, as Graph sends it (`commsNotifications`' `value` holds these)."""
    data: dict[str, Any] = {"@odata.type": "#microsoft.graph.call", "@odata.id": "/app/calls/" + call_id, **resource}
    if state is not None:
        data["state"] = state
    if result_info is not None:
        data["resultInfo"] = result_info
    return {
        "changeType": change_type,
        "resourceUrl": url if url is not None else "/communications/calls/" + call_id,
        "resourceData": data,
    }


def raw_row(call_id: str, tenant: str | None = None, **properties: Any) -> dict[str, Any]:
    """A calls-table entity as the app writes one for `call_id` (keys, a fresh registration, no failures, `{}`
    metadata), with `properties` replacing or adding to it: to write with the SDK, bypassing the app."""
    partition_key, row_key = call_keys(call_id)
    return {
        "PartitionKey": partition_key,
        "RowKey": row_key,
        "CallId": call_id,
        "RegisteredAt": datetime(2026, 1, 1, tzinfo=UTC),
        "RegistrationId": str(uuid.uuid4()),
        "ConsecutiveFailures": 0,
        "Metadata": "{}",
        **({"TenantId": tenant} if tenant else {}),
        **properties,
    }
