"""The HTTP API against real Azurite, invoked the way the host routes requests."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from azure.data.tables import TableClient

from shared.context import Context
from shared.models import CallRecord, call_keys, utc_now
from tests.host import FunctionHost, body_of

pytestmark = pytest.mark.integration

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "0b5e8a7c-3f0e-4a2b-9c1d-8e7f6a5b4c3d"
RECORD_FIELDS = {
    "callId", "tenantId", "registeredAt", "lastKeepAliveAt", "lastStatus", "lastError", "consecutiveFailures",
    "metadata",
}  # fmt: skip


def register(host: FunctionHost, body: object, **kwargs):
    return host.request("POST", "/api/calls", body=body, **kwargs)


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.get_body()
    assert response.mimetype == "application/json"
    body = body_of(response)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in body["error"]["message"]


def test_register_new_call_answers_201_with_location_and_record(host, ctx, table_entities):
    response = register(host, {"callId": "call-1", "tenantId": TENANT.upper(), "metadata": {"bot": "echo"}})

    assert response.status_code == 201
    assert response.headers["Location"] == "/api/calls/call-1"
    record = body_of(response)
    assert set(record) == RECORD_FIELDS
    assert record["callId"] == "call-1"
    assert record["tenantId"] == TENANT  # stored lowercase
    assert record["registeredAt"].endswith("Z")
    assert record["lastKeepAliveAt"] is None and record["lastStatus"] is None and record["lastError"] is None
    assert record["consecutiveFailures"] == 0
    assert record["metadata"] == {"bot": "echo"}
    [entity] = table_entities()
    assert (entity["PartitionKey"], entity["RowKey"]) == call_keys("call-1")
    assert entity["CallId"] == "call-1"


def test_get_and_delete(host, ctx, table_entities):
    created = body_of(register(host, {"callId": "c", "tenantId": TENANT}))

    got = host.request("GET", "/api/calls/c")
    assert got.status_code == 200 and body_of(got) == created

    deleted = host.request("DELETE", "/api/calls/c")
    assert deleted.status_code == 204 and deleted.get_body() == b""
    assert table_entities() == []
    assert_error(host.request("GET", "/api/calls/c"), 404, "callNotFound")
    assert_error(host.request("DELETE", "/api/calls/c"), 404, "callNotFound")


@pytest.mark.parametrize(
    "path", ["/api/calls/a%20b", "/api/calls/" + "x" * 257, "/api/calls/a%09b", "/api/calls/%C2%85"]
)
def test_get_and_delete_of_a_never_valid_call_id_is_not_found(host, ctx, path):
    assert_error(host.request("GET", path), 404, "callNotFound")
    assert_error(host.request("DELETE", path), 404, "callNotFound")


ODD_CALL_IDS = [
    'it\'s-"quoted"',
    "100%",
    "%2F%25",
    "a:b:c",
    "Grüße-通话-📞",
    "19:meeting_abc@thread.v2",
    "+plus&amp=eq;semi",
    "'",
    "x" * 256,
    "😀" * 256,
]


@pytest.mark.parametrize("call_id", ODD_CALL_IDS)
def test_odd_call_ids_round_trip(host, ctx, table_entities, call_id):
    response = register(host, {"callId": call_id, "metadata": {"k": call_id}})
    assert response.status_code == 201
    location = response.headers["Location"]
    assert location == "/api/calls/" + quote(call_id, safe="")

    got = host.request("GET", location)
    assert got.status_code == 200
    assert body_of(got)["callId"] == call_id
    assert body_of(got)["metadata"] == {"k": call_id}
    listed = body_of(host.request("GET", "/api/calls"))["value"]
    assert [r["callId"] for r in listed] == [call_id]
    [entity] = table_entities()
    assert entity["RowKey"].isalnum() and entity["PartitionKey"].isdigit()  # no callId character reaches a key

    assert host.request("DELETE", location).status_code == 204
    assert table_entities() == []


def seed(ctx: Context, count: int) -> set[str]:
    """Write `count` calls straight into the table, in entity group transactions per partition."""
    table: TableClient = ctx.storage.table()
    now = utc_now()
    by_partition: dict[str, list] = {}
    ids = {f"seed-{i:05d}" for i in range(count)}
    for call_id in ids:
        entity = CallRecord(call_id, None, now, str(uuid.uuid4())).to_entity()
        by_partition.setdefault(entity["PartitionKey"], []).append(("create", entity))
    for operations in by_partition.values():
        for start in range(0, len(operations), 100):
            table.submit_transaction(operations[start : start + 100])
    return ids


def test_paging_through_2500_calls_returns_each_exactly_once(host, ctx):
    ids = seed(ctx, 2500)
    seen: list[str] = []
    url = "/api/calls?top=1000"
    pages = 0
    while url:
        response = host.request("GET", url)
        assert response.status_code == 200
        body = body_of(response)
        assert len(body["value"]) <= 1000
        seen.extend(record["callId"] for record in body["value"])
        url = body.get("nextLink")
        assert url is None or url.startswith("/api/calls?top=1000&continuationToken=")
        pages += 1
    assert sorted(seen) == sorted(ids)
    assert pages >= 3


def test_list_of_an_empty_table_has_no_next_link(host, ctx):
    assert body_of(host.request("GET", "/api/calls")) == {"value": []}


def test_host_refuses_requests_without_a_function_key_and_unknown_routes(host, ctx):
    assert host.request("GET", "/api/calls", function_key=None).status_code == 401
    assert host.request("PUT", "/api/calls/c").status_code == 404
    assert host.request("GET", "/api/nothing").status_code == 404
