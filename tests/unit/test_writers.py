"""What a sweep changes (shared/writers.py), over storage in memory: `BatchWriter`'s buffering per partition, what
it reports when writes are lost, the 404 path through `end_call`, and the dry run's sender and writer."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import pytest

from shared.fanout import ALL_PARTITIONS
from shared.graph import KeepAliveResult
from shared.models import CallRecord, call_keys
from shared.settings import load_settings
from shared.sweep import Unsaved
from shared.writers import BatchWriter, DryRunSender, DryRunWriter
from tests.fakes import MemoryStorage, check_violations
from tests.helpers import ids_in

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OK = KeepAliveResult(status=200, attempts=1)


def registered(storage: MemoryStorage, *call_ids: str) -> list[CallRecord]:
    """The calls stored, as a sweep reads them (with their ETags)."""
    records = []
    for call_id in call_ids:
        assert storage.calls.insert(
            CallRecord(call_id, TENANT, NOW, f"00000000-0000-4000-8000-{len(records):012d}", metadata={})
        )
        record = storage.calls.get(call_id)
        assert record is not None
        records.append(record)
    return records


def writer(storage: MemoryStorage, **options) -> BatchWriter:
    return BatchWriter(storage.calls, storage.event_queues, storage.ends, lambda: NOW, **options)


def test_a_partition_is_written_per_hundred_and_the_rest_at_the_end():
    storage = MemoryStorage()
    records = registered(storage, *ids_in("00", 250), *ids_in("01", 30))
    batch = writer(storage)
    for record in records:
        changed = batch.succeeded(record, OK, NOW)
        assert changed is not None and changed.last_keepalive_at == NOW
    assert sorted(len(b) for b in storage.rows.batches) == [100, 100]  # written as each partition's buffer filled
    assert batch.flush() == Unsaved()
    assert sorted(len(b) for b in storage.rows.batches) == [30, 50, 100, 100]
    assert all(len({call_keys(c)[0] for c in b}) == 1 for b in storage.rows.batches)
    assert all(r.last_keepalive_at == NOW for page in storage.calls.pages() for r in page)


def test_buffers_are_bounded_across_partitions():
    storage = MemoryStorage()
    records = [r for p in ALL_PARTITIONS[:20] for r in registered(storage, *ids_in(p, 5, prefix=f"p{p}-"))]
    batch = writer(storage, max_buffered=50)
    for record in records:
        batch.failed(record, 503, "503", NOW)
    deadline = time.monotonic() + 5  # the writes run on the writer's own threads
    while storage.rows.replaced < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert storage.rows.replaced >= 50  # handed to the writers as soon as more than 50 waited
    batch.flush()
    assert storage.rows.replaced == 100
    assert all(r.consecutive_failures == 1 for page in storage.calls.pages() for r in page)


def test_lost_batches_are_reported_by_kind_at_the_flush(caplog):
    storage = MemoryStorage()
    records = registered(storage, *ids_in("03", 4))
    storage.faults.fail("calls.replace_all", times=10)
    batch = writer(storage)
    for record in records[:3]:
        batch.succeeded(record, OK, NOW)
    batch.failed(records[3], 500, "500", NOW)
    with caplog.at_level(logging.ERROR):
        assert batch.flush() == Unsaved(succeeded=3, failed=1)
    assert any("keepalive results not saved partition=03 calls=4" in r.getMessage() for r in caplog.records)
    assert batch.flush() == Unsaved()  # reported once
    assert all(r.last_keepalive_at is None for page in storage.calls.pages() for r in page)  # the table unchanged


def test_a_partition_whose_write_fails_costs_only_its_own_calls():
    storage = MemoryStorage()
    bad, good = registered(storage, *ids_in("04", 3)), registered(storage, *ids_in("05", 2))
    storage.faults.fail("calls.replace_all", times=10, when=lambda changes: changes[0][0]["PartitionKey"] == "04")
    batch = writer(storage)
    for record in bad + good:
        batch.succeeded(record, OK, NOW)
    assert batch.flush() == Unsaved(succeeded=3)
    saved = {r.call_id for page in storage.calls.pages() for r in page if r.last_keepalive_at == NOW}
    assert saved == {r.call_id for r in good}


def test_a_call_deleted_or_registered_anew_before_its_batch_is_written_is_left_as_it_is():
    storage = MemoryStorage()
    deleted, renewed, kept = registered(storage, *ids_in("06", 3))
    batch = writer(storage)
    for record in (deleted, renewed, kept):
        batch.succeeded(record, OK, NOW)
    assert storage.calls.delete(deleted) and storage.calls.delete(renewed)
    assert storage.calls.insert(CallRecord(renewed.call_id, TENANT, NOW, "00000000-0000-4000-8000-00000000000f"))
    assert batch.flush() == Unsaved()  # gone is not lost: nothing to save
    assert storage.calls.get(deleted.call_id) is None
    again = storage.calls.get(renewed.call_id)
    assert again is not None and again.registration_id.endswith("f") and again.last_keepalive_at is None
    assert storage.calls.get(kept.call_id).last_keepalive_at == NOW  # type: ignore[union-attr]


def test_an_ended_call_goes_through_the_end_sequence_at_once_not_through_a_batch():
    storage = MemoryStorage(topic=True)
    [record] = registered(storage, "gone")
    event = {"eventId": record.registration_id, "callId": "gone", "tenantId": TENANT, "reason": "keepAliveNotFound"}
    writer(storage).end(record, event)
    assert storage.rows.batches == [] and storage.calls.get("gone") is None
    assert storage.cleanup.events() == [event] and storage.call_events is not None
    assert storage.call_events.events() == [event]
    assert storage.ends.recently_ended("gone", TENANT, NOW)


def test_a_rule_of_storage_broken_inside_the_writer_still_fails_the_test(caplog):
    """`BatchWriter` counts any error of a write as unsaved and goes on; the in-memory storage records what the
    engine did against the contract (here: a record without the ETag it was read with), and the teardown of every
    test checks the record (tests/conftest.py), so the swallowed assertion still fails the test."""
    storage = MemoryStorage()
    [stored] = registered(storage, "c1")
    batch = writer(storage)
    batch.succeeded(stored, OK, NOW)
    with caplog.at_level(logging.CRITICAL):
        batch.succeeded(CallRecord("c2", TENANT, NOW, "00000000-0000-4000-8000-000000000009"), OK, NOW)
        assert batch.flush() == Unsaved(succeeded=1)  # c2's write failed; c1's went through
    with pytest.raises(AssertionError, match="without the ETag it was read with"):
        check_violations()  # what the teardown does: the test would fail here
    check_violations()  # taken: this test itself passes


# --- the dry run ----------------------------------------------------------------------------------------------
def test_the_dry_run_writer_changes_nothing_and_says_what_it_would_do(caplog):
    dry = DryRunWriter()
    record = CallRecord("a", TENANT, NOW, "r")
    assert dry.succeeded(record, OK, NOW) is record and dry.failed(record, 503, "503", NOW) is record
    with caplog.at_level(logging.INFO, logger="shared"):
        dry.end(record, {"eventId": "r"})
    assert any("dry run: would send callEnded and delete callId=a" in r.getMessage() for r in caplog.records)
    assert dry.flush() == Unsaved()


def test_the_dry_run_sender_logs_the_request_graph_would_get(caplog):
    settings = load_settings({"GRAPH_DRY_RUN": "true", "GRAPH_BASE_URL": "https://graph.example"})
    with caplog.at_level(logging.INFO, logger="shared"):
        result = DryRunSender(settings).keep_alive("a b?", TENANT)
    assert not result.sent
    assert any(
        "dry run: would send POST https://graph.example/v1.0/communications/calls/a%20b%3F/keepAlive" in r.getMessage()
        for r in caplog.records
    )
