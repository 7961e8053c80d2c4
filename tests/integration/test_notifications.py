"""`POST /api/notifications` against real Azurite, with tokens signed by a key served from a local OpenID configuration.

The OpenID stand-in comes from `tests.standins.fixtures` (`openid`), on the session's one test CA.
Token times are real (PyJWT reads the clock itself); the app's clock (key cache, ended-call memory) is a
fake one the tests move forward.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

from shared.context import Context
from shared.models import utc_now
from tests.azurite import decode_event
from tests.conftest import ContextFactory
from tests.fakes import FakeClock, RequestCounter
from tests.helpers import closed_port, note
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


def payload(*items: dict[str, Any]) -> dict[str, Any]:
    return {"value": list(items)}


def counts(response: Any) -> Any:
    assert response.status_code == 202, response.get_body()
    assert response.mimetype == "application/json"
    return body_of(response)


def result(registered: int = 0, removed: int = 0, ignored: int = 0) -> dict[str, int]:
    return {"registered": registered, "removed": removed, "ignored": ignored}


TERMINATED_INFO = {"@odata.type": "#microsoft.graph.resultInfo", "code": 200, "subcode": 4521, "message": "Hung up."}


# --- end to end: the token, the host, Azurite (each rule: tests/unit/test_notifications.py) --------------------
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
def test_storage_down_answers_503_after_the_token_is_checked(make_context, openid, host):
    port = closed_port()
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
