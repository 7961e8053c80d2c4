"""The wire path (shared/storage/_tablewire.py): the format of query pages and entity group transactions, checked
against the SDK's own output, and the one check of what Table Storage takes before anything is written (issue 18,
items 1 and 9)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from azure.core.exceptions import ServiceResponseError
from azure.data.tables import EdmType, EntityProperty
from azure.data.tables._serialize import _add_entity_properties

from shared.errors import TransactionFailed, UnstorableEntity
from shared.models import EARLIEST, INT32_MAX, LATEST, CallRecord, format_time
from shared.storage._tablewire import (
    MAX_ENTITY_BYTES,
    MAX_STRING_BYTES,
    WireEntity,
    _from_wire,
    bind,
    decode,
    encode,
    replace_all,
    sdk_entity,
    wire_entity,
    wire_time,
)

RECORD = CallRecord(
    call_id="19:meeting_é'x@thread.v2",
    tenant_id="72f988bf-86f1-41af-91ab-2d7cd011db47",
    registered_at=datetime(2026, 11, 27, 12, 0, 0, 123000, tzinfo=UTC),
    registration_id="2d6f1c1e-0000-4000-8000-000000000001",
    last_keepalive_at=datetime(2026, 11, 27, 12, 10, tzinfo=UTC),
    last_status=503,
    last_error="503 ServiceUnavailable",
    consecutive_failures=2,
    metadata={"bot": "é"},
)


def test_entities_are_typed_as_the_sdk_types_them():
    entity = {**RECORD.to_entity(), "Flag": True, "Ratio": 0.5}
    assert wire_entity(entity) == _add_entity_properties(entity)


def test_values_the_sdk_refuses_are_refused():
    with pytest.raises(UnstorableEntity):
        wire_entity({**RECORD.to_entity(), "Big": 2**40})
    with pytest.raises(UnstorableEntity):
        wire_entity({**RECORD.to_entity(), "Bytes": b"x"})


def test_a_checked_entity_goes_back_to_the_sdk_with_its_types():
    """The SDK's own transaction (when the pipeline moved) takes a `wire_entity` back with every Edm type."""
    wire = wire_entity({**RECORD.to_entity(), "Flag": True, "Ratio": 0.5})
    assert _add_entity_properties(_from_wire(wire)) == wire


def test_the_changeset_replaces_each_entity_if_its_etag_matches():
    etag = "W/\"datetime'2026-11-27T12%3A00%3A00.1234567Z'\""
    entity = RECORD.to_entity()
    wire = wire_entity(entity)
    body, boundary = encode("https://acct.table.core.windows.net", "calls", [(wire, etag)], version="2019-02-02")
    text = body.decode("ascii")
    assert text.startswith(f"--{boundary}\r\nContent-Type: multipart/mixed; boundary=changeset_")
    partition, row = entity["PartitionKey"], entity["RowKey"]
    assert f"PUT https://acct.table.core.windows.net/calls(PartitionKey='{partition}',RowKey='{row}') HTTP/1.1" in text
    assert f"\r\nIf-Match: {etag}\r\n" in text
    payload = text.split("\r\n\r\n")[3].split("\r\n")[0]
    assert json.loads(payload) == _add_entity_properties(entity)
    assert f"Content-Length: {len(payload)}\r\n" in text
    assert text.endswith(f"--{boundary}--\r\n")


def answer(*parts: tuple[int, str | None], error: str | None = None) -> bytes:
    chunks = ["--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n"]
    for status, etag in parts:
        headers = "X-Content-Type-Options: nosniff\r\nDataServiceVersion: 3.0;\r\n"
        if etag:
            headers += f"ETag: {etag}\r\n"
        body = error or ""
        chunks.append(
            "--changesetresponse_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            f"HTTP/1.1 {status} Status\r\n{headers}\r\n{body}\r\n"
        )
    chunks.append("--changesetresponse_2--\r\n--batchresponse_1--\r\n")
    return "".join(chunks).encode()


