"""Reading Graph's call notifications without a token, a key or storage: URLs, items, resultInfo, the header."""

from __future__ import annotations

import logging

import azure.functions as func
import pytest

from shared.errors import InvalidToken
from shared.notifications import CallNotification, bearer_token, call_id_of, graph_result, parse_item

CALL = "#microsoft.graph.call"


def item(state: str | None = "established", change: str = "updated", url: str = "/communications/calls/c1", **data):
    resource = {"@odata.type": CALL, **({"state": state} if state is not None else {}), **data}
    return {"changeType": change, "resourceUrl": url, "resourceData": resource}


# --- resourceUrl -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "call_id"),
    [
        ("/communications/calls/c1", "c1"),
        ("communications/calls/c1", "c1"),
        ("/communications/calls/c1/", "c1"),
        ("communications/calls/c1/", "c1"),
        ("/app/calls/c1", "c1"),
        ("app/calls/c1/", "c1"),
        ("/Communications/CALLS/c1", "c1"),  # the fixed segments in any case
        ("/APP/Calls/c1", "c1"),
        ("/communications/calls/C1", "C1"),  # the id as it is
        (" /communications/calls/c1 ", "c1"),
        ("/communications/calls/a%20b", "a%20b"),  # taken verbatim: never percent-decoded
        ("/communications/calls/421f0b00-6b1e-4b2a-9c0d-6b1e4b2a9c0d", "421f0b00-6b1e-4b2a-9c0d-6b1e4b2a9c0d"),
    ],
)
def test_the_call_id_comes_from_a_call_resource_url(url, call_id):
    assert call_id_of(url) == call_id


@pytest.mark.parametrize(
    "url",
    [
        None,
        42,
        ["/communications/calls/c1"],
        "",
        "/",
        "/communications/calls",
        "/communications/calls/",
        "/communications/calls//",
        "/communications/calls/c1//",  # one trailing slash is optional, not two
        "//communications/calls/c1",
        "/communications/calls/c1/participants/p1",
        "/communications/calls/c1/operations/o1",
        "/communications/onlineMeetings/m1",
        "/users/calls/c1",
        "/calls/c1",
        "https://graph.microsoft.com/v1.0/communications/calls/c1",
        "/communications/calls/a b",  # an id that could never be valid
        "/communications/calls/a#b",
    ],
)
def test_anything_else_is_not_a_call_resource(url):
    assert call_id_of(url) is None


# --- one item of value -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("notification", "expected"),
    [
        (item("established"), CallNotification("c1", "established", {})),
        (item("terminated"), CallNotification("c1", "terminated", {})),
        (item("established", change="deleted"), CallNotification("c1", "terminated", {})),
        (item(None, change="deleted"), CallNotification("c1", "terminated", {})),
        (item("Established"), CallNotification("c1", "established", {})),
        (item(" TERMINATED "), CallNotification("c1", "terminated", {})),
        (item("established", change="Deleted"), CallNotification("c1", "terminated", {})),
        (item("terminated", url="/app/calls/c2"), CallNotification("c2", "terminated", {})),
        (item("established", change=None), CallNotification("c1", "established", {})),  # the state decides
        (item("established", id="c1"), CallNotification("c1", "established", {})),
        (item("established", id=""), CallNotification("c1", "established", {})),
        (
            item("terminated", resultInfo={"code": 0, "subcode": 540000, "message": "bye"}),
            CallNotification("c1", "terminated", {"code": 0, "subcode": 540000, "message": "bye"}),
        ),
        (item("terminated", resultInfo="odd"), CallNotification("c1", "terminated", {})),
    ],
)
def test_a_call_notification_is_read(notification, expected):
    assert parse_item(notification) == expected


def test_property_names_and_the_odata_type_are_read_in_any_case():
    notification = {
        "ChangeType": "UPDATED",
        "RESOURCEURL": "/communications/calls/c1",
        "resourcedata": {"@ODATA.TYPE": "#Microsoft.Graph.Call", "State": "Terminated", "ResultInfo": {"Code": 200}},
    }
    assert parse_item(notification) == CallNotification("c1", "terminated", {"Code": 200})


@pytest.mark.parametrize("odata_type", ["#microsoft.graph.call", "microsoft.graph.call", "#MICROSOFT.GRAPH.CALL"])
def test_the_odata_type_may_come_without_its_hash(odata_type):
    notification = {
        "resourceUrl": "/communications/calls/c1",
        "resourceData": {"@odata.type": odata_type, "state": "established"},
    }
    assert parse_item(notification) == CallNotification("c1", "established", {})


def test_an_exact_property_name_wins_over_one_in_another_case():
    notification = {"ResourceUrl": "/communications/calls/other", **item("terminated")}  # met first
    assert parse_item(notification) == CallNotification("c1", "terminated", {})


