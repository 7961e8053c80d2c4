"""shared.http_api without storage: body and query parsing, the error shape, and what bad input never reaches."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import azure.functions as func
import pytest

from shared import http_api, registry
from shared.errors import CallNotFound, Conflict, InvalidRequest, PayloadTooLarge, StorageUnavailable
from shared.http_api import call_location, error_response, handler, read_json
from shared.models import CallRecord
from shared.settings import load_settings
from tests.fakes import FakeCalls

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


class ListContext:
    def __init__(self, calls: FakeCalls) -> None:
        self.calls = calls


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


def test_storage_unavailable_says_when_to_try_again():
    response = error_response(StorageUnavailable("Storage is unavailable; try again later."))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "10"
    assert body_of(response) == {
        "error": {"code": "storageUnavailable", "message": "Storage is unavailable; try again later."}
    }


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


def test_a_valid_registration_passes_the_validated_values_and_answers_201_then_200(monkeypatch):
    calls: list[dict[str, Any]] = []
    answers = iter([(RECORD, True), (RECORD, False)])

    def register(calls_, memory, **values):
        calls.append({k: v for k, v in values.items() if k in ("call_id", "tenant_id", "metadata")})
        return next(answers)

    monkeypatch.setattr(registry, "register_explicitly", register)
    body = b'{"callId": "19:x@y", "tenantId": "72F988BF-86F1-41AF-91AB-2D7CD011DB47", "unknown": 1}'
    ctx = SimpleNamespace(calls=None, recent_ends=None, settings=load_settings({}), now=lambda: RECORD.registered_at)

    created = http_api.register_call(ctx, request(body=body))
    again = http_api.register_call(ctx, request(body=body))

    assert calls == [{"call_id": "19:x@y", "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47", "metadata": {}}] * 2
    assert (created.status_code, created.headers["Location"], body_of(created)) == (
        201,
        "/api/calls/19%3Ax%40y",
        RECORD.to_json(),
    )
    assert (again.status_code, body_of(again)) == (200, RECORD.to_json())
    assert "Location" not in again.headers


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
    calls = FakeCalls(page=[RECORD])
    params = {} if raw is None else {"top": raw}
    response = http_api.list_calls(ListContext(calls), request("GET", params=params))
    assert response.status_code == 200
    assert calls.asked == [(top, None)]
    assert body_of(response) == {"value": [RECORD.to_json()]}


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


def test_the_token_is_handed_to_the_store_and_the_next_link_is_relative_and_percent_encoded():
    calls = FakeCalls(page=[RECORD], next_token="eyJ.a+b/c=")
    response = http_api.list_calls(ListContext(calls), request("GET", params={"top": "5", "continuationToken": "T.1"}))
    assert calls.asked == [(5, "T.1")]
    assert body_of(response) == {
        "value": [RECORD.to_json()],
        "nextLink": "/api/calls?top=5&continuationToken=eyJ.a%2Bb%2Fc%3D",
    }


def test_the_last_page_has_no_next_link():
    response = http_api.list_calls(ListContext(FakeCalls(page=[RECORD], next_token=None)), request("GET"))
    assert "nextLink" not in body_of(response)
