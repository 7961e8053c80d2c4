"""Graph's call notifications without a token, a key or services: reading URLs, items, resultInfo and the header;
and the rules over storage in memory (registering, ending, the 24-hour memory of an end per tenant, folding)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest

from shared import registry
from shared.errors import InvalidToken, StorageUnavailable
from shared.models import CallRecord
from shared.notifications import CallNotification, apply, bearer_token, call_id_of, fold, graph_result, parse_item
from tests.fakes import FakeClock, MemoryStorage
from tests.helpers import note

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


# --- the rules, over storage in memory ---------------------------------------------------------------------
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "0b5e8a7c-3f0e-4a2b-9c1d-8e7f6a5b4c3d"
START = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TERMINATED_INFO = {"@odata.type": "#microsoft.graph.resultInfo", "code": 200, "subcode": 4521, "message": "Hung up."}


class Notified:
    """`apply` as `receive` calls it, over storage in memory with a clock of its own."""

    def __init__(self, *, default_tenant: str | None = None) -> None:
        self.storage = MemoryStorage(topic=True)
        self.clock = FakeClock(START)
        self.default_tenant = default_tenant

    def post(self, *items: Any, tenant: str = TENANT) -> dict[str, int]:
        counts = apply(
            items,
            tenant,
            calls=self.storage.calls,
            events=self.storage.event_queues,
            memory=self.storage.ends,
            default_tenant_id=self.default_tenant,
            now=self.clock,
        )
        return {name: counts[name] for name in ("registered", "removed", "ignored")}

    def register(self, call_id: str, tenant: str | None = TENANT, **metadata: str) -> CallRecord:
        record, created = registry.register_explicitly(
            self.storage.calls, self.storage.ends, call_id=call_id, tenant_id=tenant, default_tenant_id=None,
            metadata=metadata, now=self.clock(),
        )  # fmt: skip
        assert created
        return record

    def call(self, call_id: str) -> CallRecord | None:
        return self.storage.calls.get(call_id)

    def events(self) -> list[dict[str, Any]]:
        return self.storage.cleanup.events()

    def state(self) -> tuple[Any, ...]:
        return self.storage.rows.all(), self.storage.cleanup.texts[:], self.storage.ends.ends()


def result(registered: int = 0, removed: int = 0, ignored: int = 0) -> dict[str, int]:
    return {"registered": registered, "removed": removed, "ignored": ignored}


def test_established_registers_the_call_under_the_token_tenant():
    app = Notified()
    assert app.post(note("c1", "established"), tenant=TENANT) == result(registered=1)
    record = app.call("c1")
    assert record is not None and record.tenant_id == TENANT and record.metadata == {}
    assert record.registered_at == START and record.last_keepalive_at is None


def test_repeated_established_leaves_the_record_unchanged():
    app = Notified()
    app.post(note("c1", "established"))
    first = app.call("c1")
    app.clock.advance(seconds=5)
    assert app.post(note("c1", "established")) == result(ignored=1)
    assert app.call("c1") == first


def test_established_for_a_call_registered_without_tenant_keeps_it_unchanged():
    app = Notified()
    before = app.register("c1", tenant=None)
    assert app.post(note("c1", "established")) == result(ignored=1)
    assert app.call("c1") == before


def test_established_from_another_tenant_is_ignored_with_a_warning(caplog):
    app = Notified()
    app.register("c1")
    before = app.state()
    with caplog.at_level(logging.WARNING, logger="shared.notifications"):
        assert app.post(note("c1", "established"), tenant=OTHER_TENANT) == result(ignored=1)
    assert app.state() == before
    assert any("callId=c1" in r.getMessage() and "another tenant" in r.getMessage() for r in caplog.records)


def test_terminated_removes_the_call_with_one_event_on_each_queue():
    app = Notified()
    created = app.register("c1", bot="echo")
    assert app.post(note("c1", "terminated", change_type="deleted", result_info=TERMINATED_INFO)) == result(removed=1)
    assert app.call("c1") is None and app.storage.rows.all() == []
    [event] = app.events()
    assert event["eventId"] == created.registration_id and event["callId"] == "c1" and event["tenantId"] == TENANT
    assert event["reason"] == "terminatedNotification" and event["detectedAt"] == "2026-11-27T12:00:00.000Z"
    assert event["graph"] == {"code": 200, "subcode": 4521, "message": "Hung up."}
    assert event["metadata"] == {"bot": "echo"} and event["lastKeepAliveAt"] is None
    assert app.storage.call_events is not None and app.storage.call_events.events() == [event]
    assert app.storage.ends.recently_ended("c1", TENANT, app.clock())


def test_terminated_without_result_info_gives_a_null_graph():
    app = Notified()
    app.post(note("c1", "established"))
    assert app.post(note("c1", "terminated")) == result(removed=1)
    [event] = app.events()
    assert event["graph"] == {"code": None, "subcode": None, "message": None}


def test_changetype_deleted_on_a_call_resource_means_terminated():
    app = Notified()
    app.post(note("c1", "established"))
    assert app.post(note("c1", None, change_type="deleted")) == result(removed=1)
    assert app.call("c1") is None and len(app.events()) == 1


def test_terminated_from_another_tenant_is_ignored_with_a_warning(caplog):
    app = Notified()
    app.post(note("c1", "established"))
    before = app.state()
    with caplog.at_level(logging.WARNING, logger="shared.notifications"):
        assert app.post(note("c1", "terminated"), tenant=OTHER_TENANT) == result(ignored=1)
    assert app.state() == before
    assert any(f"callTenantId={TENANT}" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_terminated_of_a_call_without_tenant_and_no_graph_tenant_id_is_ignored_with_a_warning(caplog):
    app = Notified()
    app.register("c1", tenant=None)  # the tenant cannot be checked: a token of any tenant could end it
    before = app.state()
    with caplog.at_level(logging.WARNING, logger="shared.notifications"):
        for tenant in (TENANT, OTHER_TENANT):
            assert app.post(note("c1", "terminated"), tenant=tenant) == result(ignored=1)
    assert app.state() == before  # still registered, no event, no memory of an end
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "shared.notifications"
    ]
    assert len(warnings) == 2 and all("callId=c1" in w and "GRAPH_TENANT_ID" in w for w in warnings)


def test_terminated_of_a_call_without_tenant_compares_with_graph_tenant_id():
    app = Notified(default_tenant=TENANT)
    registered = app.register("c1", tenant=None)  # stored before GRAPH_TENANT_ID was set
    assert app.post(note("c1", "terminated"), tenant=OTHER_TENANT) == result(ignored=1)
    assert app.call("c1") == registered and app.events() == []
    assert app.post(note("c1", "terminated"), tenant=TENANT) == result(removed=1)
    [event] = app.events()
    assert event["tenantId"] == TENANT and event["eventId"] == registered.registration_id


def test_terminated_of_an_unknown_call_gives_no_event_but_remembers_the_end():
    app = Notified()
    assert app.post(note("c9", "terminated")) == result(ignored=1)
    assert app.events() == []
    assert app.storage.ends.ends() == [("c9", TENANT, START, "terminatedNotification")]
    assert app.post(note("c9", "established")) == result(ignored=1)
    assert app.call("c9") is None


# --- the tombstone: a recent end blocks a late `established` of the same tenant, for 24 hours -----------------
def test_a_late_established_after_terminated_leaves_the_call_ended():
    app = Notified()
    app.post(note("c1", "established"))
    app.post(note("c1", "terminated", result_info=TERMINATED_INFO))
    assert app.post(note("c1", "established")) == result(ignored=1)
    assert app.call("c1") is None and len(app.events()) == 1


def test_an_end_under_one_tenant_never_blocks_another():
    app = Notified()
    app.post(note("c1", "terminated"))
    assert app.post(note("c1", "established"), tenant=OTHER_TENANT) == result(registered=1)
    record = app.call("c1")
    assert record is not None and record.tenant_id == OTHER_TENANT


def test_the_memory_of_an_end_lasts_24_hours():
    app = Notified()
    app.post(note("c1", "terminated"))
    app.clock.advance(hours=23, minutes=59)
    assert app.post(note("c1", "established")) == result(ignored=1)
    app.clock.advance(minutes=2)
    assert app.post(note("c1", "established")) == result(registered=1)


def test_an_explicit_registration_clears_the_memory_of_an_end():
    app = Notified()
    app.post(note("c1", "established"))
    app.post(note("c1", "terminated"))
    app.register("c1")  # POST /api/calls
    assert app.storage.ends.ends() == []
    assert app.post(note("c1", "established")) == result(ignored=1)  # registered already: unchanged
    registry.unregister(app.storage.calls, "c1")  # DELETE /api/calls/c1 leaves no memory of an end
    assert app.post(note("c1", "established")) == result(registered=1)


# --- a payload: folded per call, counted exactly -------------------------------------------------------------
def test_terminated_and_established_in_one_payload_leave_the_call_ended():
    app = Notified()
    assert app.post(note("c1", "terminated"), note("c1", "established")) == result(ignored=2)
    assert app.call("c1") is None


def test_items_of_one_call_are_folded_to_its_last_state():
    app = Notified()
    assert app.post(note("c1", "established"), note("c1", "established"), note("c2", "established")) == result(
        registered=2, ignored=1
    )
    assert fold([]) == []


def test_a_mixed_payload_answers_exact_counts():
    app = Notified()
    app.post(note("old", "established"))
    counted = app.post(
        note("a", "established"),
        note("b", "established"),
        note("old", "terminated"),
        note("c", "establishing"),
        {"changeType": "created", "resourceUrl": "/communications/calls/a/participants", "resourceData": []},
        note("unknown", "terminated"),
    )
    assert counted == result(registered=2, removed=1, ignored=3)
    assert {row["CallId"] for row in app.storage.rows.all()} == {"a", "b"}


def test_storage_failing_part_way_raises_and_the_resent_payload_finishes_the_work():
    app = Notified()
    app.post(note("c1", "established"))
    app.storage.faults.fail("calls.delete")
    with pytest.raises(StorageUnavailable):
        app.post(note("c1", "terminated"), note("c2", "established"))
    assert app.call("c1") is not None and app.call("c2") is None  # the 503 stopped it at the failing step
    assert app.post(note("c1", "terminated"), note("c2", "established")) == result(registered=1, removed=1)
    assert [e["callId"] for e in app.events()] == ["c1", "c1"] and len({e["eventId"] for e in app.events()}) == 1


# --- lenient reading, through the rules --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    ["/communications/calls/{id}", "communications/calls/{id}", "/app/calls/{id}", "app/calls/{id}",
     "/Communications/CALLS/{id}", "/APP/calls/{id}/"],
)  # fmt: skip
def test_every_form_of_a_call_resource_url_registers_the_call(url):
    app = Notified()
    call_id = "491f0b00-ffff-4bc9-a43e-b226498ec22a"
    assert app.post(note(call_id, "established", url=url.format(id=call_id))) == result(registered=1)
    assert app.call(call_id) is not None


def test_odd_casing_of_names_and_values_and_unknown_fields():
    established = {
        "ChangeType": "UPDATED",
        "RESOURCEURL": "/App/Calls/c1",
        "resourcedata": {"@ODATA.TYPE": "#Microsoft.Graph.CALL", "State": "EstablisheD", "somethingNew": [1, 2]},
        "clientState": "abc",
        "subscriptionId": "s",
        "unknown": {"nested": True},
    }
    terminated = {
        "changeType": "Deleted",
        "resourceUrl": "communications/calls/c2",
        "resourceData": {
            "@Odata.Type": "#MICROSOFT.GRAPH.CALL",
            "STATE": "Terminated",
            "ResultInfo": {"Code": 500, "SUBCODE": 8510, "Message": "Gone."},
        },
    }
    app = Notified()
    app.register("c2")
    assert app.post(established, terminated) == result(registered=1, removed=1)
    assert app.call("c1") is not None and app.call("c2") is None
    [event] = app.events()
    assert event["graph"] == {"code": 500, "subcode": 8510, "message": "Gone."}


def test_list_valued_resource_data_with_a_call_resource():
    item = note("c1", "established")
    item["resourceData"] = [{"@odata.type": "#microsoft.graph.participant", "id": "p1"}, item["resourceData"]]
    app = Notified()
    assert app.post(item) == result(registered=1)
    assert app.call("c1") is not None


@pytest.mark.parametrize(
    "item",
    [
        pytest.param(
            {
                "changeType": "updated",
                "resourceUrl": "/communications/calls/c1/participants",
                "resourceData": [{"@odata.type": "#microsoft.graph.participant", "id": "p1"}],
            },
            id="participant-update",
        ),
        pytest.param(note("c1", "established", url="/communications/calls/c1/participants"), id="sub-resource-url"),
        pytest.param(note("c1", "established", url="/communications/onlineMeetings/c1"), id="other-resource"),
        pytest.param(note("c1", "established", url="/users/c1"), id="other-url"),
        pytest.param(note("c1", "established", url="https://graph.microsoft.com/v1.0/app/calls/c1"), id="absolute"),
        pytest.param(note("a b", "established", url="/app/calls/a b"), id="invalid-call-id"),
        pytest.param(note("c1", "established", url="/app/calls/"), id="empty-call-id"),
        pytest.param(note("c1", "established", id="c2"), id="resource-id-differs"),
        pytest.param(note("c1", "establishing"), id="other-state"),
        pytest.param(note("c1", None), id="no-state"),
        pytest.param(note("c1", 7), id="state-not-a-string"),
        pytest.param({**note("c1", "established"), "resourceData": None}, id="no-resource-data"),
        pytest.param(
            {**note("c1", "established"), "resourceData": {"@odata.type": "#microsoft.graph.participant"}},
            id="not-a-call",
        ),
        pytest.param({**note("c1", "established"), "resourceData": {"state": "established"}}, id="no-odata-type"),
        pytest.param({**note("c1", "established"), "resourceUrl": None}, id="no-resource-url"),
        pytest.param("established", id="not-an-object"),
        pytest.param(None, id="null"),
        pytest.param([note("c1", "established")], id="a-list"),
    ],
)
def test_items_that_are_not_call_notifications_are_ignored_and_change_nothing(item):
    app = Notified()
    assert app.post(item) == result(ignored=1)
    assert app.state() == ([], [], [])
