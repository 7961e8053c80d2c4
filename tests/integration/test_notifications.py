"""`POST /api/notifications` against real Azurite, with tokens signed by a key served from a local OpenID configuration.

The OpenID stand-in comes from `tests.standins.fixtures` (`openid`), on the session's one test CA.
Token times are real (PyJWT reads the clock itself); the app's clock (key cache, ended-call memory) is a
fake one the tests move forward.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

from shared.context import Context
from shared.models import CallRecord, utc_now
from tests.azurite import decode_event
from tests.conftest import ContextFactory
from tests.fakes import FakeClock, RequestCounter
from tests.host import FunctionHost, body_of
from tests.integration.test_http_api import assert_error
from tests.standins.openid import OpenIdStandin, SigningKey, tamper
from tests.standins.server import Reply

pytestmark = pytest.mark.integration

CLIENT_ID = "6a1c2b3d-0000-4000-8000-00000000b07a"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "0b5e8a7c-3f0e-4a2b-9c1d-8e7f6a5b4c3d"
EVENT_FIELDS = {
    "schemaVersion", "type", "eventId", "callId", "tenantId", "registeredAt", "lastKeepAliveAt", "detectedAt",
    "reason", "graph", "metadata",
}  # fmt: skip


@dataclass
class App:
    context: Context
    clock: FakeClock
    openid: OpenIdStandin
    host: FunctionHost
    connection_string: str

    def token(self, *, tenant: str = TENANT, **claims: Any) -> str:
        return self.openid.sign(self.openid.claims(audience=CLIENT_ID, tenant=tenant, **claims))

    def post(self, body: Any, *, token: str | None = None, authorization: str | None = None, **claims: Any):
        if authorization is None:
            authorization = "Bearer " + (token if token is not None else self.token(**claims))
        headers = {"Authorization": authorization} if authorization else {}
        return self.host.request("POST", "/api/notifications", body=body, headers=headers)

    def register(self, call_id: str, **fields: Any):
        return self.host.request("POST", "/api/calls", body={"callId": call_id, **fields})

    def call(self, call_id: str) -> dict[str, Any] | None:
        response = self.host.request("GET", "/api/calls/" + call_id)
        return body_of(response) if response.status_code == 200 else None

    def entities(self, table: str | None = None) -> list[dict[str, Any]]:
        return sorted(
            (dict(entity) for entity in self.context.storage.table(table).list_entities()), key=lambda e: e["RowKey"]
        )

    def events(self) -> list[dict[str, Any]]:
        """Every message of the cleanup queue, decoded from base64 text to JSON (left on the queue)."""
        queue = QueueClient.from_connection_string(self.connection_string, self.context.settings.cleanup_queue_name)
        try:
            return [decode_event(message.content) for message in queue.peek_messages(max_messages=32)]
        except ResourceNotFoundError:
            return []

    def state(self) -> tuple[Any, ...]:
        """Everything a notification could change: both tables and the cleanup queue."""
        return self.entities(), self.entities(self.context.settings.ended_table_name), self.events()


@pytest.fixture
def app(make_context: ContextFactory, openid: OpenIdStandin, host: FunctionHost, azurite: Any) -> App:
    clock = FakeClock(utc_now())  # the app's clock: starts now, moves only when told
    context = make_context(
        install=True,
        now=clock,
        on_storage_request=RequestCounter(),
        GRAPH_CLIENT_ID=CLIENT_ID,
        GRAPH_NOTIFICATION_OPENID_URL=openid.config_url,
    )
    return App(context, clock, openid, host, azurite.connection_string)


def note(
    call_id: str,
    state: Any,
    *,
    change_type: str = "updated",
    url: str | None = None,
    result_info: dict[str, Any] | None = None,
    **resource: Any,
) -> dict[str, Any]:
    """One notification item about a call, as Graph sends it."""
    data: dict[str, Any] = {"@odata.type": "#microsoft.graph.call", "@odata.id": "/app/calls/" + call_id, **resource}
    if state is not None:
        data["state"] = state
    if result_info is not None:
        data["resultInfo"] = result_info
    return {
        "changeType": change_type,
        "resourceUrl": url if url is not None else "/communications/calls/" + call_id,
        "resourceData": data,
    }


def payload(*items: dict[str, Any]) -> dict[str, Any]:
    return {"value": list(items)}


def counts(response: Any) -> Any:
    assert response.status_code == 202, response.get_body()
    assert response.mimetype == "application/json"
    return body_of(response)


def result(registered: int = 0, removed: int = 0, ignored: int = 0) -> dict[str, int]:
    return {"registered": registered, "removed": removed, "ignored": ignored}


TERMINATED_INFO = {"@odata.type": "#microsoft.graph.resultInfo", "code": 200, "subcode": 4521, "message": "Hung up."}


# --- established and terminated -----------------------------------------------------------------
def test_established_registers_the_call_under_the_token_tenant(app):
    response = app.post(payload(note("c1", "established")), tenant=TENANT.upper())

    assert counts(response) == result(registered=1)
    record = app.call("c1")
    assert record is not None
    assert record["tenantId"] == TENANT
    assert record["metadata"] == {} and record["lastKeepAliveAt"] is None


def test_repeated_established_leaves_the_record_unchanged(app):
    app.post(payload(note("c1", "established")))
    first = app.call("c1")
    app.clock.advance(seconds=5)

    assert counts(app.post(payload(note("c1", "established")))) == result(ignored=1)
    assert app.call("c1") == first


def test_established_for_a_call_registered_without_tenant_keeps_it_unchanged(app):
    before = body_of(app.register("c1"))
    assert before["tenantId"] is None

    assert counts(app.post(payload(note("c1", "established")))) == result(ignored=1)
    assert app.call("c1") == before


def test_terminated_removes_the_call_with_one_event(app):
    created = body_of(app.register("c1", tenantId=TENANT, metadata={"bot": "echo"}))
    [entity] = app.entities()

    response = app.post(payload(note("c1", "terminated", change_type="deleted", result_info=TERMINATED_INFO)))

    assert counts(response) == result(removed=1)
    assert app.entities() == []
    [event] = app.events()
    assert set(event) == EVENT_FIELDS
    assert event["schemaVersion"] == 1 and event["type"] == "callEnded"
    assert event["eventId"] == entity["RegistrationId"]
    assert event["callId"] == "c1" and event["tenantId"] == TENANT
    assert event["registeredAt"] == created["registeredAt"] and event["lastKeepAliveAt"] is None
    assert event["detectedAt"].endswith("Z")
    assert event["reason"] == "terminatedNotification"
    assert event["graph"] == {"code": 200, "subcode": 4521, "message": "Hung up."}
    assert event["metadata"] == {"bot": "echo"}


def test_the_event_queue_message_is_base64_text(app):
    app.post(payload(note("c1", "established")))
    app.post(payload(note("c1", "terminated")))
    queue = QueueClient.from_connection_string(app.connection_string, app.context.settings.cleanup_queue_name)
    [message] = queue.peek_messages()  # no decode policy: the raw text

    assert decode_event(message.content)["reason"] == "terminatedNotification"  # base64 of the JSON


def test_terminated_without_result_info_gives_a_null_graph(app):
    app.post(payload(note("c1", "established")))

    assert counts(app.post(payload(note("c1", "terminated")))) == result(removed=1)
    [event] = app.events()
    assert event["graph"] == {"code": None, "subcode": None, "message": None}
    assert event["tenantId"] == TENANT


def test_terminated_of_a_call_without_tenant_and_no_graph_tenant_id_is_ignored_with_a_warning(app, caplog):
    app.register("c1")  # no tenantId, and this app has no GRAPH_TENANT_ID: the tenant cannot be checked
    before = app.state()

    with caplog.at_level(logging.WARNING, logger="shared.notifications"):
        for tenant in (TENANT, OTHER_TENANT):
            assert counts(app.post(payload(note("c1", "terminated")), tenant=tenant)) == result(ignored=1)

    assert app.state() == before  # still registered, no event, no memory of an end
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "shared.notifications"
    ]
    assert len(warnings) == 2 and all("callId=c1" in w and "GRAPH_TENANT_ID" in w for w in warnings)


def test_terminated_of_a_call_without_tenant_compares_with_graph_tenant_id(app, make_context, caplog):
    app.context = make_context(
        install=True,
        now=app.clock,
        GRAPH_CLIENT_ID=CLIENT_ID,
        GRAPH_NOTIFICATION_OPENID_URL=app.openid.config_url,
        GRAPH_TENANT_ID=TENANT,
    )
    registration = "5f0c1d2e-3b4a-4c5d-8e6f-7a8b9c0d1e2f"
    app.context.calls.insert(CallRecord("c1", None, app.clock(), registration))  # stored before GRAPH_TENANT_ID was set
    before = app.state()

    with caplog.at_level(logging.WARNING, logger="shared.notifications"):
        assert counts(app.post(payload(note("c1", "terminated")), tenant=OTHER_TENANT)) == result(ignored=1)
    assert app.state() == before
    assert any(f"callTenantId={TENANT}" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)

    assert counts(app.post(payload(note("c1", "terminated")), tenant=TENANT)) == result(removed=1)
    [event] = app.events()
    assert event["tenantId"] == TENANT and event["eventId"] == registration


def test_a_late_established_after_terminated_leaves_the_call_ended(app):
    app.post(payload(note("c1", "established")))
    app.post(payload(note("c1", "terminated", result_info=TERMINATED_INFO)))

    assert counts(app.post(payload(note("c1", "established")))) == result(ignored=1)
    assert app.call("c1") is None
    assert len(app.events()) == 1


def test_terminated_and_established_in_one_payload_leave_the_call_ended(app):
    response = app.post(payload(note("c1", "terminated"), note("c1", "established")))

    assert counts(response) == result(ignored=2)
    assert app.call("c1") is None


def test_terminated_of_an_unknown_call_gives_no_event_and_a_later_established_is_ignored(app):
    assert counts(app.post(payload(note("c9", "terminated")))) == result(ignored=1)
    assert app.events() == []
    [ended] = app.entities(app.context.settings.ended_table_name)
    assert ended["CallId"] == "c9" and ended["Reason"] == "terminatedNotification" and ended["TenantId"] == TENANT

    assert counts(app.post(payload(note("c9", "established")))) == result(ignored=1)
    assert app.call("c9") is None


def test_the_memory_of_an_end_lasts_24_hours(app):
    app.post(payload(note("c1", "terminated")))
    app.clock.advance(hours=23, minutes=59)
    assert counts(app.post(payload(note("c1", "established")))) == result(ignored=1)

    app.clock.advance(minutes=2)
    assert counts(app.post(payload(note("c1", "established")))) == result(registered=1)


def test_an_explicit_registration_clears_the_memory_of_an_end(app):
    app.post(payload(note("c1", "established")))
    app.post(payload(note("c1", "terminated")))

    response = app.register("c1", tenantId=TENANT)

    assert response.status_code == 201
    assert app.entities(app.context.settings.ended_table_name) == []
    assert counts(app.post(payload(note("c1", "established")))) == result(ignored=1)
    assert app.call("c1") is not None


def test_terminated_from_another_tenant_is_ignored_with_a_warning(app, caplog):
    app.post(payload(note("c1", "established")))
    before = app.state()

    with caplog.at_level(logging.WARNING, logger="shared.notifications"):
        response = app.post(payload(note("c1", "terminated")), tenant=OTHER_TENANT)

    assert counts(response) == result(ignored=1)
    assert app.state() == before
    assert any("callId=c1" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_established_from_another_tenant_is_ignored_with_a_warning(app, caplog):
    app.register("c1", tenantId=TENANT)
    before = app.state()

    with caplog.at_level(logging.WARNING, logger="shared.notifications"):
        response = app.post(payload(note("c1", "established")), tenant=OTHER_TENANT)

    assert counts(response) == result(ignored=1)
    assert app.state() == before
    assert any("callId=c1" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_changetype_deleted_on_a_call_resource_means_terminated(app):
    app.post(payload(note("c1", "established")))

    assert counts(app.post(payload(note("c1", None, change_type="deleted")))) == result(removed=1)
    assert app.call("c1") is None
    assert len(app.events()) == 1


def test_a_mixed_payload_answers_exact_counts(app):
    app.post(payload(note("old", "established")))

    response = app.post(
        payload(
            note("a", "established"),
            note("b", "established"),
            note("old", "terminated"),
            note("c", "establishing"),
            {"changeType": "created", "resourceUrl": "/communications/calls/a/participants", "resourceData": []},
            note("unknown", "terminated"),
        )
    )

    assert counts(response) == result(registered=2, removed=1, ignored=3)
    assert {entity["CallId"] for entity in app.entities()} == {"a", "b"}


# --- lenient reading --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "/communications/calls/{id}",
        "communications/calls/{id}",
        "/app/calls/{id}",
        "app/calls/{id}",
        "/Communications/CALLS/{id}",
        "/APP/calls/{id}/",
    ],
)
def test_resource_url_forms(app, url):
    call_id = "491f0b00-ffff-4bc9-a43e-b226498ec22a"

    response = app.post(payload(note(call_id, "established", url=url.format(id=call_id))))

    assert counts(response) == result(registered=1)
    assert app.call(call_id) is not None


def test_odd_casing_of_names_and_values_and_unknown_fields(app):
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
    app.register("c2", tenantId=TENANT)

    response = app.post({"Value": [established, terminated], "extra": "ignored"})

    assert counts(response) == result(registered=1, removed=1)
    assert app.call("c1") is not None and app.call("c2") is None
    [event] = app.events()
    assert event["graph"] == {"code": 500, "subcode": 8510, "message": "Gone."}


def test_list_valued_resource_data_with_a_call_resource(app):
    item = note("c1", "established")
    participant = {"@odata.type": "#microsoft.graph.participant", "id": "p1"}
    item["resourceData"] = [participant, item["resourceData"]]

    assert counts(app.post(payload(item))) == result(registered=1)
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
        pytest.param(
            {**note("c1", "established"), "resourceData": {"state": "established"}},
            id="no-odata-type",
        ),
        pytest.param({**note("c1", "established"), "resourceUrl": None}, id="no-resource-url"),
        pytest.param("established", id="not-an-object"),
        pytest.param(None, id="null"),
        pytest.param([note("c1", "established")], id="a-list"),
    ],
)
def test_items_that_are_not_call_notifications_are_ignored(app, item):
    response = app.post(payload(item))

    assert counts(response) == result(ignored=1)
    assert app.entities() == []


def test_an_empty_value_list_is_accepted(app):
    assert counts(app.post({"value": []})) == result()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param(b"", id="empty"),
        pytest.param([], id="array"),
        pytest.param({}, id="no-value"),
        pytest.param({"value": None}, id="value-null"),
        pytest.param({"value": {"changeType": "updated"}}, id="value-object"),
        pytest.param({"value": "x"}, id="value-string"),
        pytest.param("value", id="string"),
    ],
)
def test_malformed_payloads_are_invalid_requests(app, body):
    before = app.state()

    assert_error(app.post(body), 400, "invalidRequest")
    assert app.state() == before


def test_a_body_over_64_kib_is_too_large(app):
    body = json.dumps(payload(note("c1", "established"), {"padding": "x" * 65_536}))

    assert_error(app.post(body), 413, "payloadTooLarge")
    assert app.call("c1") is None


def test_a_body_of_exactly_64_kib_is_accepted(app):
    start = json.dumps(payload(note("c1", "established")))[:-2] + ', {"padding": "'
    body = start + "x" * (65_536 - len(start) - 4) + '"}]}'
    assert len(body.encode()) == 65_536

    assert counts(app.post(body)) == result(registered=1, ignored=1)


def test_the_token_is_checked_before_the_body(app):
    assert_error(app.post(b"x" * 70_000, authorization="Bearer nope"), 401, "invalidToken")
    assert_error(app.post(b"{not json", authorization=""), 401, "invalidToken")


# --- tokens ---------------------------------------------------------------------------------------------
def _bad_tokens(app: App) -> dict[str, str]:
    standin = app.openid
    good = app.token()
    claims = standin.claims(audience=CLIENT_ID, tenant=TENANT)
    return {
        "expired-beyond-leeway": app.token(lifetime=-301 - 30),
        "not-yet-valid-beyond-leeway": app.token(nbf=int(utc_now().timestamp()) + 400),
        "wrong-audience": standin.sign(standin.claims(audience=str(uuid.uuid4()), tenant=TENANT)),
        "wrong-issuer": app.token(iss="https://login.microsoftonline.com/common/v2.0"),
        "issuer-case": app.token(iss="https://API.botframework.com"),
        "unsigned-alg-none": standin.sign(claims, alg="none"),
        "hs256-with-the-public-key": standin.sign(claims, alg="HS256"),
        "tampered-payload": tamper(good, tid=OTHER_TENANT),
        "tampered-signature": good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
        "signed-by-another-key": standin.sign(claims, kid=standin.current.kid, key=SigningKey.generate()),
        "missing-tid": app.token(tid=None),
        "tid-not-a-guid": app.token(tenant="contoso.onmicrosoft.com"),
        "missing-exp": app.token(exp=None),
        "missing-aud": app.token(aud=None),
        "missing-iss": app.token(iss=None),
        "missing-kid": standin.sign(claims, headers={"kid": None}),
        "garbage": "not-a-jwt",
        "two-segments": ".".join(good.split(".")[:2]),
    }


BAD_TOKENS = {
    "expired-beyond-leeway": "token has expired",
    "not-yet-valid-beyond-leeway": "token is not valid yet",
    "wrong-audience": "token audience is not this app",
    "wrong-issuer": "token issuer is not accepted",
    "issuer-case": "token issuer is not accepted",
    "unsigned-alg-none": "token algorithm must be RS256",
    "hs256-with-the-public-key": "token algorithm must be RS256",
    "tampered-payload": "token signature is invalid",
    "tampered-signature": "token signature is invalid",
    "signed-by-another-key": "token signature is invalid",
    "missing-tid": "token has no tid claim",
    "tid-not-a-guid": "token tid claim is not a tenant id",
    "missing-exp": "token has no exp claim",
    "missing-aud": "token has no aud claim",
    "missing-iss": "token has no iss claim",
    "missing-kid": "token has no key id",
    "garbage": "token is malformed",
    "two-segments": "token is malformed",
}


@pytest.fixture
def busy(app: App) -> App:
    """A registered call (c1) and a pending end, so a wrongly accepted request would change something."""
    app.post(payload(note("c1", "established")))
    return app


def _changing_payload() -> dict[str, Any]:
    return payload(note("new", "established"), note("c1", "terminated"))


@pytest.mark.parametrize(("case", "message"), BAD_TOKENS.items(), ids=list(BAD_TOKENS))
def test_bad_tokens_are_refused_and_nothing_changes(busy, case, message, caplog):
    token = _bad_tokens(busy)[case]
    before = busy.state()

    with caplog.at_level(logging.DEBUG):
        response = busy.post(_changing_payload(), token=token)

    assert_error(response, 401, "invalidToken")
    assert body_of(response)["error"]["message"] == message
    assert busy.state() == before
    assert token not in response.get_body().decode()
    for part in filter(None, token.split(".")):
        assert part not in caplog.text


@pytest.mark.parametrize(
    "authorization",
    ["", "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token abc", "Bearer a b"],
    ids=["missing", "basic", "no-token", "blank-token", "other-scheme", "two-tokens"],
)
def test_a_missing_or_malformed_authorization_header_is_refused(busy, authorization):
    before = busy.state()

    assert_error(busy.post(_changing_payload(), authorization=authorization), 401, "invalidToken")
    assert busy.state() == before


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(app, scheme):
    response = app.post(payload(note("c1", "established")), authorization=f"{scheme} {app.token()}")

    assert counts(response) == result(registered=1)


def test_an_expired_token_within_the_5_minute_leeway_is_accepted(app):
    assert counts(app.post(payload(note("c1", "established")), lifetime=-240)) == result(registered=1)


def test_the_graph_issuer_is_accepted(app):
    response = app.post(payload(note("c1", "established")), iss="https://graph.microsoft.com")

    assert counts(response) == result(registered=1)


def test_an_audience_list_holding_the_client_id_is_accepted(app):
    response = app.post(payload(note("c1", "established")), aud=["https://other", CLIENT_ID])

    assert counts(response) == result(registered=1)


def test_keys_are_cached(app):
    assert counts(app.post(payload(note("c1", "established")))) == result(registered=1)
    app.clock.advance(hours=23)
    assert counts(app.post(payload(note("c2", "established")))) == result(registered=1)

    assert (app.openid.config_fetches, app.openid.keys_fetches) == (1, 1)


def test_keys_are_fetched_again_after_24_hours(app):
    app.post(payload(note("c1", "established")))
    app.clock.advance(hours=24, seconds=1)

    assert counts(app.post(payload(note("c2", "established")))) == result(registered=1)
    assert app.openid.fetches == 2


def test_an_unknown_kid_fetches_the_keys_again_once_then_is_refused(app):
    app.post(payload(note("c1", "established")))  # fetches the keys
    claims = app.openid.claims(audience=CLIENT_ID, tenant=TENANT)
    unknown = app.openid.sign(claims, kid="no-such-key")
    app.clock.advance(minutes=2)
    before = app.state()

    assert_error(app.post(payload(note("c2", "established")), token=unknown), 401, "invalidToken")
    assert app.openid.fetches == 2  # fetched again once
    assert_error(app.post(payload(note("c2", "established")), token=unknown), 401, "invalidToken")
    assert_error(app.post(payload(note("c2", "established")), token=unknown), 401, "invalidToken")
    assert app.openid.fetches == 2  # not again within the minute
    assert app.state() == before

    app.clock.advance(seconds=61)
    assert_error(app.post(payload(note("c2", "established")), token=unknown), 401, "invalidToken")
    assert app.openid.fetches == 3


def test_a_rotated_key_is_found_by_fetching_again(app):
    app.post(payload(note("c1", "established")))
    withdrawn = app.openid.current
    app.openid.rotate(keep_old=False)
    app.clock.advance(minutes=5)

    assert counts(app.post(payload(note("c2", "established")))) == result(registered=1)
    assert app.openid.fetches == 2
    old = app.openid.sign(app.openid.claims(audience=CLIENT_ID, tenant=TENANT), key=withdrawn)
    assert_error(app.post(payload(note("c3", "established")), token=old), 401, "invalidToken")


def test_cold_cache_under_concurrent_requests_fetches_once(app):
    keys = app.context.notification_keys()
    kid = app.openid.current.kid
    results: list[Any] = []

    def lookup() -> None:
        results.append(keys.key_for(kid))

    threads = [threading.Thread(target=lookup) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert len(results) == 8
    assert app.openid.fetches == 1
    assert app.context.notification_keys() is keys


def test_signing_keys_unavailable_answers_401_logs_an_error_and_recovers(app, caplog):
    app.openid.failure = Reply(503)

    with caplog.at_level(logging.ERROR, logger="shared.signing_keys"):
        response = app.post(payload(note("c1", "established")))
        again = app.post(payload(note("c1", "established")))

    assert_error(response, 401, "invalidToken")
    assert body_of(response)["error"]["message"] == "signing keys unavailable"
    assert_error(again, 401, "invalidToken")
    assert app.openid.config_fetches == 1  # the retry waits 10 s
    assert any(r.levelno == logging.ERROR and "signing keys unavailable" in r.getMessage() for r in caplog.records)
    assert app.call("c1") is None

    app.openid.failure = None
    app.clock.advance(seconds=11)
    assert counts(app.post(payload(note("c1", "established")))) == result(registered=1)


def test_a_key_set_without_usable_keys_is_unavailable(app):
    app.openid.failure = Reply(200, body={"keys": [{"kty": "EC", "kid": "x"}]})

    response = app.post(payload(note("c1", "established")))

    assert_error(response, 401, "invalidToken")
    assert body_of(response)["error"]["message"] == "signing keys unavailable"


def test_without_graph_client_id_every_token_is_refused(make_context, openid, host, caplog):
    make_context(install=True, GRAPH_NOTIFICATION_OPENID_URL=openid.config_url)
    token = openid.sign(openid.claims(audience=CLIENT_ID, tenant=TENANT))
    with caplog.at_level(logging.ERROR):
        response = host.request(
            "POST",
            "/api/notifications",
            body=payload(note("c1", "established")),
            headers={"Authorization": "Bearer " + token},
        )

    assert_error(response, 401, "invalidToken")
    assert "GRAPH_CLIENT_ID" in caplog.text


# --- storage ------------------------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_storage_down_answers_503_after_the_token_is_checked(make_context, openid, host):
    port = _closed_port()
    connection = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    make_context(
        install=True,
        AzureWebJobsStorage=connection,
        GRAPH_CLIENT_ID=CLIENT_ID,
        GRAPH_NOTIFICATION_OPENID_URL=openid.config_url,
    )
    token = openid.sign(openid.claims(audience=CLIENT_ID, tenant=TENANT))
    body = payload(note("c1", "established"))
    down = host.request("POST", "/api/notifications", body=body, headers={"Authorization": "Bearer " + token})
    refused = host.request("POST", "/api/notifications", body=body, headers={"Authorization": "Bearer x"})

    assert_error(down, 503, "storageUnavailable")
    assert int(down.headers["Retry-After"]) > 0
    assert_error(refused, 401, "invalidToken")


# --- registration -------------------------------------------------------------------------------------
def test_the_function_is_indexed_as_a_post_with_a_function_key(host):
    trigger = host.trigger("receive_notifications")

    assert trigger["type"] == "httpTrigger"
    assert (trigger["route"], trigger["methods"], trigger["authLevel"]) == ("notifications", ["POST"], "FUNCTION")
    assert host.request("POST", "/api/notifications", body={}, function_key=None).status_code == 401
