"""The HTTP API against real Azurite, invoked the way the host routes requests."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from urllib.parse import quote, unquote

import pytest
from azure.data.tables import TableClient

from shared.context import Context
from shared.models import CallRecord, call_keys, utc_now
from shared.paging import decode_token
from shared.storage import CallsTable
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


def test_register_twice_answers_200_and_keeps_the_first_registration(host, ctx):
    first = body_of(register(host, {"callId": "c", "tenantId": TENANT, "metadata": {"a": "1"}}))
    time.sleep(0.01)
    again = register(host, {"callId": "c", "metadata": {"a": "2"}})
    same_tenant = register(host, {"callId": "c", "tenantId": TENANT.upper()})

    assert again.status_code == 200 and same_tenant.status_code == 200
    assert body_of(again) == first and body_of(same_tenant) == first
    assert "Location" not in again.headers


def test_register_under_another_tenant_is_a_conflict(host, ctx, table_entities):
    register(host, {"callId": "c", "tenantId": TENANT})

    assert_error(register(host, {"callId": "c", "tenantId": OTHER_TENANT}), 409, "conflict")
    [entity] = table_entities()
    assert entity["TenantId"] == TENANT


def test_any_tenant_over_a_stored_null_tenant_leaves_the_record_unchanged(host, ctx):
    first = body_of(register(host, {"callId": "c"}))
    assert first["tenantId"] is None

    again = register(host, {"callId": "c", "tenantId": TENANT})

    assert again.status_code == 200
    assert body_of(again) == first


def test_tenant_defaults_to_graph_tenant_id(host, make_context):
    make_context(install=True, GRAPH_TENANT_ID=TENANT.upper())
    assert body_of(register(host, {"callId": "c"}))["tenantId"] == TENANT
    assert body_of(register(host, {"callId": "d", "tenantId": OTHER_TENANT}))["tenantId"] == OTHER_TENANT


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


BAD_BODIES = [
    (b"not json", 400, "invalidRequest"),
    (b"", 400, "invalidRequest"),
    (b"\xff\xfe", 400, "invalidRequest"),
    (b"[1, 2]", 400, "invalidRequest"),
    (b'"callId"', 400, "invalidRequest"),
    (b"null", 400, "invalidRequest"),
    (b"[" * 100_000 + b"]" * 100_000, 413, "payloadTooLarge"),
    (b"[" * 30_000 + b"]" * 30_000, 400, "invalidRequest"),
    (b'{"tenantId": "' + TENANT.encode() + b'"}', 400, "invalidRequest"),
    (b'{"callId": null}', 400, "invalidCallId"),
    (b'{"callId": 42}', 400, "invalidCallId"),
    (b'{"callId": ""}', 400, "invalidCallId"),
    (b'{"callId": ["a"]}', 400, "invalidCallId"),
    (json.dumps({"callId": "x" * 257}).encode(), 400, "invalidCallId"),
    (b'{"callId": "a/b"}', 400, "invalidCallId"),
    (b'{"callId": "a\\\\b"}', 400, "invalidCallId"),
    (b'{"callId": "a#b"}', 400, "invalidCallId"),
    (b'{"callId": "a?b"}', 400, "invalidCallId"),
    (b'{"callId": "a b"}', 400, "invalidCallId"),
    (b'{"callId": "a\\u00a0b"}', 400, "invalidCallId"),
    (b'{"callId": "a\\u2003b"}', 400, "invalidCallId"),
    (b'{"callId": "a\\u3000b"}', 400, "invalidCallId"),
    (b'{"callId": "a\\nb"}', 400, "invalidCallId"),
    (b'{"callId": "a\\u0000b"}', 400, "invalidCallId"),
    (b'{"callId": "a\\u007fb"}', 400, "invalidCallId"),
    (b'{"callId": "a\\u0085b"}', 400, "invalidCallId"),
    (b'{"callId": "a\\u009fb"}', 400, "invalidCallId"),
    (b'{"callId": "a\\ud800b"}', 400, "invalidCallId"),
    (b'{"callId": "."}', 400, "invalidCallId"),
    (b'{"callId": ".."}', 400, "invalidCallId"),
    (b'{"callId": "a\\u200bb"}', 400, "invalidCallId"),  # zero-width space (Cf)
    (b'{"callId": "a\\u202eb"}', 400, "invalidCallId"),  # right-to-left override (bidi control)
    (b'{"callId": "a\\u2066b"}', 400, "invalidCallId"),  # left-to-right isolate
    (b'{"callId": "\\ufeffa"}', 400, "invalidCallId"),  # BOM
    (b'{"callId": "a\\u200db"}', 400, "invalidCallId"),  # zero-width joiner
    (b'{"callId": "a\\u00adb"}', 400, "invalidCallId"),  # soft hyphen
    (b'{"callId": "c", "tenantId": "not-a-guid"}', 400, "invalidTenantId"),
    (b'{"callId": "c", "tenantId": 7}', 400, "invalidTenantId"),
    (b'{"callId": "c", "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47\\n"}', 400, "invalidTenantId"),
    (b'{"callId": "c", "tenantId": "{72f988bf-86f1-41af-91ab-2d7cd011db47}"}', 400, "invalidTenantId"),
    (b'{"callId": "c", "metadata": "x"}', 400, "invalidMetadata"),
    (b'{"callId": "c", "metadata": ["x"]}', 400, "invalidMetadata"),
    (b'{"callId": "c", "metadata": {"a": 1}}', 400, "invalidMetadata"),
    (b'{"callId": "c", "metadata": {"a": null}}', 400, "invalidMetadata"),
    (b'{"callId": "c", "metadata": {"a": {"b": "c"}}}', 400, "invalidMetadata"),
    (b'{"callId": "c", "metadata": {"a": "\\udc00"}}', 400, "invalidMetadata"),
    (json.dumps({"callId": "c", "metadata": {"k": "v" * 4090}}).encode(), 400, "invalidMetadata"),
    (json.dumps({"callId": "c", "pad": "x" * 65_536}).encode(), 413, "payloadTooLarge"),
]


@pytest.mark.parametrize(
    ("body", "status", "code"), BAD_BODIES, ids=[f"{c}-{i}" for i, (_, _, c) in enumerate(BAD_BODIES)]
)
def test_bad_input_is_refused_and_nothing_is_stored(host, ctx, table_entities, body, status, code):
    assert_error(register(host, body), status, code)
    assert table_entities() == []


def test_metadata_limit_is_4096_bytes_of_compact_utf8_json(host, ctx):
    overhead = len('{"k":""}')
    fits = {"k": "é" * ((4096 - overhead) // 2)}
    too_big = {"k": "é" * ((4096 - overhead) // 2) + "x" * 2}
    assert register(host, {"callId": "fits", "metadata": fits}).status_code == 201
    assert_error(register(host, {"callId": "big", "metadata": too_big}), 400, "invalidMetadata")


def test_unknown_fields_are_ignored(host, ctx):
    response = register(host, {"callId": "c", "unknown": {"deep": [1, 2]}, "registeredAt": "1999-01-01T00:00:00Z"})
    assert response.status_code == 201
    assert body_of(response)["registeredAt"] != "1999-01-01T00:00:00Z"


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


def test_list_defaults_to_100_per_page(host, ctx):
    seed(ctx, 150)
    body = body_of(host.request("GET", "/api/calls"))
    assert len(body["value"]) == 100
    assert body["nextLink"].startswith("/api/calls?top=100&continuationToken=")


def test_list_of_an_empty_table_has_no_next_link(host, ctx):
    assert body_of(host.request("GET", "/api/calls")) == {"value": []}


@pytest.mark.parametrize(
    "query", ["top=0", "top=1001", "top=-1", "top=abc", "top=1.5", "top=", "top=%201", "continuationToken=",
              "top=1%0A", "continuationToken=bogus", "continuationToken=eyJwayI6IjAwIn0",
              "continuationToken=eyJwayI6IjAwIn0.0000"],
)  # fmt: skip
def test_bad_list_parameters_are_invalid_requests(host, ctx, query):
    assert_error(host.request("GET", "/api/calls?" + query), 400, "invalidRequest")


def test_a_tampered_continuation_token_is_refused(host, ctx):
    seed(ctx, 5)
    next_link = body_of(host.request("GET", "/api/calls?top=2"))["nextLink"]
    token = next_link.split("continuationToken=")[1]
    tampered = ("A" if token[0] != "A" else "B") + token[1:]
    assert_error(host.request("GET", "/api/calls?top=2&continuationToken=" + tampered), 400, "invalidRequest")


def forged(keys: dict[str, str | None]) -> str:
    """A token of the previous format with its checksum computed from the salt anyone could read in the code."""
    payload = json.dumps(keys, separators=(",", ":")).encode()
    checksum = hashlib.sha256(b"callkeeper-continuation-v1" + payload).hexdigest()[:16]
    return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + checksum


@pytest.mark.parametrize(
    "token",
    [
        forged({"pk": "1!8!MDA-", "rk": "1!88!YWJj"}),  # the service's own form of a key
        forged({"pk": "zz", "rk": None}),
        "64-" + "0" * 64,  # a partition the app never writes
        "07-" + "A" * 64,  # a row key the app never writes
        "07-" + "0" * 64 + "x" * 1000,  # over 1,024 characters
    ],
    ids=["forged service keys", "forged other partition", "partition 64", "upper-case row key", "too long"],
)
def test_a_token_naming_keys_the_app_never_writes_is_refused(host, ctx, token):
    seed(ctx, 3)
    response = host.request("GET", "/api/calls?top=1&continuationToken=" + quote(token, safe=""))
    assert_error(response, 400, "invalidRequest")


def test_pages_that_end_at_rows_of_another_program_still_list_every_call_exactly_once(host, ctx):
    ids = seed(ctx, 12)
    keys = sorted(call_keys(call_id) for call_id in ids)
    foreign = [  # rows the app never writes, between and around its own, each a page boundary for some top
        ("", "empty"), ("0", "a"), (keys[0][0], ""), (keys[0][0], keys[0][1][:10]), (keys[0][0], keys[0][1] + "0"),
        (keys[3][0], keys[3][1][:63] + "g"), (keys[5][0], "zz"), (keys[5][0], "F" * 64), ("63", "f" * 64 + "x"),
        ("64", "0" * 64), ("zz", "z"), ("é", "é"),
    ]  # fmt: skip
    table: TableClient = ctx.storage.table()
    for partition, row in foreign:
        table.create_entity({"PartitionKey": partition, "RowKey": row, "Note": "not a call"})
    for top in (1, 2, 3, 5):
        seen: list[str] = []
        url: str | None = f"/api/calls?top={top}"
        while url:
            body = body_of(host.request("GET", url))
            seen.extend(record["callId"] for record in body["value"])
            url = body.get("nextLink")
            if url:
                token = unquote(url.split("continuationToken=")[1])
                assert decode_token(token)  # an app key, whatever row the page ended at
        assert sorted(seen) == sorted(ids), top


def test_host_refuses_requests_without_a_function_key_and_unknown_routes(host, ctx):
    assert host.request("GET", "/api/calls", function_key=None).status_code == 401
    assert host.request("PUT", "/api/calls/c").status_code == 404
    assert host.request("GET", "/api/nothing").status_code == 404


def test_registration_racing_its_own_deletion_ends_registered(ctx):
    """The store's insert/get loop: a call deleted between a failed insert and the read is registered anew."""
    calls = CallsTable(ctx.storage)
    record = CallRecord("race", None, utc_now(), str(uuid.uuid4()))
    assert calls.insert(record)
    assert not calls.insert(record)
    assert calls.delete(calls.get("race"))
    assert calls.get("race") is None