def test_a_successful_answer_gives_the_new_etags_in_order():
    assert decode(answer((204, 'W/"a"'), (204, 'W/"b"')), 2) == ['W/"a"', 'W/"b"']


def test_a_refused_changeset_names_the_status_index_and_code():
    error = json.dumps({"odata.error": {"code": "UpdateConditionNotSatisfied", "message": {"value": "3:The update…"}}})
    with pytest.raises(TransactionFailed) as refused:
        decode(answer((412, None), error=error), 5)
    assert (refused.value.status, refused.value.index, refused.value.code) == (412, 3, "UpdateConditionNotSatisfied")
    assert refused.value.conflict


def test_a_missing_entity_is_a_conflict_and_an_odd_answer_is_not_taken_for_success():
    with pytest.raises(TransactionFailed) as refused:
        decode(answer((404, None)), 2)
    assert refused.value.conflict and refused.value.index is None
    with pytest.raises(TransactionFailed) as odd:
        decode(answer((204, 'W/"a"')), 2)
    assert not odd.value.conflict


def test_filter_values_are_bound_as_quoted_literals():
    assert bind("PartitionKey eq @p", {"p": "07"}) == "PartitionKey eq '07'"
    assert bind("CallId eq @c and X eq @c", {"c": "a' or 'x"}) == "CallId eq 'a'' or ''x' and X eq 'a'' or ''x'"
    with pytest.raises(KeyError):
        bind("PartitionKey eq @missing", {})


def test_a_wire_entity_reads_back_as_the_record():
    entity = _add_entity_properties(RECORD.to_entity())
    wire = WireEntity({**entity, "odata.etag": 'W/"e"', "Timestamp": "2026-11-27T12:10:00.1234567Z"})
    back = CallRecord.from_entity(wire)
    assert back == RECORD and back.etag == 'W/"e"'


class FakeResponse:
    def __init__(self, status: int, body: bytes) -> None:
        self.status_code = status
        self._body = body
        self.headers: dict[str, str] = {}

    def read(self) -> bytes:
        return self._body


class FlakyPipeline:
    """The table client's generated client: loses the answer `lost` times, then answers."""

    def __init__(self, lost: int, answer: FakeResponse) -> None:
        self.lost, self.answer, self.sent = lost, answer, 0

    def send_request(self, request, stream=False):
        self.sent += 1
        if self.lost:
            self.lost -= 1
            raise ServiceResponseError("connection reset by peer")
        return self.answer


class FakeTable:
    url = "https://acct.table.core.windows.net"
    table_name = "calls"
    api_version = "2019-02-02"

    def __init__(self, pipeline: FlakyPipeline) -> None:
        self._client = pipeline


def test_a_transaction_whose_answer_was_lost_is_sent_again():
    entity = wire_entity(RECORD.to_entity())
    pipeline = FlakyPipeline(lost=2, answer=FakeResponse(202, answer((204, 'W/"new"'))))
    assert replace_all(FakeTable(pipeline), [(entity, 'W/"old"')]) == ['W/"new"']  # type: ignore[arg-type]
    assert pipeline.sent == 3
    never = FlakyPipeline(lost=5, answer=FakeResponse(202, b""))
    with pytest.raises(ServiceResponseError):
        replace_all(FakeTable(never), [(entity, 'W/"old"')])  # type: ignore[arg-type]
    assert never.sent == 3


# --- what Table Storage takes (issue 18, item 1) ----------------------------------------------------------------------
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
REGISTRATION = "3f1c1a52-7a39-4a8e-9a7e-3c1b0f2f3f3f"
ROW = CallRecord("c1", TENANT, NOW, REGISTRATION)


