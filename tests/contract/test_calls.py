"""The contract of `Calls`, the calls table: what every implementation answers (Azure's, and the in-memory one)."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from shared.errors import InvalidRequest
from shared.models import CallRecord, call_keys
from shared.paging import decode_token
from shared.storage import BATCH_SIZE, Calls, SkippedRows
from tests.contract.conftest import Backend
from tests.helpers import ids_in

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def record(call_id: str, registration: int = 1) -> CallRecord:
    return CallRecord(
        call_id=call_id,
        tenant_id=TENANT,
        registered_at=NOW,
        registration_id=f"00000000-0000-4000-8000-{registration:012d}",
        metadata={"n": call_id},
    )


def stored(calls: Calls, *call_ids: str) -> list[CallRecord]:
    records = []
    for call_id in call_ids:
        assert calls.insert(record(call_id))
        found = calls.get(call_id)
        assert found is not None and found.etag
        records.append(found)
    return records


def ok(now: datetime = NOW):
    return lambda r: r.with_result(now=now, status=200, error=None, ok=True)


def batch(records: list[CallRecord], change=None):
    change = change or ok()
    return [(r, change) for r in records], [change(r) for r in records]


# --- insert, get, delete ------------------------------------------------------------------------------------
def test_insert_stores_a_new_call_and_answers_false_for_one_stored_already(backend: Backend):
    calls = backend.stores.calls
    assert calls.insert(record("a")) is True
    assert calls.insert(record("a", registration=2)) is False  # 409: the first registration stays
    found = calls.get("a")
    assert found == record("a") and found is not None and found.etag


def test_get_of_an_unknown_call_is_none(backend: Backend):
    assert backend.stores.calls.get("never") is None


def test_a_row_the_app_cannot_read_is_none_and_logged(backend: Backend, caplog):
    damaged = {**record("d").to_entity(), "RegistrationId": "not a guid"}
    backend.plant(damaged)
    with caplog.at_level(logging.WARNING, logger="shared.storage"):
        assert backend.stores.calls.get("d") is None
    assert any("calls row skipped" in r.getMessage() for r in caplog.records)
    assert backend.stores.calls.insert(record("d")) is False  # its key is taken all the same


def test_delete_removes_this_registration_once(backend: Backend):
    calls = backend.stores.calls
    [a] = stored(calls, "a")
    assert calls.delete(a) is True
    assert calls.get("a") is None
    assert calls.delete(a) is False  # gone already


def test_delete_of_a_call_changed_meanwhile_still_removes_the_same_registration(backend: Backend):
    calls = backend.stores.calls
    [a] = stored(calls, "a")
    [changed] = calls.update_all(*batch([a]))
    assert isinstance(changed, CallRecord) and changed.etag != a.etag
    assert calls.delete(a) is True  # 412 on the old ETag, then read again: the same registration
    assert calls.get("a") is None


def test_delete_never_removes_a_newer_registration(backend: Backend):
    calls = backend.stores.calls
    [old] = stored(calls, "a")
    assert calls.delete(old)
    assert calls.insert(record("a", registration=2))
    assert calls.delete(old) is False
    newer = calls.get("a")
    assert newer is not None and newer.registration_id == record("a", registration=2).registration_id


# --- update_all -----------------------------------------------------------------------------------------------
def test_update_all_writes_each_change_with_a_new_etag(backend: Backend):
    calls = backend.stores.calls
    records = stored(calls, *ids_in("07", 3))
    changes, changed = batch(records)
    results = calls.update_all(changes, changed)
    assert results == changed
    assert all(
        isinstance(r, CallRecord) and r.etag and r.etag != old.etag for r, old in zip(results, records, strict=True)
    )
    for result in results:
        assert isinstance(result, CallRecord)
        again = calls.get(result.call_id)
        assert again == result and again is not None and again.etag == result.etag
        assert again.last_keepalive_at == NOW


def test_update_all_never_recreates_a_call_deleted_meanwhile(backend: Backend):
    calls = backend.stores.calls
    records = stored(calls, *ids_in("07", 3))
    assert calls.delete(records[1])
    results = calls.update_all(*batch(records))
    assert results[1] is None
    assert calls.get(records[1].call_id) is None
    assert isinstance(results[0], CallRecord) and isinstance(results[2], CallRecord)
    assert calls.get(records[0].call_id) == results[0]


def test_update_all_leaves_a_call_registered_anew_meanwhile_alone(backend: Backend):
    calls = backend.stores.calls
    records = stored(calls, *ids_in("07", 2))
    assert calls.delete(records[0])
    assert calls.insert(record(records[0].call_id, registration=2))
    results = calls.update_all(*batch(records))
    assert results[0] is None and isinstance(results[1], CallRecord)
    newer = calls.get(records[0].call_id)
    assert newer == record(records[0].call_id, registration=2) and newer is not None
    assert newer.last_keepalive_at is None


def failed(r: CallRecord) -> CallRecord:
    return r.with_result(now=NOW, status=503, error="503", ok=False)


def test_update_all_applies_a_change_to_the_row_as_changed_meanwhile(backend: Backend):
    calls = backend.stores.calls
    records = stored(calls, *ids_in("07", 2))
    earlier = ok(datetime(2026, 11, 27, 11, 50, tzinfo=UTC))
    [meanwhile] = calls.update_all([(records[0], earlier)], [earlier(records[0])])
    assert isinstance(meanwhile, CallRecord) and meanwhile.last_keepalive_at is not None
    results = calls.update_all(*batch(records, failed))  # records[0] is stale: read again, changed again
    assert isinstance(results[0], CallRecord) and calls.get(records[0].call_id) == results[0]
    assert results[0].last_keepalive_at == meanwhile.last_keepalive_at and results[0].consecutive_failures == 1
    assert isinstance(results[1], CallRecord) and results[1].consecutive_failures == 1


def test_a_change_found_applied_already_on_a_fresh_read_is_not_applied_twice(backend: Backend):
    """A transaction whose answer was lost may have gone through: its changes are not applied a second time."""
    calls = backend.stores.calls
    records = stored(calls, *ids_in("07", 2))
    [applied] = calls.update_all([(records[0], failed)], [failed(records[0])])
    results = calls.update_all(*batch(records, failed))
    assert isinstance(results[0], CallRecord) and results[0].consecutive_failures == 1
    assert results[0] == applied and calls.get(records[0].call_id) == applied


def test_a_single_update_is_conditional_too(backend: Backend):
    calls = backend.stores.calls
    [a] = stored(calls, "a")
    assert calls.delete(a)
    assert calls.update_all(*batch([a])) == [None]
    assert calls.get("a") is None


# --- pages and counts -------------------------------------------------------------------------------------------
def test_pages_hold_every_readable_call_once_and_skip_the_others_counted(backend: Backend, caplog):
    calls = backend.stores.calls
    ids = [f"p{i:02d}" for i in range(25)]
    stored(calls, *ids)
    backend.plant({"PartitionKey": "zz", "RowKey": "foreign", "Name": "another program's row"})
    backend.plant({**record("damaged").to_entity(), "ConsecutiveFailures": "many"})
    skipped = SkippedRows()
    with caplog.at_level(logging.WARNING, logger="shared.storage"):
        pages = list(calls.pages(page_size=10, skipped=skipped))
    assert sorted(r.call_id for page in pages for r in page) == ids
    assert all(1 <= len(page) <= 10 for page in pages) and all(r.etag for page in pages for r in page)
    assert skipped.count == 2
    assert sum("calls row skipped" in r.getMessage() for r in caplog.records) == 2


def test_partition_pages_hold_the_calls_of_that_partition(backend: Backend):
    calls = backend.stores.calls
    inside, outside = ids_in("05", 3), ids_in("06", 2)
    stored(calls, *inside, *outside)
    assert sorted(r.call_id for page in calls.partition_pages("05") for r in page) == sorted(inside)
    assert list(calls.partition_pages("42")) == []


def test_count_is_exact_up_to_its_threshold_and_above_it_past_that(backend: Backend):
    calls = backend.stores.calls
    stored(calls, *[f"n{i}" for i in range(5)])
    backend.plant({**record("damaged").to_entity(), "CallId": ""})
    assert calls.count(more_than=10) == 5  # the unreadable row does not count
    assert calls.count(more_than=2) > 2


# --- the API's pages ---------------------------------------------------------------------------------------------
def test_listing_with_continuation_tokens_shows_every_call_once_in_key_order(backend: Backend):
    calls = backend.stores.calls
    ids = [f"l{i:02d}" for i in range(23)]
    stored(calls, *ids)
    backend.plant({**record("x-damaged").to_entity(), "RegisteredAt": "not a date"})
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        records, token = calls.list_page(5, token)
        assert len(records) <= 5
        seen += [r.call_id for r in records]
        pages += 1
        if token is None:
            break
        assert len(token) == 67
    assert sorted(seen) == ids and len(seen) == len(set(seen)) and pages >= 5
    assert [call_keys(c) for c in seen] == sorted(call_keys(c) for c in seen)


def test_pages_that_end_at_rows_of_another_program_still_list_every_call_exactly_once(backend: Backend):
    calls = backend.stores.calls
    ids = [f"seed-{i:02d}" for i in range(12)]
    stored(calls, *ids)
    keys = sorted(call_keys(call_id) for call_id in ids)
    foreign = [  # rows the app never writes, between and around its own, each a page boundary for some top
        ("", "empty"), ("0", "a"), (keys[0][0], ""), (keys[0][0], keys[0][1][:10]), (keys[0][0], keys[0][1] + "0"),
        (keys[3][0], keys[3][1][:63] + "g"), (keys[5][0], "zz"), (keys[5][0], "F" * 64), ("63", "f" * 64 + "x"),
        ("64", "0" * 64), ("zz", "z"), ("é", "é"),
    ]  # fmt: skip
    for partition, row in foreign:
        backend.plant({"PartitionKey": partition, "RowKey": row, "Note": "not a call"})
    for top in (1, 2, 3, 5):
        seen: list[str] = []
        token: str | None = None
        while True:
            records, token = calls.list_page(top, token)
            seen += [r.call_id for r in records]
            if token is None:
                break
            assert decode_token(token)  # an app key, whatever row the page ended at
        assert sorted(seen) == ids, top


def test_the_next_page_starts_at_the_least_app_key_after_another_programs_row(backend: Backend):
    calls = backend.stores.calls
    ids = ids_in("03", 2) + ids_in("04", 2)
    stored(calls, *ids)
    backend.plant({"PartitionKey": "03", "RowKey": "~foreign", "Name": "sorts after every hex key of 03"})
    first, token = calls.list_page(2, None)
    assert token == "04-" + "0" * 64  # every row in between is unreadable anyway
    rest, token = calls.list_page(10, token)
    assert sorted(r.call_id for r in first + rest) == sorted(ids) and token is None


@pytest.mark.parametrize("token", ["", "00-" + "g" * 64, "64-" + "0" * 64, "x" * 2000, "eyJwayI6IjAwIn0"])
def test_a_token_the_api_could_not_have_issued_is_refused(backend: Backend, token: str):
    with pytest.raises(InvalidRequest):
        backend.stores.calls.list_page(5, token or "00")


# --- the limits -----------------------------------------------------------------------------------------------------
def test_update_all_takes_one_partition_of_at_most_a_batch(backend: Backend):
    calls = backend.stores.calls
    records = [replace(r, etag='W/"1"') for r in map(record, ids_in("00", 1) + ids_in("01", 1))]
    with pytest.raises(ValueError):
        calls.update_all(*batch(records))
    over = [replace(record(c), etag='W/"1"') for c in ids_in("02", BATCH_SIZE + 1)]
    with pytest.raises(ValueError):
        calls.update_all(*batch(over))
