"""The wire format of query pages and entity group transactions, checked against the SDK's own output."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from azure.core.exceptions import ServiceResponseError
from azure.data.tables._serialize import _add_entity_properties

from shared.errors import TransactionFailed, UnstorableEntity
from shared.models import CallRecord
from shared.storage._tablewire import WireEntity, _from_wire, bind, decode, encode, replace_all, wire_entity

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