def test_consecutive_failures_stop_at_int32_max():
    at_max = CallRecord("c1", TENANT, NOW, REGISTRATION, consecutive_failures=INT32_MAX)
    assert at_max.with_result(now=NOW, status=503, error="503", ok=False).consecutive_failures == INT32_MAX
    below = CallRecord("c1", TENANT, NOW, REGISTRATION, consecutive_failures=INT32_MAX - 1)
    assert below.with_result(now=NOW, status=503, error="503", ok=False).consecutive_failures == INT32_MAX
    wire_entity(at_max.with_result(now=NOW, status=503, error="503", ok=False).to_entity())  # storage takes it


def entity(**changes: Any) -> dict[str, Any]:
    return {**ROW.to_entity(), **changes}


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"ConsecutiveFailures": INT32_MAX + 1}, "ConsecutiveFailures"),
        ({"LastStatus": -(2**31) - 1}, "LastStatus"),
        ({"LastError": "x" * (MAX_STRING_BYTES // 2 + 1)}, "LastError"),
        ({"Metadata": "😀" * (MAX_STRING_BYTES // 4 + 1)}, "Metadata"),  # two UTF-16 units each
        ({"LastError": "a\ud800b"}, "LastError"),
        ({"LastKeepAliveAt": EARLIEST - timedelta(microseconds=1)}, "LastKeepAliveAt"),
        ({"RegisteredAt": datetime(999, 12, 31, tzinfo=UTC)}, "RegisteredAt"),
        ({"RegisteredAt": datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-2)))}, "RegisteredAt"),
        ({"Ratio": float("nan")}, "Ratio"),
        ({"Blob": b"x"}, "Blob"),
        ({"PartitionKey": "a/b"}, "PartitionKey"),
        ({"RowKey": "r" * 513}, "RowKey"),
        ({f"P{i}": "x" * 30_000 for i in range(18)}, "1 MiB"),
        ({f"P{i}": 1 for i in range(250)}, "252"),
    ],
)
def test_what_table_storage_would_refuse_is_refused_before_it_is_sent(changes, named):
    with pytest.raises(UnstorableEntity) as refused:
        wire_entity(entity(**changes))
    assert named in refused.value.reason


def test_values_at_table_storages_limits_are_taken():
    wire = wire_entity(
        entity(
            ConsecutiveFailures=INT32_MAX,
            LastStatus=999,
            LastError="x" * (MAX_STRING_BYTES // 2),
            Metadata="é" * (MAX_STRING_BYTES // 2),
            RegisteredAt=EARLIEST,
            LastKeepAliveAt=LATEST,
        )
    )
    assert wire["RegisteredAt"] == "1601-01-01T00:00:00.000000Z"
    assert wire["LastKeepAliveAt"] == "9999-12-31T23:59:59.999999Z"
    assert len(json.dumps(wire)) < MAX_ENTITY_BYTES


# --- four-digit years (issue 18, item 9) ------------------------------------------------------------------------------
def test_dates_are_always_written_and_shown_with_four_digit_years():
    assert wire_time("RegisteredAt", datetime(1601, 2, 3, 4, 5, 6, 7, tzinfo=UTC)) == "1601-02-03T04:05:06.000007Z"
    assert format_time(datetime(999, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)) == "0999-01-02T03:04:05.678Z"
    assert format_time(datetime(45, 1, 1, tzinfo=UTC)) == "0045-01-01T00:00:00.000Z"
    # the SDK's own writes get the same text (the SDK would pass a datetime through strftime)
    sdk = sdk_entity(entity(LastKeepAliveAt=datetime(2026, 1, 1, tzinfo=UTC)))
    assert sdk["LastKeepAliveAt"] == EntityProperty("2026-01-01T00:00:00.000000Z", EdmType.DATETIME)
    assert sdk["CallId"] == "c1" and sdk["ConsecutiveFailures"] == 0
    with pytest.raises(UnstorableEntity):
        sdk_entity(entity(RegisteredAt=datetime(1000, 1, 1, tzinfo=UTC)))
