"""Pure logic for untrusted values: log-safe quoting, Graph error bodies, event bounds, folding, settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.errors import UnreadableRow
from shared.events import MAX_GRAPH_STRING, call_ended_event
from shared.graph import CODE_LIMIT, GraphClient
from shared.logsafe import safe
from shared.models import CallRecord, call_id_problem, call_keys
from shared.notifications import CallNotification, call_id_of, fold

NOW = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("19:meeting_abc@thread.v2", "19:meeting_abc@thread.v2"),
        ("a b", '"a\\u0020b"'),
        ("x\ncallId=y", '"x\\ncallId\\u003dy"'),
        ('q"=tenantId=evil', '"q\\"\\u003dtenantId\\u003devil"'),
        ("\u202eabc", '"\\u202eabc"'),
        (None, "null"),
    ],
)
def test_a_logged_value_is_one_token_that_cannot_end_the_line_or_add_a_pair(value, shown):
    assert safe(value) == shown
    assert not any(ch.isspace() for ch in safe(value))


@pytest.mark.parametrize(
    "value", [".", "..", "a\u200bb", "a\u202eb", "\ufeffa", "a\u2066b", "a\u00adb", "a\u200db", "\u061c"]
)
def test_dot_segments_and_format_characters_are_not_call_ids(value):
    assert call_id_problem(value) is not None


@pytest.mark.parametrize("value", ["...", ".a", "a.", "é", "通話", "😀"])
def test_other_dots_and_letters_are_call_ids(value):
    assert call_id_problem(value) is None


def test_graph_request_id_comes_from_the_header_else_the_inner_error():
    body = {"error": {"code": "itemNotFound", "message": "m", "innerError": {"requestId": "rid-body"}}}
    assert GraphClient._read(404, {}, json.dumps(body).encode()).request_id == "rid-body"
    body["error"]["innerError"] = {"request-id": "rid-dash", "requestId": "rid-camel"}
    assert GraphClient._read(404, {}, json.dumps(body).encode()).request_id == "rid-dash"
    assert GraphClient._read(404, {"request-id": "rid-header"}, json.dumps(body).encode()).request_id == "rid-header"


def test_a_huge_graph_error_code_is_bounded_in_last_error():
    body = {"error": {"code": "C" * 100_000, "message": "M" * 100_000}}
    answer = GraphClient._read(400, {}, json.dumps(body).encode())
    assert answer.code is not None and len(answer.code) == CODE_LIMIT
    assert len(answer.error() or "") <= CODE_LIMIT + 4


def test_every_string_of_the_events_graph_is_cut():
    record = CallRecord("c", None, NOW, "r")
    graph = {"status": 404, "code": "C" * 5000, "message": "M" * 5000, "requestId": "R" * 5000, "subcode": 7}
    event = call_ended_event(record, tenant_id=None, detected_at=NOW, reason="x", graph=graph)
    assert {k: len(v) for k, v in event["graph"].items() if isinstance(v, str)} == dict.fromkeys(
        ("code", "message", "requestId"), MAX_GRAPH_STRING
    )
    assert event["graph"]["status"] == 404 and event["graph"]["subcode"] == 7


def test_folding_keeps_one_notification_per_call_and_an_end_wins():
    def n(call_id: str, event: str) -> CallNotification:
        return CallNotification(call_id, event, {})

    folded = fold([n("a", "established"), n("b", "terminated"), n("a", "terminated"), n("b", "established")])
    assert [(x.call_id, x.event) for x in folded] == [("a", "terminated"), ("b", "terminated")]
    assert [(x.call_id, x.event) for x in fold([n("a", "established")] * 100)] == [("a", "established")]


@pytest.mark.parametrize("url", ["/app/calls/c1", "app/calls/c1/", "/communications/calls/c1"])
def test_call_id_of_resource_forms(url):
    assert call_id_of(url) == "c1"


@pytest.mark.parametrize("url", ["/app/calls/..", "/app/calls/a\u202eb", "/app/calls/", "/app/users/c1"])
def test_call_id_of_refuses_odd_ids(url):
    assert call_id_of(url) is None


def _row(call_id: str = "c1", **changes: object) -> dict[str, object]:
    partition_key, row_key = call_keys(call_id)
    row: dict[str, object] = {
        "PartitionKey": partition_key,
        "RowKey": row_key,
        "CallId": call_id,
        "RegisteredAt": NOW,
        "RegistrationId": "3f1c1a52-7a39-4a8e-9a7e-3c1b0f2f3f3f",
        "ConsecutiveFailures": 0,
        "Metadata": "{}",
    }
    row.update(changes)
    return {k: v for k, v in row.items() if v is not None}


def test_a_row_the_app_wrote_is_read():
    assert CallRecord.from_entity(_row()).call_id == "c1"
    assert CallRecord.from_entity(_row(RegisteredAt="2025-01-01T00:00:00.000Z")).registered_at == NOW


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"CallId": None}, "CallId is missing or not a valid callId"),
        ({"CallId": 5}, "CallId is missing or not a valid callId"),
        ({"RowKey": "0" * 64}, "PartitionKey and RowKey are not those of its CallId"),
        ({"PartitionKey": "99"}, "PartitionKey and RowKey are not those of its CallId"),
        ({"RegisteredAt": "soon"}, "RegisteredAt is not a date"),
        ({"RegisteredAt": None}, "RegisteredAt is not a date"),
        ({"RegisteredAt": datetime(1500, 1, 1, tzinfo=UTC)}, "RegisteredAt is not a date from 1601 to 9999"),
        ({"RegistrationId": ""}, "RegistrationId is missing or not a GUID"),
        ({"TenantId": "nope"}, "TenantId is not a GUID"),
        ({"LastStatus": True}, "LastStatus is not an integer from 100 to 999"),
        ({"LastStatus": 1000}, "LastStatus is not an integer from 100 to 999"),
        ({"ConsecutiveFailures": 1.5}, "ConsecutiveFailures is not an integer from 0 to 2147483647"),
        ({"Metadata": "[]"}, "Metadata is not a JSON object of strings"),
        ({"Metadata": "{"}, "Metadata is not a JSON object of strings"),
        ({"Metadata": 5}, "Metadata is not a JSON object of strings"),
        (
            {"Metadata": '{"a": [1]}'},
            "Metadata is not what registration accepts: metadata must be an object whose values are strings",
        ),
        ({"LastError": b"x"}, "LastError is not a string"),
        ({"LastKeepAliveAt": 12}, "LastKeepAliveAt is not a date"),
    ],
)
def test_a_row_the_app_cannot_read_raises_unreadable_row_saying_why(changes, reason):
    """The reason is what the WARNING of a skipped row says (`reason=...`): the property, never its value."""
    with pytest.raises(UnreadableRow) as unreadable:
        CallRecord.from_entity(_row(**changes))
    assert unreadable.value.reason == reason


@pytest.mark.parametrize(
    "stored",
    [
        datetime(2025, 1, 1, 0, 0),  # no timezone: taken as UTC
        datetime(2025, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2))),  # another timezone: converted
        "2025-01-01T00:00:00Z",
        "2025-01-01T01:00:00+01:00",
    ],
)
def test_a_stored_time_is_read_as_utc_whatever_form_it_was_stored_in(stored):
    registered = CallRecord.from_entity(_row(RegisteredAt=stored)).registered_at
    assert registered == datetime(2025, 1, 1, tzinfo=UTC) and registered.tzinfo is UTC


def test_a_last_error_of_exactly_256_characters_is_read_whole_and_a_longer_one_cut_to_256():
    whole = CallRecord.from_entity(_row(LastError="e" * 256)).last_error
    cut = CallRecord.from_entity(_row(LastError="e" * 257)).last_error
    assert whole == "e" * 256 and cut == "e" * 253 + "..."
