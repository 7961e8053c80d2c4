"""Registering calls: the rules of `POST /api/calls`, shared by the API, notifications and the command line."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from shared.errors import Conflict
from shared.models import CallRecord
from shared.store import CallStore


def register_call(
    calls: CallStore,
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
    while True:
        if calls.insert(record):
            return record, True
        existing = calls.get(call_id)
        if existing is None:  # deleted between our insert and our read: try again
            continue
        if tenant_id is not None and existing.tenant_id is not None and existing.tenant_id != tenant_id:
            raise Conflict(f"call {call_id!r} is registered under another tenant")
        return existing, False
