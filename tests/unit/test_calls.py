"""The calls table's decisions (shared/storage/_calls.py, `CallsTable`) over its rows in memory, where storage can
refuse or fail each write: a refused transaction goes one by one, a call whose own write fails costs only itself,
an outage stops the rest, an outcome storage would refuse is never sent, and a change is never applied twice.
(What both Azure and the memory answer alike: tests/contract/.)"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from shared.errors import EntityRefused, StorageUnavailable
from shared.models import CallRecord
from shared.storage import NotSaved
from tests.fakes import MemoryStorage
from tests.helpers import ids_in

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def stored(storage: MemoryStorage, *call_ids: str) -> list[CallRecord]:
    records = []
    for i, call_id in enumerate(call_ids):
        assert storage.calls.insert(CallRecord(call_id, TENANT, NOW, f"00000000-0000-4000-8000-{i:012d}"))
        record = storage.calls.get(call_id)
        assert record is not None
        records.append(record)
    return records


def ok(r: CallRecord) -> CallRecord:
    return r.with_result(now=NOW, status=200, error=None, ok=True)


def batch(records: list[CallRecord]):
    return [(r, ok) for r in records], [ok(r) for r in records]


def saved(storage: MemoryStorage, call_id: str) -> bool:
    record = storage.calls.get(call_id)
    return record is not None and record.last_keepalive_at == NOW


def test_a_refused_transaction_goes_one_by_one_and_each_call_costs_only_itself(caplog):
    storage = MemoryStorage()
    records = stored(storage, *ids_in("23", 6))
    changed_meanwhile = records[0]  # its ETag moves on: the transaction is refused (412), then one by one
    storage.calls.update_all([(changed_meanwhile, ok)], [ok(changed_meanwhile)])
    refused, buggy = records[1].call_id, records[3].call_id  # the calls after each must still be written
    storage.faults.fail(
        "calls.replace", when=lambda entity: entity["CallId"] == refused, error=lambda: EntityRefused(400)
    )
    storage.faults.fail(
        "calls.replace", when=lambda entity: entity["CallId"] == buggy, error=lambda: RuntimeError("a\nbug")
    )

    with caplog.at_level(logging.INFO, logger="shared.storage"):
        results = storage.calls.update_all(*batch(records))

    assert [type(r).__name__ for r in results] == ["CallRecord", "NotSaved", "CallRecord", "NotSaved", "CallRecord",
                                                   "CallRecord"]  # fmt: skip
    assert results[1] == NotSaved("storage refused the entity status=400") and results[3] == NotSaved("RuntimeError")
    assert [saved(storage, r.call_id) for r in records] == [True, False, True, False, True, True]
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("update batch refused partition=23 calls=6 status=412 index=0") for m in messages)
    assert any(f"keepalive result not saved callId={refused} reason=storage refused the entity" in m for m in messages)


def test_an_outage_in_the_one_by_one_fallback_stops_the_rest_as_unsaved_outages():
    storage = MemoryStorage()
    records = stored(storage, *ids_in("24", 4))
    storage.calls.update_all([(records[0], ok)], [ok(records[0])])  # the transaction is refused
    storage.faults.fail("calls.replace", when=lambda entity: entity["CallId"] == records[1].call_id)
    results = storage.calls.update_all(*batch(records))
    assert isinstance(results[0], CallRecord)
    assert results[1:] == [NotSaved("StorageUnavailable", outage=True)] * 3  # no write after the outage is tried
    assert [saved(storage, r.call_id) for r in records] == [True, False, False, False]


def test_an_outcome_storage_would_refuse_is_never_sent_and_the_others_are_written_together():
    storage = MemoryStorage()
    records = stored(storage, *ids_in("31", 3))
    changes, changed = batch(records)
    changed[1] = CallRecord(**{**{n: getattr(changed[1], n) for n in CallRecord.__dataclass_fields__},
                               "registered_at": datetime(1500, 1, 1, tzinfo=UTC)})  # fmt: skip
    results = storage.calls.update_all(changes, changed)
    assert isinstance(results[1], NotSaved) and "RegisteredAt" in results[1].reason and not results[1].outage
    assert storage.rows.batches == [[records[0].call_id, records[2].call_id]]  # one transaction of the other two
    assert [saved(storage, r.call_id) for r in records] == [True, False, True]


def test_a_transaction_request_refused_as_a_whole_goes_one_by_one(caplog):
    storage = MemoryStorage()
    records = stored(storage, *ids_in("25", 3))
    storage.faults.fail("calls.replace_all", error=lambda: EntityRefused(400))
    with caplog.at_level(logging.WARNING, logger="shared.storage"):
        results = storage.calls.update_all(*batch(records))
    assert all(isinstance(r, CallRecord) for r in results) and all(saved(storage, r.call_id) for r in records)
    assert any(r.getMessage() == "update batch failed status=400; updating one by one" for r in caplog.records)


def test_an_outage_of_the_transaction_itself_is_raised_and_nothing_is_written():
    storage = MemoryStorage()
    records = stored(storage, *ids_in("26", 3))
    storage.faults.fail("calls.replace_all")
    with pytest.raises(StorageUnavailable):
        storage.calls.update_all(*batch(records))
    assert not any(saved(storage, r.call_id) for r in records)


def test_a_single_outcome_is_written_alone_not_as_a_transaction():
    storage = MemoryStorage()
    [record] = stored(storage, "alone")
    assert storage.calls.update_all(*batch([record])) == [ok(record)]
    assert storage.rows.batches == [] and saved(storage, "alone")


def test_a_delete_of_a_row_changed_meanwhile_reads_it_again_and_stops_at_another_registration():
    storage = MemoryStorage()
    [record] = stored(storage, "c")
    storage.calls.update_all([(record, ok)], [ok(record)])  # same registration, new ETag: deleted all the same
    assert storage.calls.delete(record) is True
    again = CallRecord("c", TENANT, NOW, "00000000-0000-4000-8000-000000000099")
    assert storage.calls.insert(again)  # registered anew (another registration id): the old one's delete stops
    assert storage.calls.delete(record) is False and storage.calls.get("c") == again


def test_the_count_stops_reading_once_past_its_threshold():
    storage = MemoryStorage()
    for i in range(2500):
        storage.calls.insert(CallRecord(f"n{i}", TENANT, NOW, f"00000000-0000-4000-8000-{i:012d}"))
    assert storage.calls.count(more_than=1500) == 2000  # two pages of 1,000, not the third
    assert storage.calls.count(more_than=5000) == 2500


def failed(r: CallRecord) -> CallRecord:
    return r.with_result(now=NOW, status=503, error="503", ok=False)


def test_after_a_refused_transaction_a_change_found_applied_already_is_not_applied_twice():
    """A transaction whose answer was lost may have gone through: found so on a fresh read, it is left as it is."""
    storage = MemoryStorage()
    records = stored(storage, *ids_in("27", 2))
    [applied] = storage.calls.update_all([(records[0], failed)], [failed(records[0])])
    results = storage.calls.update_all([(r, failed) for r in records], [failed(r) for r in records])
    assert results[0] == applied and isinstance(results[0], CallRecord) and results[0].consecutive_failures == 1
    assert storage.calls.get(records[0].call_id) == applied


def test_outside_a_refused_transaction_a_change_is_applied_to_the_fresh_row_even_when_it_looks_applied():
    storage = MemoryStorage()
    [record] = stored(storage, "alone")
    storage.calls.update_all([(record, failed)], [failed(record)])  # another sweep wrote the same failure
    [again] = storage.calls.update_all([(record, failed)], [failed(record)])  # stale: read again, applied again
    assert isinstance(again, CallRecord) and again.consecutive_failures == 2


def test_each_written_call_comes_back_with_the_etag_storage_gave_it():
    storage = MemoryStorage()
    records = stored(storage, *ids_in("28", 2), "single")
    results = storage.calls.update_all(*batch(records[:2])) + storage.calls.update_all(*batch(records[2:]))
    for result in results:
        assert isinstance(result, CallRecord)
        assert result.etag is not None and result.etag == storage.calls.get(result.call_id).etag  # type: ignore[union-attr]
        assert storage.calls.delete(result)  # the ETag is the one a later conditional write needs


def test_a_single_update_of_a_call_gone_meanwhile_is_none_and_nothing_is_recreated():
    storage = MemoryStorage()
    [record] = stored(storage, "gone")
    assert storage.calls.delete(record)
    assert storage.calls.update_all(*batch([record])) == [None] and storage.calls.get("gone") is None


def test_a_batch_holds_at_most_a_hundred_calls_of_one_partition():
    storage = MemoryStorage()
    two = [CallRecord(ids_in(p, 1)[0], TENANT, NOW, "00000000-0000-4000-8000-000000000001", etag='W/"1"') for p in
           ("00", "01")]  # fmt: skip
    many = [CallRecord(c, TENANT, NOW, "00000000-0000-4000-8000-000000000001", etag='W/"1"') for c in ids_in("02", 101)]
    for records in (two, many):
        with pytest.raises(ValueError, match="update_all takes at most 100 calls of one partition"):
            storage.calls.update_all(*batch(records))
    storage.calls.update_all(*batch(many[:100]))  # a hundred of one partition: taken (none stored: none written)


def test_each_change_needs_its_outcome():
    storage = MemoryStorage()
    records = stored(storage, *ids_in("29", 2))
    with pytest.raises(ValueError):
        storage.calls.update_all([(r, ok) for r in records], [ok(records[0])])


def test_an_unexpected_error_of_one_write_is_logged_with_its_call_and_costs_that_call_alone(caplog):
    storage = MemoryStorage()
    [record] = stored(storage, "odd'call")
    storage.faults.fail("calls.replace", error=lambda: RuntimeError("a bug"))
    with caplog.at_level(logging.ERROR, logger="shared.storage"):
        assert storage.calls.update_all(*batch([record])) == [NotSaved("RuntimeError")]
    [line] = [r.getMessage() for r in caplog.records]
    assert line == 'keepalive result not saved callId="odd\'call" error=a bug'
