"""shared.http_api over storage in memory: body and query parsing, the error shape, what bad input never reaches,
and what each handler answers (201/200/409, 404, 204, pages and their links)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest

from shared import http_api
from shared.context import Context
from shared.errors import (
    CallNotFound,
    Conflict,
    InvalidRequest,
    PayloadTooLarge,
    StorageAccessDenied,
    StorageError,
    StorageMisconfigured,
    StorageTlsError,
    StorageUnavailable,
)
from shared.http_api import call_location, error_response, handler, read_json
from shared.models import CallRecord
from shared.paging import decode_token
from shared.settings import load_settings
from tests.fakes import MemoryStorage

RECORD = CallRecord(
    call_id="a b",
    tenant_id=None,
    registered_at=datetime(2026, 11, 27, 12, 0, tzinfo=UTC),
    registration_id="reg",
    metadata={"k": "v"},
)


def request(method: str = "POST", body: bytes = b"", params=None, route_params=None) -> func.HttpRequest:
    return func.HttpRequest(
        method=method, url="/api/calls", body=body, params=params or {}, route_params=route_params or {}
    )


def body_of(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body())


class Untouchable:
    """A context for requests that must be refused before anything of it is used: any call through it fails."""

    def __init__(self, path: str = "ctx") -> None:
        self._path = path

    def __getattr__(self, name: str) -> Untouchable:
        return Untouchable(f"{self._path}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{self._path}() was called")


TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "0b5e8a7c-3f0e-4a2b-9c1d-8e7f6a5b4c3d"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def context(storage: MemoryStorage | None = None, **settings: str) -> Context:
    """A context whose tables and queues are in memory (building one does no I/O)."""
    return Context(load_settings(settings), now=lambda: NOW, stores=(storage or MemoryStorage()).stores())


def post(ctx: Context, body: dict[str, Any]) -> func.HttpResponse:
    return http_api.register_call(ctx, request(body=json.dumps(body).encode()))


# --- the request body --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "value"),
    [(b'{"callId": "x"}', {"callId": "x"}), (b"[1, 2]", [1, 2]), (b"null", None), (b'"\xc3\xa9"', "é"), (b" 7 ", 7)],
)
def test_a_json_body_is_read_as_json(body, value):
    assert read_json(request(body=body)) == value


def test_a_body_of_exactly_64_kib_is_read_and_one_byte_more_is_too_large():
    padding = 65_536 - len(b'{"k": ""}')
    largest = b'{"k": "' + b"x" * padding + b'"}'
    assert len(largest) == 65_536 and read_json(request(body=largest)) == {"k": "x" * padding}
    with pytest.raises(PayloadTooLarge) as raised:
        read_json(request(body=largest + b" "))
    assert (raised.value.status, raised.value.code) == (413, "payloadTooLarge")
    assert raised.value.message == "the request body must be at most 65536 bytes"


@pytest.mark.parametrize(
    "body",
    [b"", b"   ", b"{", b"callId=x", b"\xff\xfe{}", b'{"a": 1,}', b"[" * 50_000, b"NaN-", b'{"k": "\xed\xa0\x80"}'],
    ids=["empty", "blank", "truncated", "form", "not utf-8", "trailing comma", "too deep", "junk", "surrogate bytes"],
)
def test_a_body_that_is_not_json_is_an_invalid_request(body):
    with pytest.raises(InvalidRequest) as raised:
        read_json(request(body=body))
    assert (raised.value.status, raised.value.code, raised.value.message) == (
        400,
        "invalidRequest",
        "the request body must be JSON",
    )


# --- the error shape ---------------------------------------------------------------------------
def test_an_error_is_the_contracts_json_shape_with_its_status():
    response = error_response(Conflict("call 'é' is registered under another tenant"))
    assert response.status_code == 409
    assert response.mimetype == "application/json" and response.charset == "utf-8"
    assert (
        response.get_body()
        == '{"error": {"code": "conflict", "message": "call \'é\' is registered under another tenant"}}'.encode()
    )  # noqa: E501
    assert "Retry-After" not in response.headers


@pytest.mark.parametrize(
    "error",
    [
        StorageUnavailable("Storage is unavailable; try again later."),
        StorageMisconfigured("Storage is unavailable; try again later."),
        StorageAccessDenied("Storage is unavailable; try again later.", service="table", role="r"),
        StorageTlsError("Storage is unavailable; try again later."),
    ],
    ids=["outage", "misconfigured", "access denied", "tls"],
)
def test_every_storage_error_is_a_503_storage_unavailable_that_says_when_to_try_again(error):
    response = error_response(error)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "10"
    assert body_of(response) == {
        "error": {"code": "storageUnavailable", "message": "Storage is unavailable; try again later."}
    }
    assert isinstance(error, StorageError) and isinstance(error, StorageUnavailable) == (
        type(error) is StorageUnavailable
    )


def test_the_handler_answers_api_errors_and_hides_anything_else_behind_a_logged_500(caplog):
    @handler
    def refuses(ctx, req):
        raise CallNotFound("no call is registered with that callId")

    @handler
    def breaks(ctx, req):
        raise KeyError("secret-ish detail")

    assert body_of(refuses(None, request())) == {
        "error": {"code": "callNotFound", "message": "no call is registered with that callId"}
    }
    with caplog.at_level(logging.ERROR, logger="shared.http_api"):
        response = breaks(None, request())
    assert response.status_code == 500
    assert body_of(response) == {
        "error": {"code": "internalError", "message": "An unexpected error occurred; it has been logged."}
    }
    assert b"secret-ish" not in response.get_body()
    assert [r.getMessage() for r in caplog.records] == ["unexpected error handler=breaks"]
    assert caplog.records[0].exc_info is not None  # the stack trace goes to the log, not to the caller


@pytest.mark.parametrize(
    ("call_id", "location"),
    [
        ("abc", "/api/calls/abc"),
        ("a b", "/api/calls/a%20b"),
        ("19:meeting_x@thread.v2", "/api/calls/19%3Ameeting_x%40thread.v2"),
        ("é%+&=", "/api/calls/%C3%A9%25%2B%26%3D"),
        ("-_.~", "/api/calls/-_.~"),
    ],
)
def test_the_location_percent_encodes_the_call_id_as_one_segment(call_id, location):
    assert call_location(call_id) == location


# --- POST /api/calls: refused before anything is stored ------------------------------------------
@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        (b"nope", 400, "invalidRequest", "the request body must be JSON"),
        (b"[]", 400, "invalidRequest", "the request body must be a JSON object"),
        (b'"abc"', 400, "invalidRequest", "the request body must be a JSON object"),
        (b"null", 400, "invalidRequest", "the request body must be a JSON object"),
        (b"{}", 400, "invalidRequest", "callId is required"),
        (b'{"CallId": "x"}', 400, "invalidRequest", "callId is required"),  # names are exact in the API
        (b'{"callId": null}', 400, "invalidCallId", "callId must be a string"),
        (b'{"callId": ""}', 400, "invalidCallId", "callId must be 1 to 256 characters long"),
        (b'{"callId": "a/b"}', 400, "invalidCallId", "callId must not contain '/', '\\', '#' or '?'"),
        (b'{"callId": "x", "tenantId": "t"}', 400, "invalidTenantId", None),
        (b'{"callId": "x", "metadata": {"k": 1}}', 400, "invalidMetadata", None),
        (b'{"callId": "x", "metadata": []}', 400, "invalidMetadata", None),
        (b'{"callId": "' + b"x" * 65_600 + b'"}', 413, "payloadTooLarge", None),
    ],
)
def test_bad_registrations_are_refused_before_the_context_is_used(body, status, code, message):
    response = http_api.register_call(Untouchable(), request(body=body))
    assert response.status_code == status
    error = body_of(response)["error"]
    assert error["code"] == code
    if message is not None:
        assert error["message"] == message


def test_callid_is_checked_before_tenant_id_and_metadata():
    response = http_api.register_call(Untouchable(), request(body=b'{"callId": 1, "tenantId": 2, "metadata": 3}'))
    assert body_of(response)["error"]["code"] == "invalidCallId"


def test_a_new_call_is_201_with_its_location_and_record_and_the_same_call_again_200_unchanged():
    storage = MemoryStorage()
    ctx = context(storage)
    body = {"callId": "19:x@y", "tenantId": TENANT.upper(), "metadata": {"bot": "echo"}, "unknown": 1}

    created = post(ctx, body)
    assert (created.status_code, created.headers["Location"]) == (201, "/api/calls/19%3Ax%40y")
    record = body_of(created)
    assert record["tenantId"] == TENANT and record["metadata"] == {"bot": "echo"}  # the tenant lowercased
    assert record["registeredAt"] == "2026-11-27T12:00:00.000Z" and record["consecutiveFailures"] == 0
    [row] = storage.rows.all()
    assert row["CallId"] == "19:x@y" and row["TenantId"] == TENANT

    for again in ({"callId": "19:x@y", "metadata": {"bot": "other"}}, {"callId": "19:x@y", "tenantId": TENANT}):
        response = post(ctx, again)
        assert response.status_code == 200 and body_of(response) == record and "Location" not in response.headers


def test_a_call_registered_under_another_tenant_is_a_409_and_stays_as_it_was():
    storage = MemoryStorage()
    ctx = context(storage)
    post(ctx, {"callId": "c", "tenantId": TENANT})
    response = post(ctx, {"callId": "c", "tenantId": OTHER_TENANT})
    assert response.status_code == 409 and body_of(response)["error"]["code"] == "conflict"
    [row] = storage.rows.all()
    assert row["TenantId"] == TENANT


def test_the_tenant_defaults_to_graph_tenant_id():
    ctx = context(GRAPH_TENANT_ID=TENANT.upper())
    assert body_of(post(ctx, {"callId": "c"}))["tenantId"] == TENANT
    assert body_of(post(ctx, {"callId": "d", "tenantId": OTHER_TENANT}))["tenantId"] == OTHER_TENANT


def test_an_explicit_registration_clears_the_memory_of_the_calls_end():
    storage = MemoryStorage()
    storage.ends.remember("c", tenant_id=TENANT, reason="terminatedNotification", now=NOW)
    assert post(context(storage), {"callId": "c", "tenantId": TENANT}).status_code == 201
    assert not storage.ends.recently_ended("c", TENANT, NOW)


def test_get_finds_a_call_and_delete_removes_it_once():
    ctx = context()
    created = body_of(post(ctx, {"callId": "a:b", "tenantId": TENANT}))
    route = {"callId": "a:b"}
    found = http_api.get_call(ctx, request("GET", route_params=route))
    assert found.status_code == 200 and body_of(found) == created
    assert http_api.delete_call(ctx, request("DELETE", route_params=route)).status_code == 204
    for handler_name in ("get_call", "delete_call"):
        gone = getattr(http_api, handler_name)(ctx, request("GET", route_params=route))
        assert gone.status_code == 404
        assert body_of(gone) == {"error": {"code": "callNotFound", "message": "no call is registered with that callId"}}


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


def forged(keys: dict[str, str | None]) -> str:
    """A token of the previous format with its checksum computed from the salt anyone could read in the code."""
    payload = json.dumps(keys, separators=(",", ":")).encode()
    checksum = hashlib.sha256(b"callkeeper-continuation-v1" + payload).hexdigest()[:16]
    return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + checksum


@pytest.mark.parametrize(
    ("body", "status", "code"), BAD_BODIES, ids=[f"{c}-{i}" for i, (_, _, c) in enumerate(BAD_BODIES)]
)
def test_bad_input_is_refused_before_anything_is_read_or_stored(body, status, code):
    response = http_api.register_call(Untouchable(), request(body=body))
    assert response.status_code == status and body_of(response)["error"]["code"] == code


def test_metadata_limit_is_4096_bytes_of_compact_utf8_json():
    ctx = context()
    overhead = len('{"k":""}')
    fits = {"k": "é" * ((4096 - overhead) // 2)}
    too_big = {"k": "é" * ((4096 - overhead) // 2) + "x" * 2}
    assert post(ctx, {"callId": "fits", "metadata": fits}).status_code == 201
    assert body_of(post(ctx, {"callId": "big", "metadata": too_big}))["error"]["code"] == "invalidMetadata"


def test_unknown_fields_are_ignored():
    response = post(context(), {"callId": "c", "unknown": {"deep": [1, 2]}, "registeredAt": "1999-01-01T00:00:00Z"})
    assert response.status_code == 201 and body_of(response)["registeredAt"] == "2026-11-27T12:00:00.000Z"


# --- GET and DELETE of a callId that could never be valid ------------------------------------------
@pytest.mark.parametrize("call_id", ["", "a b", "x" * 257, "a\x00", "\ud800"])
@pytest.mark.parametrize("handler_name", ["get_call", "delete_call"])
def test_a_call_id_that_could_never_be_valid_is_not_found_without_a_lookup(handler_name, call_id):
    response = getattr(http_api, handler_name)(Untouchable(), request("GET", route_params={"callId": call_id}))
    assert response.status_code == 404
    assert body_of(response) == {"error": {"code": "callNotFound", "message": "no call is registered with that callId"}}


# --- GET /api/calls: top and continuationToken -----------------------------------------------------
@pytest.mark.parametrize(("raw", "top"), [(None, 100), ("1", 1), ("1000", 1000), ("0042", 42), ("000000100", 100)])
def test_top_is_an_integer_from_1_to_1000_and_100_by_default(raw, top):
    storage = MemoryStorage()
    post(ctx := context(storage), {"callId": "a:b", "metadata": {"k": "v"}})
    params = {} if raw is None else {"top": raw}
    response = http_api.list_calls(ctx, request("GET", params=params))
    assert response.status_code == 200
    assert storage.rows.listed == [(None, top + 1)]  # a row more than the page: where the next one starts
    assert body_of(response) == {"value": [body_of(http_api.get_call(ctx, request(route_params={"callId": "a:b"})))]}


@pytest.mark.parametrize(
    "raw", ["", "0", "1001", "-1", "+5", "5.0", "1e2", " 5", "5 ", "5\n", "٥", "0x10", "0000000001", "abc"]
)
def test_any_other_top_is_an_invalid_request_and_nothing_is_read(raw):
    response = http_api.list_calls(Untouchable(), request("GET", params={"top": raw}))
    assert response.status_code == 400
    assert body_of(response) == {
        "error": {"code": "invalidRequest", "message": "top must be an integer from 1 to 1000"}
    }


def test_an_empty_continuation_token_is_refused_and_nothing_is_read():
    response = http_api.list_calls(Untouchable(), request("GET", params={"continuationToken": ""}))
    assert body_of(response) == {
        "error": {"code": "invalidRequest", "message": "continuationToken is not one this API issued"}
    }


def test_the_next_link_is_relative_and_its_token_leads_to_the_rest():
    storage = MemoryStorage()
    ctx = context(storage)
    for call_id in ("a", "b", "c"):
        post(ctx, {"callId": call_id})
    first = body_of(http_api.list_calls(ctx, request("GET", params={"top": "2"})))
    link = first["nextLink"]
    assert link.startswith("/api/calls?top=2&continuationToken=")
    token = link.rsplit("=", 1)[1]
    rest = body_of(http_api.list_calls(ctx, request("GET", params={"top": "2", "continuationToken": token})))
    assert storage.rows.listed == [(None, 3), (decode_token(token), 3)]
    assert sorted(r["callId"] for r in first["value"] + rest["value"]) == ["a", "b", "c"]
    assert "nextLink" not in rest  # the last page has no next link


def test_a_token_the_api_never_issued_is_an_invalid_request():
    response = http_api.list_calls(context(), request("GET", params={"continuationToken": "eyJ.a+b/c="}))
    assert response.status_code == 400
    assert body_of(response) == {
        "error": {"code": "invalidRequest", "message": "continuationToken is not one this API issued"}
    }


@pytest.mark.parametrize(
    "token",
    [
        "bogus",
        "eyJwayI6IjAwIn0",
        "eyJwayI6IjAwIn0.0000",
        forged({"pk": "1!8!MDA-", "rk": "1!88!YWJj"}),  # the service's own form of a key
        forged({"pk": "zz", "rk": None}),
        "64-" + "0" * 64,  # a partition the app never writes
        "07-" + "A" * 64,  # a row key the app never writes
        "07-" + "0" * 64 + "x" * 1000,  # over 1,024 characters
    ],
    ids=["bogus", "old form", "old form, checksum", "forged service keys", "forged other partition", "partition 64",
         "upper-case row key", "too long"],
)  # fmt: skip
def test_a_token_naming_keys_the_app_never_writes_is_refused(token):
    storage = MemoryStorage()
    ctx = context(storage)
    post(ctx, {"callId": "c"})
    response = http_api.list_calls(ctx, request("GET", params={"top": "1", "continuationToken": token}))
    assert response.status_code == 400 and body_of(response)["error"]["code"] == "invalidRequest"