def test_resource_data_as_a_list_gives_its_call_resource():
    participant = {"@odata.type": "#microsoft.graph.participant", "state": "terminated", "id": "p1"}
    notification = {
        "changeType": "updated",
        "resourceUrl": "/communications/calls/c1",
        "resourceData": [
            "junk",
            participant,
            {"@odata.type": CALL, "state": "established"},
            {"@odata.type": CALL, "state": "terminated"},
        ],
    }
    assert parse_item(notification) == CallNotification("c1", "established", {})  # the first call resource


@pytest.mark.parametrize(
    "notification",
    [
        pytest.param(None, id="null"),
        pytest.param("text", id="text"),
        pytest.param([item()], id="list"),
        pytest.param({}, id="empty"),
        pytest.param({k: v for k, v in item().items() if k != "resourceUrl"}, id="no resourceUrl"),
        pytest.param({**item(), "resourceUrl": "/communications/calls/c1/participants/p1"}, id="participant url"),
        pytest.param({**item(), "resourceData": None}, id="no resourceData"),
        pytest.param({**item(), "resourceData": {"state": "established"}}, id="no odata type"),
        pytest.param(
            {**item(), "resourceData": {"@odata.type": "#microsoft.graph.participant", "state": "terminated"}},
            id="participant",
        ),
        pytest.param(
            {**item(), "resourceData": {"@odata.type": "#microsoft.graph.callx", "state": "terminated"}}, id="near type"
        ),
        pytest.param({**item(), "resourceData": {"@odata.type": 1, "state": "terminated"}}, id="type not text"),
        pytest.param(
            {**item(), "resourceData": [{"@odata.type": "#microsoft.graph.participant"}]}, id="list without call"
        ),
        pytest.param({**item(), "resourceData": []}, id="empty list"),
        pytest.param(item("establishing"), id="establishing"),
        pytest.param(item("incoming"), id="incoming"),
        pytest.param(item(None), id="no state"),
        pytest.param(item(["terminated"]), id="state not text"),
    ],
)
def test_anything_else_is_not_a_call_notification(notification):
    assert parse_item(notification) is None


def test_a_resource_id_that_differs_from_the_url_is_ignored_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="shared.notifications"):
        assert parse_item(item("terminated", id="c2")) is None
    assert [r.getMessage() for r in caplog.records] == [
        "notification ignored callId=c1 reason=resourceData.id differs from resourceUrl"
    ]


# --- resultInfo as the event's graph object ----------------------------------------------------------
@pytest.mark.parametrize(
    ("result_info", "graph"),
    [
        ({}, {"code": None, "subcode": None, "message": None}),
        ({"code": 200, "subcode": 5001, "message": "hung up"}, {"code": 200, "subcode": 5001, "message": "hung up"}),
        ({"code": "403", "subcode": "7507", "message": ""}, {"code": "403", "subcode": "7507", "message": ""}),
        ({"CODE": 500, "SubCode": 1, "Message": "m"}, {"code": 500, "subcode": 1, "message": "m"}),
        ({"code": True, "subcode": False, "message": 5}, {"code": None, "subcode": None, "message": None}),
        ({"code": 1.5, "subcode": None, "message": ["m"]}, {"code": None, "subcode": None, "message": None}),
        ({"code": {"x": 1}, "other": "kept out"}, {"code": None, "subcode": None, "message": None}),
    ],
)
def test_graph_result_takes_code_subcode_and_message_and_nulls_anything_odd(result_info, graph):
    assert graph_result(result_info) == graph


# --- the Authorization header ------------------------------------------------------------------------
def _request(authorization: str | None) -> func.HttpRequest:
    headers = {} if authorization is None else {"Authorization": authorization}
    return func.HttpRequest(method="POST", url="/api/notifications", body=b"", headers=headers)


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc.def.ghi", "abc.def.ghi"), ("bearer t", "t"), ("BEARER t", "t"), ("  Bearer   t  ", "t")],
)
def test_the_bearer_token_is_read_with_the_scheme_in_any_case(header, token):
    assert bearer_token(_request(header)) == token


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "the Authorization header with Graph's bearer token is missing"),
        ("", "the Authorization header with Graph's bearer token is missing"),
        ("   ", "the Authorization header with Graph's bearer token is missing"),
        ("Bearer", "the Authorization header must be 'Bearer <token>'"),
        ("Bearer ", "the Authorization header must be 'Bearer <token>'"),
        ("Basic dXNlcjpwYXNz", "the Authorization header must be 'Bearer <token>'"),
        ("Bearer a b", "the Authorization header must be 'Bearer <token>'"),
        ("Bearer a\tb", "the Authorization header must be 'Bearer <token>'"),
        ("Bearertoken", "the Authorization header must be 'Bearer <token>'"),
        ("token-without-scheme", "the Authorization header must be 'Bearer <token>'"),
    ],
)
def test_a_missing_or_malformed_authorization_header_is_an_invalid_token(header, message):
    with pytest.raises(InvalidToken) as raised:
        bearer_token(_request(header))
    assert (raised.value.status, raised.value.code, raised.value.message) == (401, "invalidToken", message)
