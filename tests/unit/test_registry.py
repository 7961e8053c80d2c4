"""The rules of registering and unregistering (shared/registry.py) over storage in memory: 201 or 200 (the first
registration wins), 409 for another tenant, the memory of an end cleared by an explicit registration only, and
404 for a call that is not there."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from shared import registry
from shared.errors import CallNotFound, Conflict
from shared.models import CallRecord
from tests.fakes import MemoryStorage

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER = "0b5e8a7c-3f0e-4a2b-9c1d-8e7f6a5b4c3d"


def register(storage: MemoryStorage, call_id: str = "c", tenant: str | None = TENANT, default: str | None = None,
             metadata: dict[str, str] | None = None, now: datetime = NOW) -> tuple[CallRecord, bool]:  # fmt: skip
    return registry.register(
        storage.calls, call_id=call_id, tenant_id=tenant, default_tenant_id=default, metadata=metadata or {}, now=now
    )


def test_a_new_call_is_created_with_a_fresh_registration_id():
    storage = MemoryStorage()
    record, created = register(storage, metadata={"bot": "echo"})
    assert created and record.tenant_id == TENANT and record.registered_at == NOW and record.metadata == {"bot": "echo"}
    other, _ = register(storage, "d")
    assert record.registration_id != other.registration_id
    assert storage.calls.get("c") == record


@pytest.mark.parametrize(
    ("tenant", "default", "stored"),
    [(TENANT, OTHER, TENANT), (None, OTHER, OTHER), (None, None, None)],
    ids=["given", "GRAPH_TENANT_ID", "none"],
)
def test_a_new_call_takes_the_tenant_given_else_graph_tenant_id_else_none(tenant, default, stored):
    record, created = register(MemoryStorage(), tenant=tenant, default=default)
    assert created and record.tenant_id == stored


@pytest.mark.parametrize("tenant", [TENANT, None], ids=["same tenant", "no tenant"])
def test_a_call_registered_already_is_returned_unchanged(tenant):
    storage = MemoryStorage()
    first, _ = register(storage, metadata={"a": "1"})
    again, created = register(storage, tenant=tenant, metadata={"a": "2"}, now=NOW + timedelta(minutes=5))
    assert not created and again == first  # its first registration wins: same id, time and metadata
    assert storage.calls.get("c") == first


def test_any_tenant_over_a_stored_call_without_one_leaves_it_unchanged():
    storage = MemoryStorage()
    first, _ = register(storage, tenant=None)
    again, created = register(storage, tenant=OTHER)
    assert not created and again == first and again.tenant_id is None


def test_another_tenant_over_a_stored_one_is_a_conflict_and_nothing_changes():
    storage = MemoryStorage()
    first, _ = register(storage)
    with pytest.raises(Conflict) as refused:
        register(storage, tenant=OTHER)
    assert (refused.value.status, refused.value.code) == (409, "conflict")
    assert refused.value.message == "call 'c' is registered under another tenant"
    assert storage.calls.get("c") == first


def test_a_call_deleted_between_the_refused_insert_and_the_read_is_registered_anew():
    storage = MemoryStorage()
    first, _ = register(storage)

    races: list[str] = []

    def deleted_meanwhile(partition_key: str, row_key: str) -> bool:  # once, just before the read: a race
        if not races:
            races.append(row_key)
            storage.rows.remove(partition_key, row_key)
        return False

    storage.faults.fail("calls.get", when=deleted_meanwhile)
    record, created = register(storage, metadata={"second": "try"})
    assert created and record.registration_id != first.registration_id and storage.calls.get("c") == record
    assert races  # the insert was refused, the read found nothing, and the next insert went through


def test_a_row_the_app_cannot_read_holding_the_key_is_a_conflict_after_a_few_tries(caplog):
    storage = MemoryStorage()
    record = CallRecord("c", TENANT, NOW, "00000000-0000-4000-8000-000000000001")
    storage.rows.put({**record.to_entity(), "RegistrationId": "damaged"})
    with caplog.at_level(logging.WARNING), pytest.raises(Conflict, match="a row the app cannot read holds its key"):
        register(storage)
    assert len(storage.rows.all()) == 1  # left in place


def explicitly(storage: MemoryStorage, call_id: str = "c", tenant: str | None = TENANT) -> tuple[CallRecord, bool]:
    return registry.register_explicitly(
        storage.calls, storage.ends, call_id=call_id, tenant_id=tenant, default_tenant_id=None, metadata={}, now=NOW
    )


def test_an_explicit_registration_clears_the_memory_of_the_calls_end_under_every_tenant(caplog):
    storage = MemoryStorage()
    storage.ends.remember("c", tenant_id=TENANT, reason="keepAliveNotFound", now=NOW - timedelta(hours=1))
    storage.ends.remember("c", tenant_id=OTHER, reason="terminatedNotification", now=NOW)
    storage.ends.remember("d", tenant_id=TENANT, reason="terminatedNotification", now=NOW)
    with caplog.at_level(logging.INFO, logger="shared"):
        record, created = explicitly(storage)
    assert created and storage.calls.get("c") == record
    assert not storage.ends.recently_ended("c", TENANT, NOW) and not storage.ends.recently_ended("c", OTHER, NOW)
    assert storage.ends.recently_ended("d", TENANT, NOW)  # another call's end stays
    assert any(r.getMessage() == f"call registered callId=c tenantId={TENANT}" for r in caplog.records)


def test_an_explicit_registration_without_any_tenant_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="shared"):
        explicitly(MemoryStorage(), tenant=None)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("call registered without a tenant callId=c: no tenantId was given")


def test_unregister_removes_the_call_without_an_event_and_leaves_the_memory_alone(caplog):
    storage = MemoryStorage(topic=True)
    register(storage)
    storage.ends.remember("c", tenant_id=OTHER, reason="terminatedNotification", now=NOW)
    with caplog.at_level(logging.INFO, logger="shared"):
        registry.unregister(storage.calls, "c")
    assert [r.getMessage() for r in caplog.records] == ["call removed callId=c"]
    assert storage.calls.get("c") is None
    assert storage.cleanup.texts == [] and storage.call_events is not None and storage.call_events.texts == []
    assert storage.ends.recently_ended("c", OTHER, NOW)
    with pytest.raises(CallNotFound):
        registry.unregister(storage.calls, "c")  # gone already: 404


def test_unregister_of_an_unknown_call_is_not_found():
    with pytest.raises(CallNotFound, match="no call is registered with that callId"):
        registry.unregister(MemoryStorage().calls, "never")
