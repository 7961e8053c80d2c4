"""Registering and unregistering calls: the rules of `POST` and `DELETE /api/calls`, for the API, notifications
and the command line.

    register(calls, ...)             201 or 200: a new call is stored; one registered already is returned unchanged
                                     (its first registration wins), unless another tenant is named: 409
    register_explicitly(calls, memory, ...)  the bot's (`POST /api/calls`) or an operator's (`calls add`): the memory
                                     of the call's end is cleared first, so a late `established` may register it again
    unregister(calls, call_id)       no event, the memory untouched; 404 when there is no such call
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from shared.errors import CallNotFound, Conflict
from shared.logsafe import get_logger, safe
from shared.models import CallRecord
from shared.storage import Calls, EndMemory

logger = get_logger(__name__)

_ATTEMPTS = 5  # inserts tried while a row holds the key but cannot be read as a call
NO_TENANT = (
    "no tenantId was given and GRAPH_TENANT_ID is not set, so its keepAlives fail ('no tenant') "
    "until GRAPH_TENANT_ID is set (or the call is removed and registered again with a tenantId)"
)


def register(
    calls: Calls,
    *,
    call_id: str,
    tenant_id: str | None,
    default_tenant_id: str | None,
    metadata: Mapping[str, str],
    now: datetime,
) -> tuple[CallRecord, bool]:
    """Register a call; returns (record, created).

    A new call takes `tenant_id`, else `default_tenant_id` (GRAPH_TENANT_ID), else None. A call
    registered already is returned unchanged (its first registration wins) unless `tenant_id` names
    a tenant other than the stored, non-null one: then `Conflict`.
    """
    record = CallRecord(
        call_id=call_id,
        tenant_id=tenant_id or default_tenant_id,
        registered_at=now,
        registration_id=str(uuid.uuid4()),
        metadata=dict(metadata),
    )
    for _ in range(_ATTEMPTS):
        if calls.insert(record):
            return record, True
        existing = calls.get(call_id)
        if existing is None:  # deleted between our insert and our read (or a row the app cannot read): again
            continue
        if tenant_id is not None and existing.tenant_id is not None and existing.tenant_id != tenant_id:
            raise Conflict(f"call {call_id!r} is registered under another tenant")
        return existing, False
    raise Conflict(f"call {call_id!r} cannot be registered: a row the app cannot read holds its key (see the logs)")


def register_explicitly(
    calls: Calls,
    memory: EndMemory,
    *,
    call_id: str,
    tenant_id: str | None,
    default_tenant_id: str | None,
    metadata: Mapping[str, str],
    now: datetime,
) -> tuple[CallRecord, bool]:
    """A registration by the bot (`POST /api/calls`) or an operator (`calls add`).

    Unlike a notification's, it clears the 24-hour memory of the call's end first.
    """
    memory.forget(call_id, now)
    record, created = register(
        calls, call_id=call_id, tenant_id=tenant_id, default_tenant_id=default_tenant_id, metadata=metadata, now=now
    )
    if created:
        logger.info("call registered callId=%s tenantId=%s", safe(call_id), record.tenant_id)
        if record.tenant_id is None:
            logger.warning("call registered without a tenant callId=%s: %s", safe(call_id), NO_TENANT)
    return record, created


def unregister(calls: Calls, call_id: str) -> None:
    """Remove a call (`DELETE /api/calls/{callId}`, `calls remove`): no `callEnded` event, the memory of ends
    untouched. `CallNotFound` when no call is registered with that callId (or it went meanwhile)."""
    record = calls.get(call_id)
    if record is None or not calls.delete(record):
        raise CallNotFound("no call is registered with that callId")
    logger.info("call removed callId=%s", safe(call_id))
